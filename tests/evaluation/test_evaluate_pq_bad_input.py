"""PQ evaluation inputs as panopticapi's `pq_compute` treats them.

Case 02 of tests/data/pq_cases (one image, id 424242, whose reference
result panopticapi computed) is copied and edited per test.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

from maskconver.data import coco_panoptic_io
from maskconver.evaluation import panoptic_quality

_CASE = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'pq_cases' / '02'
_IMAGE = 424242


def _copy(tmp_path):
  case = tmp_path / 'case'
  shutil.copytree(_CASE, case)
  pred = json.loads((case / 'pred.json').read_text())
  return case, pred


def _evaluate(case, warnings=None):
  return panoptic_quality.evaluate_coco_panoptic(
      str(case / 'gt.json'), str(case / 'gt'), str(case / 'pred.json'),
      str(case / 'pred'), warn=None if warnings is None else warnings.append)


def _with_unknown_images(case, pred):
  """Adds predictions of images 7 and 'x', absent from the ground truth.

  Their PNGs do not exist: panopticapi never reads them.
  """
  for image_id in (7, 'x'):
    pred['annotations'].append({'image_id': image_id,
                                'file_name': f'missing_{image_id}.png',
                                'segments_info': []})
  (case / 'pred.json').write_text(json.dumps(pred))


def test_predictions_of_unknown_images_are_ignored_with_a_warning(tmp_path):
  case, pred = _copy(tmp_path)
  _with_unknown_images(case, pred)
  warnings = []
  result = _evaluate(case, warnings)
  reference = json.loads((_CASE / 'reference.json').read_text())
  for group in ('All', 'Things', 'Stuff'):
    assert result[group]['n'] == reference[group]['n']
    assert result[group]['pq'] == pytest.approx(reference[group]['pq'],
                                                abs=1e-12)
  assert warnings == [
      f'{case / "pred.json"}: ignored the predictions of 2 image(s) absent '
      f'from {case / "gt.json"}, as panopticapi does: image_id 7, \'x\'']


def test_cli_warns_and_scores_the_rest(tmp_path):
  case, pred = _copy(tmp_path)
  _with_unknown_images(case, pred)
  completed = subprocess.run(
      [sys.executable, '-m', 'maskconver.tools.evaluate_pq',
       f'--gt_json={case / "gt.json"}', f'--gt_folder={case / "gt"}',
       f'--pred_json={case / "pred.json"}', f'--pred_folder={case / "pred"}'],
      capture_output=True, text=True, timeout=120, check=False)
  assert completed.returncode == 0, completed.stderr
  assert ('warning: ' in completed.stderr and
          "absent from" in completed.stderr and
          "image_id 7, 'x'" in completed.stderr)
  # The reference table of case 02 (see test_evaluate_pq_cli.py).
  assert completed.stdout.splitlines()[2].split() == [
      'All', '|', '27.1', '36.8', '34.4', '6']


def _first_pred_png(case, pred):
  return case / 'pred' / pred['annotations'][0]['file_name']


def test_segment_in_png_but_not_in_json_names_image_and_segment(tmp_path):
  case, pred = _copy(tmp_path)
  removed = pred['annotations'][0]['segments_info'].pop(1)
  (case / 'pred.json').write_text(json.dumps(pred))
  with pytest.raises(panoptic_quality.PanopticFormatError) as error:
    _evaluate(case)
  png = _first_pred_png(case, pred)
  assert str(error.value) == (
      f'{png} vs {case / "gt" / png.name} (image_id {_IMAGE}): segment id '
      f'{removed["id"]} is in the predicted PNG but not in its '
      'segments_info')


def test_prediction_png_of_another_size_names_both_files(tmp_path):
  case, pred = _copy(tmp_path)
  png = _first_pred_png(case, pred)
  ids = coco_panoptic_io.read_segment_map(str(png))
  coco_panoptic_io.write_segment_map(str(png), ids[:-2])
  with pytest.raises(panoptic_quality.PanopticFormatError) as error:
    _evaluate(case)
  height, width = ids.shape
  assert str(error.value) == (
      f'{png} vs {case / "gt" / png.name} (image_id {_IMAGE}): ground truth '
      f'is ({height}, {width}) and prediction ({height - 2}, {width}); '
      'expected the same [height, width]')


def test_unknown_category_names_image_segment_and_category(tmp_path):
  case, pred = _copy(tmp_path)
  segment = pred['annotations'][0]['segments_info'][2]
  segment['category_id'] = 999
  (case / 'pred.json').write_text(json.dumps(pred))
  with pytest.raises(panoptic_quality.PanopticFormatError,
                     match=rf'\(image_id {_IMAGE}\): predicted segment '
                     rf'{segment["id"]} has unknown category_id 999'):
    _evaluate(case)


def test_image_predicted_twice_is_refused(tmp_path):
  case, pred = _copy(tmp_path)
  pred['annotations'].append(pred['annotations'][0])
  (case / 'pred.json').write_text(json.dumps(pred))
  with pytest.raises(panoptic_quality.PanopticFormatError,
                     match=f'image_id {_IMAGE} is predicted twice'):
    _evaluate(case)
