"""Names, thing flags, display colours and dataset ids of the classes."""

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from maskconver.data import label_map as label_map_lib
from maskconver.visualization import palette


@dataclasses.dataclass(frozen=True)
class ClassInfo:
  """What the visualization and the prediction writer need per class.

  Indexed by contiguous training class id (things first, see
  `maskconver.keys`).

  Attributes:
    names: display name of each class.
    is_thing: True for thing classes.
    colors: uint8 [num_classes, 3] display colours.
    category_ids: the dataset's category id of each class (the training id
      itself when there is no label map).
  """
  names: Tuple[str, ...]
  is_thing: Tuple[bool, ...]
  colors: np.ndarray
  category_ids: Tuple[int, ...]

  def __post_init__(self):
    count = len(self.names)
    if count == 0:
      raise ValueError('ClassInfo needs at least one class')
    if (len(self.is_thing) != count or len(self.category_ids) != count or
        np.shape(self.colors) != (count, 3)):
      raise ValueError(
          f'ClassInfo: {count} names but {len(self.is_thing)} thing flags, '
          f'{len(self.category_ids)} category ids and colours of shape '
          f'{np.shape(self.colors)}')

  @property
  def num_classes(self) -> int:
    return len(self.names)

  @property
  def num_thing_classes(self) -> int:
    return sum(self.is_thing)

  @classmethod
  def from_label_map(cls, label_map: label_map_lib.LabelMap) -> 'ClassInfo':
    """Names, thing flags, colours and category ids of a label map."""
    return cls(
        names=tuple(label_map.names),
        is_thing=tuple(c.isthing for c in label_map.classes),
        colors=np.asarray([c.color for c in label_map.classes], np.uint8),
        category_ids=tuple(label_map.coco_ids))

  @classmethod
  def from_counts(cls, num_classes: int,
                  num_thing_classes: Optional[int] = None,
                  thing_ids: Sequence[int] = (),
                  name_format: str = 'class {}') -> 'ClassInfo':
    """Classes named by id ('class 3'), with default colours.

    Args:
      num_classes: number of training classes.
      num_thing_classes: classes `0 .. num_thing_classes - 1` are things;
        None when unknown, then only `thing_ids` are things.
      thing_ids: classes known to be things when `num_thing_classes` is None.
      name_format: the name of class i is `name_format.format(i)`.

    Returns:
      The class info; category ids are the training ids.
    """
    if num_classes <= 0:
      raise ValueError(f'num_classes must be positive, got {num_classes}')
    if num_thing_classes is not None:
      if not 0 <= num_thing_classes <= num_classes:
        raise ValueError(f'num_thing_classes must lie in [0, {num_classes}],'
                         f' got {num_thing_classes}')
      is_thing = tuple(i < num_thing_classes for i in range(num_classes))
    else:
      things = {int(i) for i in thing_ids}
      is_thing = tuple(i in things for i in range(num_classes))
    return cls(
        names=tuple(name_format.format(i) for i in range(num_classes)),
        is_thing=is_thing,
        colors=palette.default_class_colors(num_classes),
        category_ids=tuple(range(num_classes)))
