"""Tests of the official-parity Panoptic Quality."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from maskconver.data import coco_panoptic_io
from maskconver.evaluation import panoptic_quality

_CASES_DIR = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'pq_cases'
_CASES = sorted(p.name for p in _CASES_DIR.iterdir() if p.is_dir())

_CATEGORIES = [
    {'id': 3, 'isthing': 1, 'name': 'car'},
    {'id': 5, 'isthing': 1, 'name': 'dog'},
    {'id': 9, 'isthing': 0, 'name': 'sky'},
    {'id': 12, 'isthing': 0, 'name': 'road'},
]


def _evaluate_case(case_dir):
  return panoptic_quality.evaluate_coco_panoptic(
      str(case_dir / 'gt.json'), str(case_dir / 'gt'),
      str(case_dir / 'pred.json'), str(case_dir / 'pred'))


def test_all_reference_cases_are_present():
  assert _CASES == ['00', '02', '03', '04', '08', '20']


@pytest.mark.parametrize('case', _CASES)
def test_matches_official_evaluator(case):
  case_dir = _CASES_DIR / case
  reference = json.loads((case_dir / 'reference.json').read_text())
  result = _evaluate_case(case_dir)
  for group in ('All', 'Things', 'Stuff'):
    assert result[group]['n'] == reference[group]['n'], group
    for metric in ('pq', 'sq', 'rq'):
      assert result[group][metric] == pytest.approx(
          reference[group][metric], abs=1e-9), (group, metric)
  assert set(result['per_class']) == set(reference['per_class'])
  for category, expected in reference['per_class'].items():
    got = result['per_class'][category]
    for count in ('tp', 'fp', 'fn'):
      assert got[count] == expected[count], (category, count)
    assert got['iou_sum'] == pytest.approx(expected['iou_sum'], abs=1e-9)
    assert got['counted'] == expected['counted']


def test_handbuilt_case_matches_hand_derivation():
  case_dir = _CASES_DIR / '02'
  expected = json.loads((case_dir / 'meta.json').read_text())['expected']
  per_class = _evaluate_case(case_dir)['per_class']
  for category, counts in expected.items():
    for name, value in counts.items():
      assert per_class[category][name] == pytest.approx(value, abs=1e-12)


def _pq():
  return panoptic_quality.PanopticQuality(_CATEGORIES)


def test_matching_rules_on_a_tiny_map():
  # Ground truth: car 1 on the left two columns, void on column 2, sky 2 on
  # the right. Prediction: car 7 covers columns 0-2 (a column on void), dog 8
  # is a false positive on sky.
  gt = np.array([[1, 1, 0, 2, 2]] * 4)
  pred = np.array([[7, 7, 7, 8, 2]] * 4)
  gt_segments = [{'id': 1, 'category_id': 3, 'iscrowd': 0},
                 {'id': 2, 'category_id': 9, 'iscrowd': 0}]
  pred_segments = [{'id': 7, 'category_id': 3}, {'id': 8, 'category_id': 5},
                   {'id': 2, 'category_id': 9}]
  pq = _pq()
  pq.update(gt, gt_segments, pred, pred_segments)
  result = pq.result()
  # car: IoU = 8 / (12 + 8 - 8 - 4 on void) = 1.
  assert result['per_class']['3']['tp'] == 1
  assert result['per_class']['3']['iou_sum'] == pytest.approx(1.0)
  # sky: IoU = 4 / 8 = 0.5 is not a match: one fn and one fp.
  assert result['per_class']['9'] == pytest.approx(
      {'pq': 0.0, 'sq': 0.0, 'rq': 0.0, 'tp': 0, 'fp': 1, 'fn': 1,
       'iou_sum': 0.0, 'counted': True, 'isthing': 0, 'name': 'sky'})
  assert result['per_class']['5']['fp'] == 1
  assert not result['per_class']['12']['counted']
  # Things: car PQ 1, dog 0 -> 0.5; stuff: sky 0 -> All = 1/3.
  assert result['Things'] == pytest.approx(
      {'pq': 0.5, 'sq': 0.5, 'rq': 0.5, 'n': 2})
  assert result['All']['pq'] == pytest.approx(1 / 3)
  assert result['Stuff']['n'] == 1


def test_crowd_and_void_make_a_prediction_ignored():
  # Crowd car 4 on columns 0-1, void column 2; the car prediction covers
  # columns 1-3: 4 crowd + 4 void of 12 pixels -> 2/3 ignored, not fp.
  gt = np.array([[4, 4, 0, 2]] * 4)
  pred = np.array([[0, 7, 7, 7]] * 4)
  gt_segments = [{'id': 4, 'category_id': 3, 'iscrowd': 1},
                 {'id': 2, 'category_id': 9, 'iscrowd': 0}]
  pq = _pq()
  pq.update(gt, gt_segments, pred, [{'id': 7, 'category_id': 3}])
  per_class = pq.result()['per_class']
  assert (per_class['3']['fp'], per_class['3']['fn']) == (0, 0)
  assert per_class['9']['fn'] == 1
  # The same prediction as a dog: the car crowd does not excuse it.
  pq = _pq()
  pq.update(gt, gt_segments, pred, [{'id': 7, 'category_id': 5}])
  assert pq.result()['per_class']['5']['fp'] == 1


def test_merge_equals_one_accumulator():
  gt = np.array([[1, 1, 2, 2]] * 2)
  pred = np.array([[1, 2, 2, 2]] * 2)
  gt_segments = [{'id': 1, 'category_id': 3, 'iscrowd': 0},
                 {'id': 2, 'category_id': 12, 'iscrowd': 0}]
  pred_segments = [{'id': 1, 'category_id': 3}, {'id': 2, 'category_id': 12}]
  both, first, second = _pq(), _pq(), _pq()
  for accumulator in (both, first):
    accumulator.update(gt, gt_segments, pred, pred_segments)
  for accumulator in (both, second):
    accumulator.update(gt, gt_segments, gt, pred_segments)
  first.merge(second)
  assert first.result() == both.result()
  # road: IoU 4/6 then 1 -> sq = (2/3 + 1) / 2.
  assert both.result()['per_class']['12']['sq'] == pytest.approx(5 / 6)
  with pytest.raises(ValueError, match='different categories'):
    first.merge(panoptic_quality.PanopticQuality(_CATEGORIES[:2]))


@pytest.mark.parametrize('pred, pred_segments, message', [
    (np.array([[1, 3]]), [{'id': 1, 'category_id': 3}],
     r'segment id 3 is in the predicted PNG but not in its segments_info'),
    (np.array([[1, 1]]), [{'id': 1, 'category_id': 3},
                          {'id': 6, 'category_id': 3}],
     r'ids \[6\] are in segments_info but not in the PNG'),
    (np.array([[1, 1]]), [{'id': 1, 'category_id': 77}],
     r'unknown category_id 77'),
    (np.array([[1, 1, 1]]), [{'id': 1, 'category_id': 3}],
     r'expected the same \[height, width\]'),
])
def test_update_rejects_inconsistent_predictions(pred, pred_segments,
                                                 message):
  gt = np.array([[1, 1]])
  gt_segments = [{'id': 1, 'category_id': 3, 'iscrowd': 0}]
  with pytest.raises(panoptic_quality.PanopticFormatError,
                     match='img_7.png.*' + message):
    _pq().update(gt, gt_segments, pred, pred_segments, name='img_7.png')


def _copy_case(tmp_path, case='02'):
  target = tmp_path / case
  shutil.copytree(_CASES_DIR / case, target)
  return target


def test_folder_errors_name_the_files(tmp_path):
  case_dir = _copy_case(tmp_path)
  pred_json = case_dir / 'pred.json'
  pred = json.loads(pred_json.read_text())
  png = case_dir / 'pred' / pred['annotations'][0]['file_name']

  os.rename(png, str(png) + '.moved')
  with pytest.raises(panoptic_quality.PanopticFormatError,
                     match=f'{png}: panoptic PNG not found'):
    _evaluate_case(case_dir)
  os.rename(str(png) + '.moved', png)

  pred['annotations'] = []
  pred_json.write_text(json.dumps(pred))
  with pytest.raises(panoptic_quality.PanopticFormatError,
                     match='no prediction for image_id 424242'):
    _evaluate_case(case_dir)


def test_folder_error_for_segment_missing_from_png(tmp_path):
  case_dir = _copy_case(tmp_path)
  pred_json = case_dir / 'pred.json'
  pred = json.loads(pred_json.read_text())
  pred['annotations'][0]['segments_info'].append(
      {'id': 999999, 'category_id': 7})
  pred_json.write_text(json.dumps(pred))
  png = case_dir / 'pred' / pred['annotations'][0]['file_name']
  with pytest.raises(panoptic_quality.PanopticFormatError,
                     match=rf'{png} vs .*\[999999\] are in segments_info'):
    _evaluate_case(case_dir)


def _blocky_map(rng, shape, num_ids):
  coarse = rng.integers(0, num_ids, size=(shape[0] // 4 + 1,
                                          shape[1] // 4 + 1))
  return np.kron(coarse, np.ones((4, 4), np.int64))[:shape[0], :shape[1]]


def _random_case(rng, folder, num_images):
  """Writes random ground truth and perturbed predictions (COCO panoptic)."""
  gt_annotations, pred_annotations, images = [], [], []
  for side in ('gt', 'pred'):
    os.makedirs(folder / side)
  for image_id in range(1, num_images + 1):
    shape = (int(rng.integers(12, 24)), int(rng.integers(12, 24)))
    file_name = f'{image_id:04d}.png'
    images.append({'id': image_id, 'file_name': file_name,
                   'height': shape[0], 'width': shape[1]})
    gt_map = _blocky_map(rng, shape, 7)
    gt_ids = sorted(set(np.unique(gt_map).tolist()) - {0})
    gt_classes = [int(rng.choice([3, 5, 9, 12])) for _ in gt_ids]
    # The prediction: the ground truth with a few blocks replaced, pixel
    # noise, renumbered ids and some categories changed.
    pred_map = np.where(rng.random(shape) < 0.3, _blocky_map(rng, shape, 9),
                        gt_map)
    noise = rng.random(shape) < 0.1
    pred_map[noise] = rng.integers(0, 9, size=int(noise.sum()))
    pred_ids = sorted(set(np.unique(pred_map).tolist()) - {0})
    classes = dict(zip(gt_ids, gt_classes))
    pred_classes = [classes.get(i, 3) if rng.random() < 0.85 else
                    int(rng.choice([3, 5, 9, 12])) for i in pred_ids]
    pred_map = np.where(pred_map > 0, pred_map * 1000 + 17, 0)
    for side, segment_map, ids, categories, annotations in (
        ('gt', gt_map, gt_ids, gt_classes, gt_annotations),
        ('pred', pred_map, [i * 1000 + 17 for i in pred_ids], pred_classes,
         pred_annotations)):
      crowd = [int(side == 'gt' and rng.random() < 0.15) for _ in ids]
      coco_panoptic_io.write_segment_map(str(folder / side / file_name),
                                         segment_map)
      annotations.append({
          'image_id': image_id, 'file_name': file_name,
          'segments_info': coco_panoptic_io.segments_info_from_map(
              segment_map, categories, crowd, ids)})
  coco_panoptic_io.write_json(str(folder / 'gt.json'), {
      'images': images, 'annotations': gt_annotations,
      'categories': _CATEGORIES})
  coco_panoptic_io.write_json(str(folder / 'pred.json'),
                              {'annotations': pred_annotations})


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_agrees_with_hotcoco_on_random_cases(tmp_path, seed):
  panoptic = pytest.importorskip('hotcoco.panoptic')
  _random_case(np.random.default_rng(seed), tmp_path, num_images=6)
  ours = _evaluate_case(tmp_path)
  evaluator = panoptic.PanopticEval(
      str(tmp_path / 'gt.json'), str(tmp_path / 'pred.json'),
      gt_folder=str(tmp_path / 'gt'), pred_folder=str(tmp_path / 'pred'))
  evaluator.evaluate()
  theirs = evaluator.results()
  for group in ('All', 'Things', 'Stuff'):
    assert ours[group] == pytest.approx(theirs[group], abs=1e-9)
  for category_id, stats in theirs['per_class'].items():
    mine = ours['per_class'][str(category_id)]
    assert (mine['tp'], mine['fp'], mine['fn']) == (
        stats['tp'], stats['fp'], stats['fn'])
    assert mine['iou_sum'] == pytest.approx(stats['iou'], abs=1e-9)


def test_array_helpers_feed_update():
  # Ground truth as the parser pads it, prediction as the post-processor
  # returns it; training ids are the category ids.
  gt_records = panoptic_quality.segments_from_arrays(
      np.array([5, 9, 0]), np.array([0, 2, -1]), np.array([False, True,
                                                            False]))
  assert gt_records == [{'id': 5, 'category_id': 0, 'iscrowd': 0},
                        {'id': 9, 'category_id': 2, 'iscrowd': 1}]
  # Segment index 1 of the post-processor's map (id 2) is class 0.
  pred_records = [{'id': 2, 'category_id': 0, 'iscrowd': 0}]
  pq = panoptic_quality.PanopticQuality(
      panoptic_quality.training_categories(num_classes=3,
                                           num_thing_classes=2))
  pq.update(np.array([[5, 5, 9]]), gt_records, np.array([[2, 2, 0]]),
            pred_records)
  result = pq.result()
  assert result['Things'] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0, 'n': 1}
  assert result['Stuff']['n'] == 0
