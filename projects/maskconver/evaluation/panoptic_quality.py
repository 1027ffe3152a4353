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
import os
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Union)

from absl import logging
import numpy as np

from maskconver import keys
from maskconver.data import coco_panoptic_io

PanopticFormatError = coco_panoptic_io.PanopticFormatError

# Pairs of (gt id, pred id) are packed into one integer as gt * _OFFSET + pred.
_OFFSET = keys.LABEL_BASE**3
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
    gt_map = np.asarray(gt_segment_map).astype(np.int64)
    pred_map = np.asarray(pred_segment_map).astype(np.int64)
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

    pred_ids, pred_counts = np.unique(pred_map, return_counts=True)
    pred_area = {}
    for segment_id, count in zip(pred_ids.tolist(), pred_counts.tolist()):
      if segment_id == keys.VOID_SEGMENT_ID:
        continue
      if segment_id not in pred_by_id:
        raise PanopticFormatError(
            f'{name}: segment id {segment_id} is in the predicted PNG but '
            'not in its segments_info')
      pred_area[segment_id] = count
    missing = sorted(set(pred_by_id) - set(pred_area))
    if missing:
      raise PanopticFormatError(
          f'{name}: predicted segment ids {missing} are in segments_info but '
          'not in the PNG')

    pairs, intersections = np.unique(gt_map * _OFFSET + pred_map,
                                     return_counts=True)
    overlap = {}
    for pair, intersection in zip(pairs.tolist(), intersections.tolist()):
      overlap[(pair // _OFFSET, pair % _OFFSET)] = intersection
    gt_area = collections.Counter()
    for (gt_id, _), intersection in overlap.items():
      gt_area[gt_id] += intersection
    unknown_gt = sorted(set(gt_area) - set(gt_by_id) - {keys.VOID_SEGMENT_ID})
    if unknown_gt:
      raise PanopticFormatError(
          f'{name}: segment ids {unknown_gt} are in the ground-truth PNG but '
          'not in its segments_info')

    gt_matched = set()
    pred_matched = set()
    for (gt_id, pred_id), intersection in overlap.items():
      if gt_id not in gt_by_id or pred_id not in pred_by_id:
        continue
      gt_segment = gt_by_id[gt_id]
      if gt_segment.get('iscrowd', 0) == 1:
        continue
      category_id = int(gt_segment['category_id'])
      if category_id != int(pred_by_id[pred_id]['category_id']):
        continue
      area = gt_segment.get('area', gt_area[gt_id])
      union = (pred_area[pred_id] + area - intersection -
               overlap.get((keys.VOID_SEGMENT_ID, pred_id), 0))
      iou = intersection / union
      if iou > _MATCH_IOU:
        self._tp[category_id] += 1
        self._iou_sum[category_id] += iou
        gt_matched.add(gt_id)
        pred_matched.add(pred_id)

    crowd_of_category = {}
    for gt_id, gt_segment in gt_by_id.items():
      if gt_id in gt_matched:
        continue
      category_id = int(gt_segment['category_id'])
      if gt_segment.get('iscrowd', 0) == 1:
        crowd_of_category[category_id] = gt_id
        continue
      self._fn[category_id] += 1

    for pred_id, pred_segment in pred_by_id.items():
      if pred_id in pred_matched:
        continue
      category_id = int(pred_segment['category_id'])
      ignored = overlap.get((keys.VOID_SEGMENT_ID, pred_id), 0)
      if category_id in crowd_of_category:
        ignored += overlap.get((crowd_of_category[category_id], pred_id), 0)
      if ignored / pred_area[pred_id] > _IGNORE_FRACTION:
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

  def merge(self, other: 'PanopticQuality') -> None:
    """Adds the counts of another accumulator over the same categories."""
    if other.categories != self._categories:
      raise ValueError('cannot merge PanopticQuality accumulators over '
                       'different categories')
    for category_id, counts in other.counts().items():
      self._tp[category_id] += counts['tp']
      self._fp[category_id] += counts['fp']
      self._fn[category_id] += counts['fn']
      self._iou_sum[category_id] += counts['iou_sum']

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
    warn: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
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

  pq = PanopticQuality(categories)
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
    pq.update(
        coco_panoptic_io.read_segment_map(gt_png),
        _annotation_field(gt_annotation, 'segments_info', gt_json),
        coco_panoptic_io.read_segment_map(pred_png),
        _annotation_field(pred_annotation, 'segments_info', pred_json),
        name=f'{pred_png} vs {gt_png} (image_id {image_id!r})')
  return pq.result()
