"""benchmarks.evaluate_exported: PQ of the Keras model and its exports."""

import json
import os
import subprocess
import sys

from absl import app
import numpy as np
import pytest

from benchmarks import evaluate_exported as evaluate_exported_lib
from maskconver import keys

# The checkout root, from which `python -m benchmarks...` runs.
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def evaluate_exported():
  return evaluate_exported_lib


@pytest.fixture(scope='module')
def params_with_data(serving, val_records):
  return serving.make_params(
      {'task': {'validation_data': {'input_path': val_records}}})


def _oracle(example):
  """Predicts the ground truth: every non-crowd segment, crowd as void."""
  info = example[keys.IMAGE_INFO]
  height, width = np.round(info[0]).astype(int)
  gt_map = example[keys.GT_SEGMENT_MAP][:height, :width]
  segment_map = np.zeros_like(gt_map)
  classes = []
  for segment_id, class_id, crowd in zip(example[keys.GT_SEGMENT_IDS],
                                         example[keys.GT_SEGMENT_CLASSES],
                                         example[keys.GT_SEGMENT_IS_CROWD]):
    if segment_id == 0 or crowd:
      continue
    classes.append(class_id)
    segment_map[gt_map == segment_id] = len(classes)
  return segment_map, np.array(classes)


def test_exports_score_like_the_keras_model(evaluate_exported,
                                            params_with_data, tiny_module,
                                            exported, tflite_float, tmp_path):
  tflite_path = tmp_path / 'float.tflite'
  tflite_path.write_bytes(tflite_float)
  predictors = dict(evaluate_exported.keras_predictors(tiny_module))
  predictors['saved_model'] = evaluate_exported.saved_model_predictor(
      exported)
  predictors['tflite_float32'] = evaluate_exported.tflite_predictor(
      str(tflite_path))
  predictors['oracle'] = _oracle
  result = evaluate_exported.evaluate(params_with_data, predictors)
  assert result['num_images'] == 3
  variants = result['variants']
  # Predicting the ground truth scores 100 (the evaluation plumbing).
  assert variants['oracle']['PQ_all'] == pytest.approx(100.0)
  # The SavedModel computes exactly what the module computes eagerly.
  assert variants['saved_model']['pixel_agreement'] == 1.0
  for metric in ('PQ_all', 'SQ_all', 'RQ_all'):
    assert variants['saved_model'][metric] == variants['keras'][metric]
  assert variants['tflite_float32']['reference'] == 'keras_input_res'
  assert variants['tflite_float32']['pixel_agreement'] >= 0.995
  for values in variants.values():
    assert 0.0 <= values['PQ_all'] <= 100.0
  assert 'oracle' in evaluate_exported.format_table(result)


def test_cli_evaluates_a_tflite_model(serving, val_records, tflite_float,
                                      tmp_path):
  tflite_path = tmp_path / 'float.tflite'
  tflite_path.write_bytes(tflite_float)
  output_json = tmp_path / 'pq.json'
  override = serving.override_flag_with(
      {'task': {'validation_data': {'input_path': val_records}}})
  result = subprocess.run(
      [sys.executable, '-m', 'benchmarks.evaluate_exported',
       f'--experiment={serving.experiment}',
       f'--params_override={override}', f'--tflite=float32={tflite_path}',
       '--num_images=2', f'--output_json={output_json}'],
      capture_output=True, text=True, timeout=300, check=False, cwd=_REPO)
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report == json.loads(output_json.read_text())
  assert report['num_images'] == 2
  assert list(report['variants']) == ['tflite_float32']


def test_bad_tflite_flags_are_named(evaluate_exported, tmp_path):
  model = tmp_path / 'm.tflite'
  model.write_bytes(b'')
  assert evaluate_exported.parse_tflite_flags([f'int8={model}']) == [
      ('int8', str(model))]
  with pytest.raises(app.UsageError, match='--tflite must be name=path'):
    evaluate_exported.parse_tflite_flags([str(model)])
  with pytest.raises(app.UsageError, match='missing.tflite does not exist'):
    evaluate_exported.parse_tflite_flags([f'a={tmp_path / "missing.tflite"}'])
