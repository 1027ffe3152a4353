"""Writes panoptic predictions in the COCO panoptic results format.

For every image, a PNG `<output_dir>/panoptic/<image stem>.png` whose pixel
value `R + 256 * G + 256**2 * B` is a segment id (0 = void), and at the end
`<output_dir>/panoptic.json` with one annotation per image (`image_id`,
`file_name`, `segments_info` with `id`, `category_id`, `iscrowd`, `area`,
`bbox`). The official evaluator, `maskconver.tools.evaluate_pq` and any
panopticapi-compatible tool read the result.

Image file names may have sub-folders (`city/a/0001.jpg` ->
`panoptic/city/a/0001.png`). Whatever the name (it may come from a record's
source id), files are only written inside `<output_dir>`: empty, `.` and
`..` components and leading separators are dropped or replaced (`..` becomes
`__`), and the annotation's `file_name` records the PNG's actual relative
path, so evaluators find it.

Predictions come at the model's (padded) input resolution; the writer crops
the padding away and resizes back to the original image with nearest
neighbour, given Model Garden's `image_info` or the original size, and maps
training class ids to the dataset's category ids.
"""

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from maskconver import keys
from maskconver.data import coco_panoptic_io

ImageId = Union[int, str, bytes, np.integer]


def _normalize_image_id(image_id: ImageId) -> Union[int, str]:
  """Returns an int for numeric ids (COCO's), else the id as a string."""
  if isinstance(image_id, np.ndarray):
    image_id = image_id.item()
  if isinstance(image_id, bytes):
    image_id = image_id.decode('utf-8')
  if isinstance(image_id, (int, np.integer)):
    return int(image_id)
  image_id = str(image_id)
  return int(image_id) if image_id.isdigit() else image_id


def png_file_name(file_name: str) -> str:
  """The PNG path, relative to the PNG folder, of an image file name.

  Args:
    file_name: the image's file name, possibly with sub-folders ('/' or
      '\\'), from any source.

  Returns:
    `<file name without extension>.png`, a relative path that stays inside
    the PNG folder whatever `file_name` is.

  Raises:
    ValueError: if nothing of the name is left.
  """
  parts = [p for p in file_name.replace('\\', '/').split('/')
           if p not in ('', '.')]
  parts = ['__' if p == '..' else p for p in parts]
  if not parts:
    raise ValueError(f'file_name {file_name!r} names no file')
  stem, _ = os.path.splitext(parts[-1])
  parts[-1] = (stem or parts[-1]) + '.png'
  return '/'.join(parts)


def _source_rows(size: int, scaled: float, offset: float,
                 limit: int) -> Tuple[np.ndarray, np.ndarray]:
  """Nearest rows of the prediction for each row of the original image.

  Args:
    size: rows of the original image.
    scaled: rows of the image once scaled to the model input.
    offset: first row of the scaled image present in the model input.
    limit: rows of the prediction.

  Returns:
    (int64 [size] row indices clipped to the prediction, bool [size] whether
    the row is inside the prediction).
  """
  centers = (np.arange(size, dtype=np.float64) + 0.5) * (scaled / size)
  rows = np.floor(centers).astype(np.int64) - int(round(offset))
  inside = (rows >= 0) & (rows < limit)
  return np.clip(rows, 0, limit - 1), inside


def resize_to_original(label_map: np.ndarray,
                       image_info: Optional[np.ndarray] = None,
                       original_size: Optional[Sequence[int]] = None,
                       fill_value: int = 0) -> np.ndarray:
  """Crops padding away and resizes a label map to the original image.

  Args:
    label_map: int [height, width] map at the model's input resolution.
    image_info: float [4, 2], Model Garden's image info: original [h, w],
      scaled [h, w], [y_scale, x_scale], [y_offset, x_offset]. The scaled
      image starts at the offset and the rest of the input is padding.
    original_size: (height, width) of the original image, when `image_info`
      is not given: the whole map is resized to it.
    fill_value: value of original pixels not covered by the map.

  Returns:
    int [original height, original width]; `label_map` itself when neither
    `image_info` nor `original_size` is given.
  """
  label_map = np.asarray(label_map)
  if image_info is None and original_size is None:
    return label_map
  height, width = label_map.shape
  if image_info is not None:
    info = np.asarray(image_info, dtype=np.float64)
    if info.shape != (4, 2):
      raise ValueError(f'image_info must be [4, 2], got {info.shape}')
    original = np.round(info[0]).astype(np.int64)
    scaled, offset = info[1], info[3]
  else:
    original = np.asarray(original_size, dtype=np.int64)
    scaled, offset = np.array([height, width], np.float64), np.zeros(2)
  if original.shape != (2,) or original.min() <= 0:
    raise ValueError(f'original size must be 2 positive ints, got {original}')
  rows, rows_inside = _source_rows(original[0], scaled[0], offset[0], height)
  cols, cols_inside = _source_rows(original[1], scaled[1], offset[1], width)
  # Filled in place: no full-size temporary besides the result.
  resized = label_map[rows[:, None], cols[None, :]]
  resized[~rows_inside] = fill_value
  resized[:, ~cols_inside] = fill_value
  return resized


class PanopticPredictionWriter:
  """Collects panoptic predictions and writes them in COCO panoptic format."""

  def __init__(self, output_dir: str, category_ids: Sequence[int],
               is_thing: Sequence[bool]):
    """Creates `<output_dir>/panoptic/`.

    Args:
      output_dir: folder of the results.
      category_ids: `category_ids[train_id]` is the dataset's category id of
        training class `train_id` (e.g. `LabelMap.coco_ids`).
      is_thing: `is_thing[train_id]`, True for thing classes.
    """
    self._category_ids = [int(c) for c in category_ids]
    self._is_thing = np.asarray([bool(t) for t in is_thing], dtype=bool)
    if len(self._category_ids) != len(self._is_thing):
      raise ValueError(
          f'category_ids has {len(self._category_ids)} entries but is_thing '
          f'has {len(self._is_thing)}')
    if not self._category_ids:
      raise ValueError('category_ids is empty')
    if len(set(self._category_ids)) != len(self._category_ids):
      raise ValueError(f'category_ids has duplicates: {self._category_ids}')
    self._output_dir = output_dir
    self._png_dir = os.path.join(output_dir, 'panoptic')
    os.makedirs(self._png_dir, exist_ok=True)
    self._annotations = []
    self._image_ids = set()
    # PNG path -> the image id written there.
    self._png_owners = {}

  @property
  def png_dir(self) -> str:
    """Folder of the written PNGs."""
    return self._png_dir

  @property
  def json_path(self) -> str:
    """Path of the results JSON written by `write_json`."""
    return os.path.join(self._output_dir, 'panoptic.json')

  @property
  def annotations(self) -> List[Dict[str, Any]]:
    """The annotations written so far."""
    return list(self._annotations)

  def _check_classes(self, classes: np.ndarray, what: str, where: str) -> None:
    bad = classes[(classes < 0) | (classes >= len(self._category_ids))]
    if bad.size:
      raise ValueError(
          f'{where}: {what} has training class ids {sorted(set(bad.tolist()))}'
          f' outside [0, {len(self._category_ids)})')

  def _write(self, image_id: ImageId, file_name: str,
             segment_map: np.ndarray,
             train_classes: Sequence[int]) -> Dict[str, Any]:
    """Writes a map of segment ids 1 .. n with the class of segment i + 1."""
    image_id = _normalize_image_id(image_id)
    if image_id in self._image_ids:
      raise ValueError(f'image_id {image_id!r} was already written')
    png_name = png_file_name(file_name)
    if png_name in self._png_owners:
      raise ValueError(
          f'image {image_id!r} (file_name {file_name!r}) and image '
          f'{self._png_owners[png_name]!r} both map to the prediction '
          f'{png_name}; image file names must differ by more than their '
          'extension')
    png_path = os.path.join(self._png_dir, *png_name.split('/'))
    os.makedirs(os.path.dirname(png_path), exist_ok=True)
    coco_panoptic_io.write_segment_map(png_path, segment_map)
    self._png_owners[png_name] = image_id
    annotation = {
        'image_id': image_id,
        'file_name': png_name,
        'segments_info': coco_panoptic_io.segments_info_from_map(
            segment_map, [self._category_ids[c] for c in train_classes]),
    }
    self._image_ids.add(image_id)
    self._annotations.append(annotation)
    return annotation

  def add_category_instance(
      self,
      image_id: ImageId,
      file_name: str,
      category_mask: np.ndarray,
      instance_mask: np.ndarray,
      image_info: Optional[np.ndarray] = None,
      original_size: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Writes one image given per-pixel class and instance id.

    Args:
      image_id: the dataset's image id (bytes are decoded, digit strings
        become ints as COCO's ids are).
      file_name: image file name, possibly with sub-folders; the PNG is
        named after it (see `png_file_name`).
      category_mask: int [height, width] training class ids, VOID_CLASS for
        void.
      instance_mask: int [height, width], 1 .. n per thing instance, 0 for
        stuff and void; ignored on stuff pixels (each stuff class is one
        segment).
      image_info: float [4, 2] Model Garden image info, see
        `resize_to_original`.
      original_size: (height, width), if `image_info` is not given.

    Returns:
      The COCO annotation written.
    """
    category_mask = np.asarray(category_mask).astype(np.int64)
    instance_mask = np.asarray(instance_mask).astype(np.int64)
    if category_mask.shape != instance_mask.shape or category_mask.ndim != 2:
      raise ValueError(
          f'image {image_id!r}: category_mask {category_mask.shape} and '
          f'instance_mask {instance_mask.shape} must be the same [h, w]')
    category_mask = resize_to_original(category_mask, image_info,
                                       original_size, keys.VOID_CLASS)
    instance_mask = resize_to_original(instance_mask, image_info,
                                       original_size, 0)
    valid = category_mask != keys.VOID_CLASS
    self._check_classes(category_mask[valid], 'category_mask',
                        f'image {image_id!r}')
    classes = np.where(valid, category_mask, 0)
    instance_mask = np.where(self._is_thing[classes], instance_mask, 0)
    if instance_mask.min(initial=0) < 0:
      raise ValueError(f'image {image_id!r}: negative instance ids')
    key = classes * (int(instance_mask.max(initial=0)) + 1) + instance_mask
    _, first, inverse = np.unique(key[valid], return_index=True,
                                  return_inverse=True)
    segment_map = np.zeros(category_mask.shape, np.int64)
    segment_map[valid] = inverse.reshape(-1) + 1
    segment_classes = category_mask[valid][first].tolist()
    return self._write(image_id, file_name, segment_map, segment_classes)

  def add_segments(
      self,
      image_id: ImageId,
      file_name: str,
      segment_map: np.ndarray,
      segment_classes: Sequence[int],
      image_info: Optional[np.ndarray] = None,
      original_size: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Writes one image given the post-processor's segment map.

    Args:
      image_id: the dataset's image id (see `add_category_instance`).
      file_name: image file name, possibly with sub-folders; the PNG is
        named after it (see `png_file_name`).
      segment_map: int [height, width], segment index + 1, 0 = void
        (`keys.PANOPTIC_SEGMENT_MAP`).
      segment_classes: int [num_segments], training class of each segment
        index (`keys.SEGMENT_CLASSES_OUT`; VOID_CLASS for unused indices).
      image_info: float [4, 2] Model Garden image info, see
        `resize_to_original`.
      original_size: (height, width), if `image_info` is not given.

    Returns:
      The COCO annotation written; its segment ids are 1 .. n in segment
      index order.
    """
    # int32 at full resolution (segment indices are < 2**31): with one
    # temporary of that size at a time, memory stays a few bytes per pixel.
    segment_map = np.asarray(segment_map).astype(np.int32)
    segment_classes = np.asarray(segment_classes).astype(np.int64).reshape(-1)
    if segment_map.ndim != 2:
      raise ValueError(f'image {image_id!r}: segment_map must be [h, w], got '
                       f'{segment_map.shape}')
    low, high = (int(segment_map.min(initial=0)),
                 int(segment_map.max(initial=0)))
    if low < 0 or high > segment_classes.size:
      raise ValueError(
          f'image {image_id!r}: segment_map values must lie in [0, '
          f'{segment_classes.size}], got [{low}, {high}]')
    segment_map = resize_to_original(segment_map, image_info, original_size, 0)
    # Segments too small to survive the resize are not predicted.
    counts = np.bincount(segment_map.reshape(-1),
                         minlength=segment_classes.size + 1)
    present = np.flatnonzero(counts[1:]) + 1
    classes = segment_classes[present - 1]
    self._check_classes(classes, 'a segment of segment_map',
                        f'image {image_id!r}')
    lookup = np.zeros(segment_classes.size + 1, np.int32)
    lookup[present] = np.arange(1, present.size + 1)
    return self._write(image_id, file_name, lookup[segment_map],
                       classes.tolist())

  def write_json(self) -> str:
    """Writes `<output_dir>/panoptic.json` atomically; returns its path."""
    coco_panoptic_io.write_json(self.json_path,
                                {'annotations': self._annotations})
    return self.json_path
