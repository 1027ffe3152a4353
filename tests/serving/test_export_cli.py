"""The export command lines, run as subprocesses."""

import os

import numpy as np
import pytest
import tensorflow as tf

from maskconver import experiment_loading
from maskconver import keys
from maskconver.inference import tflite_runtime
from maskconver.serving import export_module
from maskconver.serving import tflite_rewrite

_EXPORT = 'maskconver.serving.export_saved_model'
_TFLITE = 'maskconver.serving.export_tflite'


def _export_args(serving, checkpoint, export_dir, *extra):
  return [f'--experiment={serving.experiment}',
          f'--params_override={serving.override_flag}',
          f'--checkpoint_path={checkpoint}', f'--export_dir={export_dir}',
          *extra]


def test_bad_input_type_is_named(serving, checkpoint_prefix, tmp_path):
  result = serving.run_module(_EXPORT, _export_args(
      serving, checkpoint_prefix, tmp_path / 'out', '--input_type=jpeg'))
  assert result.returncode != 0
  assert '--input_type must be one of' in result.stderr
  assert "'jpeg'" in result.stderr
  assert not os.path.exists(tmp_path / 'out')


def test_missing_checkpoint_path_is_named(serving, tmp_path):
  result = serving.run_module(_EXPORT, [
      f'--experiment={serving.experiment}',
      f'--params_override={serving.override_flag}',
      f'--export_dir={tmp_path / "out"}'])
  assert result.returncode != 0
  assert '--checkpoint_path is required' in result.stderr


def test_checkpoint_path_is_resolved_or_refused(checkpoint_prefix, tmp_path):
  assert experiment_loading.resolve_checkpoint(
      os.path.dirname(checkpoint_prefix)) == checkpoint_prefix
  assert experiment_loading.resolve_checkpoint(
      checkpoint_prefix) == checkpoint_prefix
  with pytest.raises(ValueError, match='no checkpoint in this directory'):
    experiment_loading.resolve_checkpoint(str(tmp_path))
  with pytest.raises(ValueError, match='ckpt-9.index does not exist'):
    experiment_loading.resolve_checkpoint(str(tmp_path / 'ckpt-9'))


def test_tflite_cli_names_a_bad_quant_type(serving, exported, tmp_path):
  result = serving.run_module(_TFLITE, [
      f'--saved_model_dir={exported}', f'--tflite_path={tmp_path / "m"}',
      '--quant_type=int4'])
  assert result.returncode != 0
  assert '--quant_type must be one of' in result.stderr
  assert not os.path.exists(tmp_path / 'm')


def _export(serving, checkpoint, export_dir):
  result = serving.run_module(_EXPORT, _export_args(
      serving, checkpoint, export_dir, '--input_type=tflite',
      '--input_image_size=64,64'))
  assert result.returncode == 0, result.stderr
  return export_dir / 'saved_model'


def _eager(tiny_module, test_image):
  normalized, _ = tiny_module.preprocess(tf.constant(test_image))
  normalized = normalized[tf.newaxis]
  return normalized, tiny_module.serve_normalized(normalized)


def test_export_cli_reproduces_the_model(serving, checkpoint_prefix,
                                         tiny_module, test_image, tmp_path):
  export_dir = tmp_path / 'export'
  saved_model_dir = _export(serving, os.path.dirname(checkpoint_prefix),
                            export_dir)
  assert (export_dir / 'params.yaml').exists()
  assert tf.io.gfile.glob(str(export_dir / 'checkpoint' / 'ckpt*.index'))
  normalized, eager = _eager(tiny_module, test_image)
  signature = tf.saved_model.load(str(saved_model_dir)).signatures[
      'serving_default']
  assert signature.structured_input_signature[1]['inputs'].shape == [1, 64,
                                                                     64, 3]
  outputs = signature(inputs=normalized)
  for key in export_module.OUTPUT_KEYS:
    if eager[key].dtype.is_floating:
      # Scores and image info: the exported graph may sum in another order
      # than this process (3 ulps measured, see test_export_module.py); 1e-5
      # is still 80x below the gap between two segments' scores.
      np.testing.assert_allclose(outputs[key], eager[key], rtol=0, atol=1e-5,
                                 err_msg=key)
    else:  # Maps, classes and thing flags: exactly.
      np.testing.assert_array_equal(outputs[key], eager[key], err_msg=key)


@pytest.mark.slow
def test_export_then_tflite_cli(serving, checkpoint_prefix, tiny_module,
                                test_image, tmp_path):
  saved_model_dir = _export(serving, checkpoint_prefix, tmp_path / 'export')
  tflite_path = tmp_path / 'model.tflite'
  result = serving.run_module(_TFLITE, [
      f'--saved_model_dir={saved_model_dir}', f'--tflite_path={tflite_path}'])
  assert result.returncode == 0, result.stderr
  assert 'float32' in result.stdout
  model = tflite_path.read_bytes()
  assert tflite_rewrite.non_builtin_ops(model) == []
  normalized, eager = _eager(tiny_module, test_image)
  runner = tflite_runtime.make_interpreter(model).get_signature_runner()
  lite = runner(inputs=normalized.numpy())
  agreement = np.mean(lite[keys.PANOPTIC_SEGMENT_MAP] ==
                      eager[keys.PANOPTIC_SEGMENT_MAP].numpy())
  assert agreement >= 0.995


@pytest.mark.slow
def test_int8_cli_calibrates_on_validation_data(serving, exported, val_records,
                                                tmp_path):
  tflite_path = tmp_path / 'int8.tflite'
  result = serving.run_module(_TFLITE, [
      f'--saved_model_dir={exported}', f'--tflite_path={tflite_path}',
      '--signature_key=tflite', '--quant_type=int8_full'])
  assert result.returncode != 0
  assert 'pass --experiment' in result.stderr
  result = serving.run_module(_TFLITE, [
      f'--saved_model_dir={exported}', f'--tflite_path={tflite_path}'])
  assert result.returncode != 0
  assert '--input_type=tflite' in result.stderr
  override = serving.override_flag_with(
      {'task': {'validation_data': {'input_path': val_records}}})
  result = serving.run_module(_TFLITE, [
      f'--saved_model_dir={exported}', f'--tflite_path={tflite_path}',
      '--signature_key=tflite', '--quant_type=int8_full_fp32_io',
      f'--experiment={serving.experiment}', f'--params_override={override}',
      '--calibration_steps=3'])
  assert result.returncode == 0, result.stderr
  model = tflite_path.read_bytes()
  assert tflite_rewrite.non_builtin_ops(model) == []
  interpreter = tflite_runtime.make_interpreter(model)
  details = interpreter.get_signature_runner('tflite').get_input_details()
  assert details['inputs']['dtype'] == np.float32
