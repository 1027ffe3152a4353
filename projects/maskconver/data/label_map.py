"""The label map: training class ids <-> a dataset's own category ids.

Training ids are contiguous, every thing class before every stuff class (see
`maskconver.keys`). A dataset's categories (COCO's have ids 1 .. 200 with
gaps) are sorted that way: things by category id, then stuff by category id.
The converter writes the map next to the records as JSON; training,
evaluation, export and the demo load it to name classes and to map
predictions back to the dataset's category ids.
"""

import dataclasses
import hashlib
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from maskconver.data import coco_panoptic_io

_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class LabelClass:
  """One class of a label map.

  Attributes:
    train_id: contiguous training class id.
    coco_id: the dataset's category id.
    name: human-readable class name.
    isthing: True for a countable thing class, False for stuff.
    color: (r, g, b) display colour, each 0 .. 255.
    supercategory: the dataset's supercategory name, '' if none.
  """
  train_id: int
  coco_id: int
  name: str
  isthing: bool
  color: Tuple[int, int, int]
  supercategory: str = ''


def _default_color(coco_id: int) -> Tuple[int, int, int]:
  """A stable display colour for a category that has none."""
  digest = hashlib.sha256(str(coco_id).encode('utf-8')).digest()
  return (digest[0], digest[1], digest[2])


class LabelMap:
  """Maps contiguous training ids to a dataset's categories and back."""

  def __init__(self, classes: Sequence[LabelClass]):
    """Builds a label map from classes already in training-id order.

    Args:
      classes: one `LabelClass` per class; `classes[i].train_id` must be `i`
        and every thing class must come before every stuff class.

    Raises:
      ValueError: if the classes break the label contract.
    """
    self._classes = tuple(classes)
    if not self._classes:
      raise ValueError('a label map needs at least one class')
    for i, label_class in enumerate(self._classes):
      if label_class.train_id != i:
        raise ValueError(f'class {label_class.name!r} has train_id '
                         f'{label_class.train_id}, expected {i}')
    flags = [c.isthing for c in self._classes]
    self._num_thing_classes = sum(flags)
    if any(flags[self._num_thing_classes:]):
      raise ValueError('every thing class must come before every stuff class')
    self._coco_to_train = {}
    for label_class in self._classes:
      if label_class.coco_id in self._coco_to_train:
        raise ValueError(f'category id {label_class.coco_id} appears twice')
      self._coco_to_train[label_class.coco_id] = label_class.train_id

  @classmethod
  def from_coco_categories(
      cls, categories: Sequence[Mapping[str, Any]]) -> 'LabelMap':
    """Builds a label map from COCO `categories` entries.

    Args:
      categories: dicts with `id`, `name`, `isthing` and optionally `color`
        and `supercategory`, in any order.

    Returns:
      The label map: things sorted by id, then stuff sorted by id.

    Raises:
      PanopticFormatError: if an entry lacks a field or an id repeats.
    """
    parsed = []
    seen = set()
    for index, category in enumerate(categories):
      for field in ('id', 'name', 'isthing'):
        if field not in category:
          raise coco_panoptic_io.PanopticFormatError(
              f'categories[{index}] has no {field!r} field: {category}')
      coco_id = int(category['id'])
      if coco_id in seen:
        raise coco_panoptic_io.PanopticFormatError(
            f'category id {coco_id} appears more than once in categories')
      seen.add(coco_id)
      color = category.get('color') or _default_color(coco_id)
      if len(color) != 3:
        raise coco_panoptic_io.PanopticFormatError(
            f'category id {coco_id}: color must be [r, g, b], got {color}')
      parsed.append((not bool(category['isthing']), coco_id, category, color))
    parsed.sort(key=lambda item: (item[0], item[1]))
    classes = [
        LabelClass(train_id=i, coco_id=coco_id, name=str(category['name']),
                   isthing=not is_stuff,
                   color=tuple(int(c) for c in color),
                   supercategory=str(category.get('supercategory', '')))
        for i, (is_stuff, coco_id, category, color) in enumerate(parsed)
    ]
    if not classes:
      raise coco_panoptic_io.PanopticFormatError('categories is empty')
    return cls(classes)

  @property
  def classes(self) -> Tuple[LabelClass, ...]:
    """All classes, indexed by training id."""
    return self._classes

  @property
  def num_classes(self) -> int:
    return len(self._classes)

  @property
  def num_thing_classes(self) -> int:
    return self._num_thing_classes

  @property
  def num_stuff_classes(self) -> int:
    return self.num_classes - self._num_thing_classes

  @property
  def coco_ids(self) -> List[int]:
    """The dataset's category id of each training id."""
    return [c.coco_id for c in self._classes]

  @property
  def names(self) -> List[str]:
    """The name of each training id."""
    return [c.name for c in self._classes]

  def has_coco_id(self, coco_id: int) -> bool:
    return int(coco_id) in self._coco_to_train

  def train_id(self, coco_id: int) -> int:
    """Returns the training id of a dataset category id."""
    try:
      return self._coco_to_train[int(coco_id)]
    except KeyError as e:
      raise KeyError(f'category id {coco_id} is not in the label map '
                     f'(known: {sorted(self._coco_to_train)})') from e

  def coco_id(self, train_id: int) -> int:
    """Returns the dataset category id of a training id."""
    if not 0 <= int(train_id) < self.num_classes:
      raise KeyError(f'training id {train_id} is outside [0, '
                     f'{self.num_classes})')
    return self._classes[int(train_id)].coco_id

  def is_thing(self, train_id: int) -> bool:
    return int(train_id) < self._num_thing_classes

  def to_dict(self) -> Dict[str, Any]:
    return {
        'format_version': _FORMAT_VERSION,
        'num_classes': self.num_classes,
        'num_thing_classes': self.num_thing_classes,
        'classes': [dict(dataclasses.asdict(c), color=list(c.color))
                    for c in self._classes],
    }

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> 'LabelMap':
    """Inverse of `to_dict`; checks the stored counts."""
    try:
      classes = [
          LabelClass(train_id=int(c['train_id']), coco_id=int(c['coco_id']),
                     name=str(c['name']), isthing=bool(c['isthing']),
                     color=tuple(int(v) for v in c['color']),
                     supercategory=str(c.get('supercategory', '')))
          for c in data['classes']
      ]
      label_map = cls(classes)
      expected = (int(data['num_classes']), int(data['num_thing_classes']))
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f'not a valid label map: {e}') from e
    if expected != (label_map.num_classes, label_map.num_thing_classes):
      raise ValueError(
          f'label map says {expected[0]} classes ({expected[1]} things) but '
          f'lists {label_map.num_classes} ({label_map.num_thing_classes})')
    return label_map

  def save(self, path: str) -> None:
    """Writes the label map as JSON, atomically."""
    coco_panoptic_io.write_json(path, self.to_dict())

  @classmethod
  def load(cls, path: str) -> 'LabelMap':
    """Reads a label map JSON, naming the file in any error."""
    data = coco_panoptic_io.load_json(path)
    try:
      return cls.from_dict(data)
    except ValueError as e:
      raise coco_panoptic_io.PanopticFormatError(f'{path}: {e}') from e

  def __eq__(self, other: object) -> bool:
    return isinstance(other, LabelMap) and self._classes == other.classes

  def __hash__(self) -> int:
    return hash(self._classes)

  def __repr__(self) -> str:
    return (f'LabelMap(num_classes={self.num_classes}, '
            f'num_thing_classes={self.num_thing_classes})')
