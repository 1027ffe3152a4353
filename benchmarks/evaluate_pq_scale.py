r"""PQ evaluation of COCO panoptic folders at COCO scale: ours, hotcoco, reference.

Usage:
  .venv/bin/python -m benchmarks.evaluate_pq_scale [--num_images=500] \
    [--num_workers=N] [--repeats=3] [--work_dir=DIR]

Writes a COCO panoptic case (ground truth and predictions, 480x640 PNGs with
about 20 segments each over 133 categories, 80 of them things, some crowd and
void) and times, interleaved over `--repeats` rounds, the evaluation of the
folders by:

* ours_1: `evaluate_coco_panoptic(num_workers=1)` (in process);
* ours_N: the same with `--num_workers` processes;
* hotcoco: `hotcoco.panoptic.PanopticEval` (if installed);
* reference_N: `reference_pq`, this file's transcription of panopticapi's
  `pq_compute` (commit 7bb4655: PIL decode, `np.unique` of gt * 256**3 +
  pred, the same matching loop, images split over N processes as it splits
  them); panopticapi itself is not on PyPI.

Every row's call includes reading the JSON files and starting its workers, not
the Python interpreter. It checks that all give the same PQ (max absolute
difference of All / Things / Stuff PQ, SQ, RQ and identical per-class tp / fp
/ fn), then times `PanopticQuality.update` per image on 640x640 maps, the cost
of the in-training PQ (the task's evaluator calls it once per image).
Prints a table, then one JSON object on its last line.
"""

import json
import multiprocessing
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Sequence

from absl import app
from absl import flags
import numpy as np
from PIL import Image

from maskconver.data import coco_panoptic_io
from maskconver.evaluation import panoptic_quality

_NUM_IMAGES = flags.DEFINE_integer('num_images', 500, 'Images in the case.')
_HEIGHT = flags.DEFINE_integer('height', 480, 'Image height.')
_WIDTH = flags.DEFINE_integer('width', 640, 'Image width.')
_SEGMENTS = flags.DEFINE_integer('segments', 20, 'Segments per image.')
_NUM_WORKERS = flags.DEFINE_integer('num_workers', os.cpu_count() or 1,
                                    'Processes of the parallel rows.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Interleaved rounds.')
_UPDATE_IMAGES = flags.DEFINE_integer(
    'update_images', 20, 'Images of the PanopticQuality.update timing.')
_WORK_DIR = flags.DEFINE_string('work_dir', None,
                                'Where to write the case (default: a temp '
                                'folder, removed after).')

_NUM_CATEGORIES = 133
_NUM_THINGS = 80
_CATEGORIES = [{'id': i + 1, 'isthing': int(i < _NUM_THINGS),
                'name': f'c{i + 1}'} for i in range(_NUM_CATEGORIES)]


def _regions(seeds: np.ndarray, height: int, width: int) -> np.ndarray:
  """int [height, width]: index of the nearest seed (Voronoi cells)."""
  rows, cols = np.mgrid[0:height:4, 0:width:4]
  distance = ((rows[..., None] - seeds[:, 0])**2 +
              (cols[..., None] - seeds[:, 1])**2)
  coarse = np.argmin(distance, axis=-1)
  return np.kron(coarse, np.ones((4, 4), np.int64))[:height, :width]


def _segment_maps(rng: np.random.Generator, height: int, width: int,
                  num_segments: int):
  """A ground-truth map and a prediction of it (moved boundaries, void)."""
  seeds = rng.uniform([0, 0], [height, width], size=(num_segments, 2))
  gt = _regions(seeds, height, width) + 1
  moved = seeds + rng.normal(0, 0.06 * min(height, width), seeds.shape)
  pred = _regions(moved, height, width) + 1
  gt[rng.random((height, width)) < 0.02] = 0
  band = (np.abs(np.arange(width) - rng.integers(0, width)) < 6)[None]
  gt = np.where(band, 0, gt)
  pred[:, :int(rng.integers(0, 12))] = 0
  return gt, pred


def write_case(folder: str, num_images: int, height: int, width: int,
               num_segments: int, seed: int = 0) -> None:
  """Writes gt.json, gt/, pred.json, pred/ in the COCO panoptic format."""
  rng = np.random.default_rng(seed)
  annotations = {'gt': [], 'pred': []}
  images = []
  for side in annotations:
    os.makedirs(os.path.join(folder, side), exist_ok=True)
  for image_id in range(1, num_images + 1):
    file_name = f'{image_id:012d}.png'
    images.append({'id': image_id, 'file_name': file_name,
                   'height': height, 'width': width})
    gt, pred = _segment_maps(rng, height, width, num_segments)
    classes = rng.integers(1, _NUM_CATEGORIES + 1, num_segments)
    pred_classes = np.where(rng.random(num_segments) < 0.85, classes,
                            rng.integers(1, _NUM_CATEGORIES + 1,
                                         num_segments))
    # COCO-like ids: large, and different between gt and prediction.
    ids = rng.choice(2**24 - 1, num_segments, replace=False) + 1
    pred_ids = rng.choice(2**24 - 1, num_segments, replace=False) + 1
    for side, index_map, categories, side_ids in (
        ('gt', gt, classes, ids), ('pred', pred, pred_classes, pred_ids)):
      segment_map = np.where(index_map > 0,
                             np.concatenate([[0], side_ids])[index_map], 0)
      crowd = ([bool(rng.random() < 0.05) for _ in side_ids]
               if side == 'gt' else [])
      coco_panoptic_io.write_segment_map(
          os.path.join(folder, side, file_name), segment_map)
      annotations[side].append({
          'image_id': image_id, 'file_name': file_name,
          'segments_info': coco_panoptic_io.segments_info_from_map(
              segment_map, categories.tolist(), crowd, side_ids.tolist())})
  coco_panoptic_io.write_json(os.path.join(folder, 'gt.json'), {
      'images': images, 'annotations': annotations['gt'],
      'categories': _CATEGORIES})
  coco_panoptic_io.write_json(os.path.join(folder, 'pred.json'),
                              {'annotations': annotations['pred']})


# The reference: panopticapi's pq_compute (commit 7bb4655), transcribed.
_OFFSET = 256 * 256 * 256


def _rgb2id(color: np.ndarray) -> np.ndarray:
  color = color.astype(np.int32)
  return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def _reference_single_core(args) -> Dict[int, List[float]]:
  annotation_set, gt_folder, pred_folder, categories = args
  stats = {c: [0, 0, 0, 0.0] for c in categories}  # tp, fp, fn, iou
  for gt_ann, pred_ann in annotation_set:
    pan_gt = _rgb2id(np.array(Image.open(
        os.path.join(gt_folder, gt_ann['file_name'])), dtype=np.uint32))
    pan_pred = _rgb2id(np.array(Image.open(
        os.path.join(pred_folder, pred_ann['file_name'])), dtype=np.uint32))
    gt_segms = {el['id']: el for el in gt_ann['segments_info']}
    pred_segms = {el['id']: el for el in pred_ann['segments_info']}
    pred_labels_set = set(el['id'] for el in pred_ann['segments_info'])
    labels, labels_cnt = np.unique(pan_pred, return_counts=True)
    for label, label_cnt in zip(labels, labels_cnt):
      if label not in pred_segms:
        if label == 0:
          continue
        raise KeyError(f'segment {label} not in JSON')
      pred_segms[label]['area'] = label_cnt
      pred_labels_set.remove(label)
    if pred_labels_set:
      raise KeyError(f'segments {pred_labels_set} not in PNG')
    pan_gt_pred = pan_gt.astype(np.uint64) * _OFFSET + pan_pred.astype(
        np.uint64)
    gt_pred_map = {}
    labels, labels_cnt = np.unique(pan_gt_pred, return_counts=True)
    for label, intersection in zip(labels, labels_cnt):
      gt_id = label // _OFFSET
      pred_id = label % _OFFSET
      gt_pred_map[(gt_id, pred_id)] = intersection
    gt_matched, pred_matched = set(), set()
    for label_tuple, intersection in gt_pred_map.items():
      gt_label, pred_label = label_tuple
      if gt_label not in gt_segms or pred_label not in pred_segms:
        continue
      if gt_segms[gt_label]['iscrowd'] == 1:
        continue
      if (gt_segms[gt_label]['category_id'] !=
          pred_segms[pred_label]['category_id']):
        continue
      union = (pred_segms[pred_label]['area'] + gt_segms[gt_label]['area'] -
               intersection - gt_pred_map.get((0, pred_label), 0))
      iou = intersection / union
      if iou > 0.5:
        stat = stats[gt_segms[gt_label]['category_id']]
        stat[0] += 1
        stat[3] += iou
        gt_matched.add(gt_label)
        pred_matched.add(pred_label)
    crowd_labels_dict = {}
    for gt_label, gt_info in gt_segms.items():
      if gt_label in gt_matched:
        continue
      if gt_info['iscrowd'] == 1:
        crowd_labels_dict[gt_info['category_id']] = gt_label
        continue
      stats[gt_info['category_id']][2] += 1
    for pred_label, pred_info in pred_segms.items():
      if pred_label in pred_matched:
        continue
      intersection = gt_pred_map.get((0, pred_label), 0)
      if pred_info['category_id'] in crowd_labels_dict:
        intersection += gt_pred_map.get(
            (crowd_labels_dict[pred_info['category_id']], pred_label), 0)
      if intersection / pred_info['area'] > 0.5:
        continue
      stats[pred_info['category_id']][1] += 1
  return stats


def reference_pq(gt_json: str, gt_folder: str, pred_json: str,
                 pred_folder: str, num_workers: int) -> Dict[str, Any]:
  """panopticapi's pq_compute; the result in `PanopticQuality.result` form."""
  with open(gt_json) as f:
    gt = json.load(f)
  with open(pred_json) as f:
    pred = json.load(f)
  pred_by_image = {a['image_id']: a for a in pred['annotations']}
  matched = [(a, pred_by_image[a['image_id']]) for a in gt['annotations']]
  categories = [c['id'] for c in gt['categories']]
  splits = np.array_split(np.arange(len(matched)), num_workers)
  tasks = [([matched[i] for i in split], gt_folder, pred_folder, categories)
           for split in splits]
  with multiprocessing.get_context('fork').Pool(num_workers) as pool:
    parts = pool.map(_reference_single_core, tasks)
  pq = panoptic_quality.PanopticQuality(gt['categories'])
  for part in parts:
    pq.add_counts({c: {'tp': s[0], 'fp': s[1], 'fn': s[2], 'iou_sum': s[3]}
                   for c, s in part.items()})
  return pq.result()


def hotcoco_pq(gt_json: str, gt_folder: str, pred_json: str,
               pred_folder: str) -> Dict[str, Any]:
  from hotcoco import panoptic  # pylint: disable=g-import-not-at-top
  evaluator = panoptic.PanopticEval(gt_json, pred_json, gt_folder=gt_folder,
                                    pred_folder=pred_folder)
  evaluator.evaluate()
  theirs = evaluator.results()
  result = {g: dict(theirs[g]) for g in ('All', 'Things', 'Stuff')}
  result['per_class'] = {
      str(c): {'tp': s['tp'], 'fp': s['fp'], 'fn': s['fn'],
               'iou_sum': s['iou']} for c, s in theirs['per_class'].items()}
  return result


def max_difference(result: Dict[str, Any], base: Dict[str, Any]) -> float:
  """Max |difference| of group PQ / SQ / RQ; inf if any tp / fp / fn differ."""
  for category_id, stats in base['per_class'].items():
    other = result['per_class'].get(category_id)
    if other is None:
      if stats['tp'] + stats['fp'] + stats['fn']:
        return float('inf')
      continue
    if any(other[k] != stats[k] for k in ('tp', 'fp', 'fn')):
      return float('inf')
  return max(abs(result[g][m] - base[g][m])
             for g in ('All', 'Things', 'Stuff') for m in ('pq', 'sq', 'rq'))


def time_update(num_images: int, size: int = 640,
                num_segments: int = 20) -> Dict[str, float]:
  """Milliseconds per `PanopticQuality.update` on size x size maps."""
  rng = np.random.default_rng(1)
  pq = panoptic_quality.PanopticQuality(_CATEGORIES)
  cases = []
  for _ in range(num_images):
    gt, pred = _segment_maps(rng, size, size, num_segments)
    classes = rng.integers(1, _NUM_CATEGORIES + 1, num_segments + 1)
    cases.append((gt.astype(np.int32),
                  [{'id': i, 'category_id': int(classes[i]), 'iscrowd': 0}
                   for i in np.unique(gt).tolist() if i],
                  pred.astype(np.int32),
                  [{'id': i, 'category_id': int(classes[i])}
                   for i in np.unique(pred).tolist() if i]))
  times = []
  for case in cases:
    start = time.perf_counter()
    pq.update(*case)
    times.append((time.perf_counter() - start) * 1000)
  return {'median_ms': statistics.median(times), 'min_ms': min(times),
          'max_ms': max(times)}


def run(folder: str) -> Dict[str, Any]:
  """Writes the case in `folder` (unless there) and times every row."""
  gt_json, pred_json = (os.path.join(folder, n) for n in ('gt.json',
                                                            'pred.json'))
  gt_folder, pred_folder = (os.path.join(folder, n) for n in ('gt', 'pred'))
  if not os.path.exists(pred_json):
    write_case(folder, _NUM_IMAGES.value, _HEIGHT.value, _WIDTH.value,
               _SEGMENTS.value)
  workers = _NUM_WORKERS.value
  rows: Dict[str, Callable[[], Dict[str, Any]]] = {
      'ours_1': lambda: panoptic_quality.evaluate_coco_panoptic(
          gt_json, gt_folder, pred_json, pred_folder, num_workers=1),
      f'ours_{workers}': lambda: panoptic_quality.evaluate_coco_panoptic(
          gt_json, gt_folder, pred_json, pred_folder, num_workers=workers),
      f'reference_{workers}': lambda: reference_pq(
          gt_json, gt_folder, pred_json, pred_folder, workers),
  }
  try:
    import hotcoco.panoptic  # pylint: disable=g-import-not-at-top,unused-import
    rows['hotcoco'] = lambda: hotcoco_pq(gt_json, gt_folder, pred_json,
                                         pred_folder)
  except ImportError:
    pass
  times = {name: [] for name in rows}
  results = {}
  for _ in range(_REPEATS.value):
    for name, function in rows.items():
      start = time.perf_counter()
      results[name] = function()
      times[name].append(time.perf_counter() - start)
  base = results['ours_1']
  return {
      'num_images': _NUM_IMAGES.value, 'size': [_HEIGHT.value, _WIDTH.value],
      'segments_per_image': _SEGMENTS.value, 'repeats': _REPEATS.value,
      'cpu_count': os.cpu_count(),
      'seconds': {name: {'median': statistics.median(t), 'min': min(t),
                         'max': max(t)} for name, t in times.items()},
      'max_pq_difference': {name: max_difference(r, base)
                            for name, r in results.items()},
      'pq_all': base['All']['pq'],
      'update_640_ms': time_update(_UPDATE_IMAGES.value),
  }


def format_table(result: Dict[str, Any]) -> str:
  lines = [f'{result["num_images"]} images {result["size"][0]}x'
           f'{result["size"][1]}, ~{result["segments_per_image"]} segments; '
           f'{result["repeats"]} interleaved rounds; PQ {100 * result["pq_all"]:.2f}',
           f'{"row":14s} {"median s":>9s} {"min s":>7s} {"max s":>7s} '
           f'{"max |dPQ|":>10s}']
  for name, t in result['seconds'].items():
    lines.append(f'{name:14s} {t["median"]:9.2f} {t["min"]:7.2f} '
                 f'{t["max"]:7.2f} {result["max_pq_difference"][name]:10.1e}')
  u = result['update_640_ms']
  lines.append(f'PanopticQuality.update, 640x640: {u["median_ms"]:.1f} ms per '
               f'image (min {u["min_ms"]:.1f}, max {u["max_ms"]:.1f})')
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  del argv
  if _WORK_DIR.value:
    os.makedirs(_WORK_DIR.value, exist_ok=True)
    result = run(_WORK_DIR.value)
  else:
    with tempfile.TemporaryDirectory() as folder:
      result = run(folder)
  print(format_table(result))
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
