"""Panoptic Quality (PQ), computed exactly as the official COCO evaluator.

The rules are those of `pq_compute` in cocodataset/panopticapi:

* A predicted segment matches a ground-truth segment of the same category when
  their IoU is strictly greater than 0.5. The union leaves out the pixels of
  the prediction that lie on ground-truth void; the ground-truth area is the
  `area` of its JSON record when given (as the official evaluator reads it).
* Crowd ground-truth segments are never matched and are not false negatives.
* An unmatched prediction is not a false positive when more than half of its
  pixels lie on ground-truth void plus the crowd region of its own category
  (the last crowd segment of that category listed in the image's JSON).
* PQ, SQ and RQ are averaged over the categories with at least one true
  positive, false positive or false negative.

`PanopticQuality` accumulates per-category counts image by image (and merges
accumulators of several batches or replicas); `evaluate_coco_panoptic`
evaluates a pair of COCO panoptic folders + JSON files.
"""

import collections
import multiprocessing
import os
import sys
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

from absl import logging
import numpy as np

from maskconver import keys
from maskconver.data import coco_panoptic_io

PanopticFormatError = coco_panoptic_io.PanopticFormatError

_MATCH_IOU = 0.5
_IGNORE_FRACTION = 0.5
_MAX_LISTED_IMAGES = 10

CategoriesLike = Union[Sequence[Mapping[str, Any]], Mapping[int, Mapping[str,
                                                                          Any]]]


def _normalize_categories(
    categories: CategoriesLike) -> Dict[int, Dict[str, Any]]:
  """Returns {category id: {'isthing': bool, 'name': str}}."""
  if isinstance(categories, Mapping):
    items = [dict(info, id=category_id)
             for category_id, info in categories.items()]
  else:
    items = list(categories)
  result = {}
  for item in items:
    if 'id' not in item or 'isthing' not in item:
      raise ValueError(f'category {item!r} needs "id" and "isthing"')
    category_id = int(item['id'])
    if category_id in result:
      raise ValueError(f'category id {category_id} appears twice')
    result[category_id] = {
        'isthing': bool(item['isthing']),
        'name': str(item.get('name', category_id)),
    }
  if not result:
    raise ValueError('PanopticQuality needs at least one category')
  return result


def _segments_by_id(segments: Sequence[Mapping[str, Any]], what: str,
                    where: str) -> Dict[int, Mapping[str, Any]]:
  """Indexes segment records by id, rejecting duplicates and id 0."""
  by_id = {}
  for segment in segments:
    segment_id = int(segment['id'])
    if segment_id == keys.VOID_SEGMENT_ID:
      raise PanopticFormatError(
          f'{where}: {what} segment id {keys.VOID_SEGMENT_ID} is reserved for '
          'void')
    if segment_id in by_id:
      raise PanopticFormatError(
          f'{where}: {what} segment id {segment_id} is listed twice')
    by_id[segment_id] = segment
  return by_id


def _hash_modulus(listed_ids: np.ndarray) -> int:
  """The smallest modulus >= 2 n under which the n listed ids differ."""
  modulus = max(2 * len(listed_ids), 1)
  while len(set((listed_ids % modulus).tolist())) < len(listed_ids):
    modulus += 1
  return modulus


def _listed_index(segment_map: np.ndarray,
                  listed_ids: np.ndarray) -> np.ndarray:
  """Maps each pixel to 1 + the position of its id in `listed_ids`, else 0.

  Args:
    segment_map: int [height, width] segment ids.
    listed_ids: int64 [n] sorted distinct ids of the segments listed in the
      JSON.

  Returns:
    int [height, width]: 0 for void and for ids absent from `listed_ids`.
  """
  if not np.issubdtype(segment_map.dtype, np.integer):
    segment_map = segment_map.astype(np.int64)
  if not len(listed_ids):
    return np.zeros(segment_map.shape, np.int64)
  # A perfect hash of the listed ids (id % modulus) into a small table, then
  # a check that the pixel's id is the listed one in its slot.
  modulus = _hash_modulus(listed_ids)
  slot_index = np.zeros(modulus, np.int64)
  slot_index[listed_ids % modulus] = np.arange(1, len(listed_ids) + 1)
  index = slot_index[segment_map % modulus]
  # Index 0 holds -1; a pixel whose id is -1 gets index 0 either way.
  listed = np.concatenate([[-1], listed_ids])
  index *= listed[index] == segment_map
  return index


def _unlisted_ids(segment_map: np.ndarray, index: np.ndarray) -> List[int]:
  """Sorted non-void ids of `segment_map` that `index` maps to 0."""
  unlisted = (index == 0) & (segment_map != keys.VOID_SEGMENT_ID)
  if not unlisted.any():
    return []
  return np.unique(segment_map[unlisted]).tolist()


class PanopticQuality:
  """Accumulates official COCO Panoptic Quality over images.

  Example:
    pq = PanopticQuality(gt_json['categories'])
    for image in images:
      pq.update(gt_map, gt_segments, pred_map, pred_segments, name=file_name)
    print(pq.result()['All']['pq'])
  """

  def __init__(self, categories: CategoriesLike):
    """Creates an empty accumulator.

    Args:
      categories: the categories to evaluate, as a list of dicts with `id`
        and `isthing` (and optionally `name`), e.g. a COCO `categories` list,
        or a mapping {id: {'isthing': ..., 'name': ...}}.
    """
    self._categories = _normalize_categories(categories)
    self.reset()

  @property
  def categories(self) -> Dict[int, Dict[str, Any]]:
    """{category id: {'isthing': bool, 'name': str}}."""
    return dict(self._categories)

  def reset(self) -> None:
    """Clears every count."""
    self._tp = collections.Counter()
    self._fp = collections.Counter()
    self._fn = collections.Counter()
    self._iou_sum = collections.defaultdict(float)

  def _check_category(self, category_id: int, segment_id: int, what: str,
                      where: str) -> None:
    if category_id not in self._categories:
      raise PanopticFormatError(
          f'{where}: {what} segment {segment_id} has unknown category_id '
          f'{category_id}')

  def update(self,
             gt_segment_map: np.ndarray,
             gt_segments: Sequence[Mapping[str, Any]],
             pred_segment_map: np.ndarray,
             pred_segments: Sequence[Mapping[str, Any]],
             name: str = 'image') -> None:
    """Adds one image.

    Args:
      gt_segment_map: int [height, width] ground-truth segment ids, 0 = void.
      gt_segments: one dict per ground-truth segment with `id`,
        `category_id`, `iscrowd` and optionally `area` (used as the segment
        area when present, as the official evaluator does; else counted).
      pred_segment_map: int [height, width] predicted segment ids, 0 = void.
      pred_segments: one dict per predicted segment with `id` and
        `category_id`; every id must appear in `pred_segment_map` and every
        non-zero id of the map must be listed.
      name: names the image (or its files) in error messages.

    Raises:
      PanopticFormatError: if the maps differ in shape, a segment id is listed
        twice or is missing from the map or the list, or a category is
        unknown.
    """
    gt_map = np.asarray(gt_segment_map)
    pred_map = np.asarray(pred_segment_map)
    if gt_map.shape != pred_map.shape or gt_map.ndim != 2:
      raise PanopticFormatError(
          f'{name}: ground truth is {gt_map.shape} and prediction '
          f'{pred_map.shape}; expected the same [height, width]')
    gt_by_id = _segments_by_id(gt_segments, 'ground-truth', name)
    pred_by_id = _segments_by_id(pred_segments, 'predicted', name)
    for segment_id, segment in gt_by_id.items():
      self._check_category(int(segment['category_id']), segment_id,
                           'ground-truth', name)
    for segment_id, segment in pred_by_id.items():
      self._check_category(int(segment['category_id']), segment_id,
                           'predicted', name)
    pred_ids = np.array(sorted(pred_by_id), np.int64)
    gt_ids = np.array(sorted(gt_by_id), np.int64)
    pred_index = _listed_index(pred_map, pred_ids)
    unlisted = _unlisted_ids(pred_map, pred_index)
    if unlisted:
      raise PanopticFormatError(
          f'{name}: segment id {unlisted[0]} is in the predicted PNG but '
          'not in its segments_info')
    gt_index = _listed_index(gt_map, gt_ids)
    # overlap[g, p]: pixels of listed gt segment g - 1 and prediction p - 1;
    # row and column 0 are void.
    overlap = np.bincount(
        (gt_index.astype(np.int64) * (len(pred_ids) + 1) +
         pred_index).reshape(-1),
        minlength=(len(gt_ids) + 1) * (len(pred_ids) + 1)).reshape(
            len(gt_ids) + 1, len(pred_ids) + 1)
    pred_area = overlap.sum(axis=0)
    missing = pred_ids[pred_area[1:] == 0].tolist()
    if missing:
      raise PanopticFormatError(
          f'{name}: predicted segment ids {missing} are in segments_info but '
          'not in the PNG')
    unknown_gt = _unlisted_ids(gt_map, gt_index)
    if unknown_gt:
      raise PanopticFormatError(
          f'{name}: segment ids {unknown_gt} are in the ground-truth PNG but '
          'not in its segments_info')
    row = {segment_id: g for g, segment_id in enumerate(gt_ids.tolist())}
    self._add_image(overlap, [gt_by_id[i] for i in gt_ids.tolist()],
                    [pred_by_id[i] for i in pred_ids.tolist()],
                    [row[i] for i in gt_by_id])

  def _add_image(self, overlap: np.ndarray,
                 gt_segments: Sequence[Mapping[str, Any]],
                 pred_segments: Sequence[Mapping[str, Any]],
                 json_order: Sequence[int]) -> None:
    """Adds one image's matches.

    Args:
      overlap: int [1 + len(gt_segments), 1 + len(pred_segments)] pixel
        counts of each (gt, predicted) pair; row and column 0 are void.
      gt_segments: the ground-truth records of rows 1...
      pred_segments: the predicted records of columns 1...
      json_order: positions in `gt_segments` in the order of the JSON (the
        crowd region of a category is the last crowd segment listed).
    """
    counted_area = overlap.sum(axis=1)
    pred_area = overlap.sum(axis=0)
    gt_category = np.array([int(s['category_id']) for s in gt_segments],
                           np.int64)
    pred_category = np.array([int(s['category_id']) for s in pred_segments],
                             np.int64)
    gt_crowd = np.array([s.get('iscrowd', 0) == 1 for s in gt_segments], bool)
    # The JSON area when given, as the official evaluator reads it.
    gt_area = np.array([s.get('area', counted_area[g + 1])
                        for g, s in enumerate(gt_segments)], np.float64)
    intersection = overlap[1:, 1:]
    union = (pred_area[np.newaxis, 1:] + gt_area[:, np.newaxis] -
             intersection - overlap[np.newaxis, 0, 1:])
    candidate = ((intersection > 0) & ~gt_crowd[:, np.newaxis] &
                 (gt_category[:, np.newaxis] == pred_category[np.newaxis]))
    iou = np.where(candidate, intersection / np.where(candidate, union, 1),
                   0.0)
    matched = iou > _MATCH_IOU
    for g, p in zip(*np.nonzero(matched)):
      category_id = int(gt_category[g])
      self._tp[category_id] += 1
      self._iou_sum[category_id] += float(iou[g, p])
    gt_matched = matched.any(axis=1)
    pred_matched = matched.any(axis=0)

    crowd_of_category = {}
    for g in json_order:
      category_id = int(gt_category[g])
      if gt_crowd[g]:
        crowd_of_category[category_id] = g
      elif not gt_matched[g]:
        self._fn[category_id] += 1

    for p, category_id in enumerate(pred_category.tolist()):
      if pred_matched[p]:
        continue
      ignored = overlap[0, p + 1]
      if category_id in crowd_of_category:
        ignored += overlap[crowd_of_category[category_id] + 1, p + 1]
      if ignored / pred_area[p + 1] > _IGNORE_FRACTION:
        continue
      self._fp[category_id] += 1

  def counts(self) -> Dict[int, Dict[str, float]]:
    """{category id: {'tp', 'fp', 'fn', 'iou_sum'}} accumulated so far."""
    return {
        category_id: {'tp': self._tp[category_id],
                      'fp': self._fp[category_id],
                      'fn': self._fn[category_id],
                      'iou_sum': self._iou_sum[category_id]}
        for category_id in self._categories
    }

  def add_counts(self, counts: Mapping[int, Mapping[str, float]]) -> None:
    """Adds counts in the form of `counts()` (e.g. from another process)."""
    for category_id, category_counts in counts.items():
      if category_id not in self._categories:
        raise ValueError(f'counts of unknown category {category_id}')
      self._tp[category_id] += category_counts['tp']
      self._fp[category_id] += category_counts['fp']
      self._fn[category_id] += category_counts['fn']
      self._iou_sum[category_id] += category_counts['iou_sum']

  def merge(self, other: 'PanopticQuality') -> None:
    """Adds the counts of another accumulator over the same categories."""
    if other.categories != self._categories:
      raise ValueError('cannot merge PanopticQuality accumulators over '
                       'different categories')
    self.add_counts(other.counts())

  def result(self) -> Dict[str, Any]:
    """Returns PQ in the shape of panopticapi's `pq_compute`, as fractions.

    Returns:
      {'All' | 'Things' | 'Stuff': {'pq', 'sq', 'rq', 'n'},
       'per_class': {str(category id): {'pq', 'sq', 'rq', 'tp', 'fp', 'fn',
                                        'iou_sum', 'counted', 'isthing',
                                        'name'}}}
      where `n` counts the categories with any tp, fp or fn (the others are
      left out of the averages and have `counted` False). A group with no
      counted category gets 0.0 everywhere.
    """
    per_class = {}
    for category_id, info in self._categories.items():
      tp = self._tp[category_id]
      fp = self._fp[category_id]
      fn = self._fn[category_id]
      iou_sum = float(self._iou_sum[category_id])
      counted = tp + fp + fn > 0
      pq = sq = rq = 0.0
      if counted:
        denominator = tp + 0.5 * fp + 0.5 * fn
        pq = iou_sum / denominator
        sq = iou_sum / tp if tp else 0.0
        rq = tp / denominator
      per_class[str(category_id)] = {
          'pq': pq, 'sq': sq, 'rq': rq, 'tp': int(tp), 'fp': int(fp),
          'fn': int(fn), 'iou_sum': iou_sum, 'counted': counted,
          'isthing': int(info['isthing']), 'name': info['name'],
      }
    result = {}
    for group, isthing in (('All', None), ('Things', True), ('Stuff', False)):
      totals = {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}
      n = 0
      for category_id, info in self._categories.items():
        stats = per_class[str(category_id)]
        if isthing is not None and info['isthing'] != isthing:
          continue
        if not stats['counted']:
          continue
        n += 1
        for metric in totals:
          totals[metric] += stats[metric]
      result[group] = {m: (v / n if n else 0.0) for m, v in totals.items()}
      result[group]['n'] = n
    result['per_class'] = per_class
    return result


def training_categories(num_classes: int,
                        num_thing_classes: int) -> List[Dict[str, Any]]:
  """Categories whose ids are the training class ids (things first)."""
  return [{'id': i, 'isthing': int(i < num_thing_classes)}
          for i in range(num_classes)]


def segments_from_arrays(
    segment_ids: np.ndarray,
    segment_classes: np.ndarray,
    segment_is_crowd: Optional[np.ndarray] = None) -> List[Dict[str, int]]:
  """Builds segment records from padded per-segment arrays.

  Args:
    segment_ids: int [max_segments] segment ids, 0 for padding (e.g.
      keys.GT_SEGMENT_IDS).
    segment_classes: int [max_segments] category of each segment, VOID_CLASS
      for padding (e.g. keys.GT_SEGMENT_CLASSES).
    segment_is_crowd: bool [max_segments], or None for no crowd.

  Returns:
    [{'id', 'category_id', 'iscrowd'}] for the segments that are not padding.
  """
  segment_ids = np.asarray(segment_ids).reshape(-1)
  segment_classes = np.asarray(segment_classes).reshape(-1)
  if segment_is_crowd is None:
    segment_is_crowd = np.zeros(segment_ids.shape, bool)
  segment_is_crowd = np.asarray(segment_is_crowd).reshape(-1)
  return [{'id': int(i), 'category_id': int(c), 'iscrowd': int(bool(k))}
          for i, c, k in zip(segment_ids, segment_classes, segment_is_crowd)
          if i != keys.VOID_SEGMENT_ID and c != keys.VOID_CLASS]


def _annotations_of(data: Mapping[str, Any], path: str) -> List[Mapping[str,
                                                                        Any]]:
  if isinstance(data, list):
    return data
  if not isinstance(data, Mapping) or 'annotations' not in data:
    raise PanopticFormatError(f'{path}: no "annotations" list')
  return data['annotations']


def _annotation_field(annotation: Mapping[str, Any], field: str,
                      path: str) -> Any:
  if field not in annotation:
    raise PanopticFormatError(
        f'{path}: annotation {annotation.get("image_id", "?")!r} has no '
        f'"{field}"')
  return annotation[field]


def evaluate_coco_panoptic(
    gt_json: str,
    gt_folder: str,
    pred_json: str,
    pred_folder: str,
    categories: Optional[CategoriesLike] = None,
    warn: Optional[Callable[[str], None]] = None,
    num_workers: int = 1) -> Dict[str, Any]:
  """Evaluates COCO panoptic predictions against COCO panoptic ground truth.

  Predictions of images absent from the ground truth are ignored, as
  panopticapi's `pq_compute` ignores them, with a warning naming them.

  Args:
    gt_json: path to the ground-truth JSON (`annotations`, `categories`).
    gt_folder: folder of the ground-truth PNGs.
    pred_json: path to the predictions JSON (`annotations`, COCO results
      format: `image_id`, `file_name`, `segments_info`).
    pred_folder: folder of the predicted PNGs.
    categories: the categories to evaluate; default: those of `gt_json`.
    warn: receives each warning; default: absl `logging.warning`.
    num_workers: processes that read and score the images; 1 scores them
      in this process. The result does not depend on it: per-category
      counts are sums of the same per-image integers, and IoU sums differ
      only by float rounding of the order of additions.

  Returns:
    The dict of `PanopticQuality.result()`.

  Raises:
    PanopticFormatError: naming the file and the image, for a missing or
      unreadable file, an image predicted twice, a ground-truth image without
      prediction, a segment id listed in a JSON but absent from its PNG or
      the reverse (naming the segment), PNGs of different sizes, or an
      unknown category id.
  """
  warn = warn or logging.warning
  gt_data = coco_panoptic_io.load_json(gt_json)
  pred_data = coco_panoptic_io.load_json(pred_json)
  if categories is None:
    if not isinstance(gt_data, Mapping) or 'categories' not in gt_data:
      raise PanopticFormatError(f'{gt_json}: no "categories" list')
    categories = gt_data['categories']
  for folder, flag in ((gt_folder, 'gt_folder'), (pred_folder, 'pred_folder')):
    if not os.path.isdir(folder):
      raise PanopticFormatError(f'{folder}: {flag} is not a folder')

  gt_annotations = _annotations_of(gt_data, gt_json)
  gt_image_ids = set()
  for annotation in gt_annotations:
    gt_image_ids.add(_annotation_field(annotation, 'image_id', gt_json))
  pred_by_image = {}
  not_in_gt = []
  for annotation in _annotations_of(pred_data, pred_json):
    image_id = _annotation_field(annotation, 'image_id', pred_json)
    if image_id not in gt_image_ids:
      not_in_gt.append(image_id)
      continue
    if image_id in pred_by_image:
      raise PanopticFormatError(
          f'{pred_json}: image_id {image_id!r} is predicted twice')
    pred_by_image[image_id] = annotation
  if not_in_gt:
    listed = ', '.join(repr(i) for i in not_in_gt[:_MAX_LISTED_IMAGES])
    more = len(not_in_gt) - _MAX_LISTED_IMAGES
    listed += f', ... {more} more' if more > 0 else ''
    warn(f'{pred_json}: ignored the predictions of {len(not_in_gt)} image(s) '
         f'absent from {gt_json}, as panopticapi does: image_id {listed}')

  images = []
  for gt_annotation in gt_annotations:
    image_id = gt_annotation['image_id']
    if image_id not in pred_by_image:
      raise PanopticFormatError(
          f'{pred_json}: no prediction for image_id {image_id!r} of {gt_json}')
    pred_annotation = pred_by_image[image_id]
    gt_png = os.path.join(
        gt_folder, _annotation_field(gt_annotation, 'file_name', gt_json))
    pred_png = os.path.join(
        pred_folder, _annotation_field(pred_annotation, 'file_name',
                                       pred_json))
    images.append((
        gt_png, _annotation_field(gt_annotation, 'segments_info', gt_json),
        pred_png, _annotation_field(pred_annotation, 'segments_info',
                                    pred_json),
        f'{pred_png} vs {gt_png} (image_id {image_id!r})'))
  pq = PanopticQuality(categories)
  for counts in _map_chunks(pq.categories, images, num_workers):
    pq.add_counts(counts)
  return pq.result()


# (gt PNG, gt segments_info, predicted PNG, predicted segments_info, name).
_Image = Tuple[str, Sequence[Mapping[str, Any]], str,
               Sequence[Mapping[str, Any]], str]
_CHUNKS_PER_WORKER = 4


def _score_images(categories: CategoriesLike,
                  images: Sequence[_Image]) -> Dict[int, Dict[str, float]]:
  """Reads and scores a run of images; the counts of `PanopticQuality`."""
  pq = PanopticQuality(categories)
  for gt_png, gt_segments, pred_png, pred_segments, name in images:
    pq.update(coco_panoptic_io.read_segment_map(gt_png), gt_segments,
              coco_panoptic_io.read_segment_map(pred_png), pred_segments,
              name=name)
  return pq.counts()


def _score_chunk(arguments: Tuple[CategoriesLike, Sequence[_Image]]
                 ) -> Dict[int, Dict[str, float]]:
  return _score_images(*arguments)


def _map_chunks(categories: CategoriesLike, images: Sequence[_Image],
                num_workers: int):
  """Yields the counts of consecutive runs of images, in image order.

  With several workers the first error in image order is raised, as with
  one: the pool hands results back in order and a worker's
  PanopticFormatError (a picklable ValueError) is re-raised in the caller
  with its message. Workers start with `fork` while TensorFlow is not
  imported (no runtime threads to inherit), else with `spawn`; the worker
  code imports numpy and PIL only.
  """
  num_workers = max(1, min(num_workers, len(images)))
  if num_workers == 1:
    yield _score_images(categories, images)
    return
  num_chunks = min(len(images), num_workers * _CHUNKS_PER_WORKER)
  bounds = np.linspace(0, len(images), num_chunks + 1).astype(int)
  chunks = [(categories, images[a:b]) for a, b in zip(bounds[:-1],
                                                      bounds[1:])]
  method = 'spawn' if 'tensorflow' in sys.modules else 'fork'
  if method not in multiprocessing.get_all_start_methods():
    method = 'spawn'
  with multiprocessing.get_context(method).Pool(num_workers) as pool:
    yield from pool.imap(_score_chunk, chunks)
