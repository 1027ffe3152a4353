"""The phone TFLite models pass TFLite's static GPU-delegate analyzer.

`tf.lite.experimental.Analyzer.analyze(gpu_compatibility=True)` prints one
`GPU COMPATIBILITY WARNING` line per op it finds the GPU delegate cannot run
(`Op#12 NAME(...) GPU COMPATIBILITY WARNING: ...`). The test fails naming
every such op, for the phone export (uint8 pixels in, batch 1) converted to
float32, dynamic range and int8. The default test uses the tiny model of
conftest.py (the mobile recipe's decoder, heads and merge on a small
backbone); the slow one the MobileNet-MH recipes at 256 and 640 with random
weights (the ops do not depend on the weights).

The analyzer is static: it reads op types and tensor types, not numerics or
speed on a real GPU, and in the TensorFlow 2.20 wheel it accepts ops the GPU
delegate has no kernel for (`test_analyzer_limit` pins that, so the day it
starts flagging them this file says so).
"""

import contextlib
import io
import re
from typing import List

import pytest
import tensorflow as tf

from official.core import exp_factory

from maskconver.serving import export_module
from maskconver.serving import export_saved_model
from maskconver.serving import tflite_conversion

# quant_type of tflite_conversion per exported variant.
_QUANT_TYPES = {'float32': None, 'dynamic_range': 'default',
                'int8': 'int8_full'}
_COMPATIBLE = 'Your model looks compatible with GPU delegate'
_WARNING = re.compile(r'(Op#\d+ [A-Z0-9_]+)\(.*GPU COMPATIBILITY WARNING: (.*)')


def analyze(model: bytes) -> str:
  """The analyzer's GPU-compatibility report (it prints to stdout)."""
  report = io.StringIO()
  with contextlib.redirect_stdout(report):
    tf.lite.experimental.Analyzer.analyze(model_content=model,
                                          gpu_compatibility=True)
  return report.getvalue()


def gpu_incompatible_ops(report: str) -> List[str]:
  """'Op#N NAME: reason' for each op the report flags."""
  return [f'{m.group(1)}: {m.group(2)}' for m in map(_WARNING.search,
                                                     report.splitlines()) if m]


def uint8_phone_export(module: export_module.MaskConverModule,
                       directory: str) -> str:
  return export_saved_model.save_module(
      module, {'tflite_uint8': 'serving_default'}, directory)


def assert_gpu_compatible(saved_model_dir: str, input_size: int,
                          variant: str) -> None:
  quant_type = _QUANT_TYPES[variant]
  calibration = None
  if quant_type:
    calibration = tflite_conversion.random_calibration_dataset(
        [1, input_size, input_size, 3], 2, input_dtype=tf.uint8)
  model = tflite_conversion.convert(saved_model_dir, quant_type, calibration)
  report = analyze(model)
  flagged = gpu_incompatible_ops(report)
  assert not flagged, f'{variant}: GPU-incompatible ops: {flagged}'
  assert _COMPATIBLE in report, report[-2000:]


@pytest.fixture(scope='module')
def tiny_phone_export(tiny_module, tmp_path_factory) -> str:
  return uint8_phone_export(
      tiny_module, str(tmp_path_factory.mktemp('gpu') / 'saved_model'))


def test_warning_lines_name_the_op():
  line = ('  Op#7 CUMSUM(T#0, T#1[1]) -> [T#3] GPU COMPATIBILITY WARNING: '
          'Not supported op CUMSUM')
  assert gpu_incompatible_ops(f'header\n{line}\n') == [
      'Op#7 CUMSUM: Not supported op CUMSUM']


@pytest.mark.parametrize('variant', sorted(_QUANT_TYPES))
def test_tiny_phone_model_is_gpu_compatible(tiny_phone_export, serving,
                                            variant):
  assert_gpu_compatible(tiny_phone_export, serving.input_size, variant)


def test_analyzer_limit():
  """UNIQUE and WHERE (dynamic output shapes) pass the analyzer."""

  @tf.function(input_signature=[tf.TensorSpec([8], tf.int32)])
  def dynamic(ids):
    unique, _ = tf.unique(ids)
    return tf.where(unique > 0)

  model = tf.lite.TFLiteConverter.from_concrete_functions(
      [dynamic.get_concrete_function()], dynamic).convert()
  report = analyze(model)
  assert 'UNIQUE' in report and 'WHERE' in report
  assert not gpu_incompatible_ops(report)
  assert _COMPATIBLE in report


@pytest.mark.slow
@pytest.mark.parametrize('size', [256, 640])
def test_mobilenet_mh_models_are_gpu_compatible(size, tmp_path):
  params = exp_factory.get_exp_config(f'maskconver_mnmh_coco_{size}')
  module = export_module.MaskConverModule(
      params, batch_size=1, input_image_size=[size, size],
      input_type='tflite_uint8')
  saved_model_dir = uint8_phone_export(module, str(tmp_path / 'saved_model'))
  for variant in sorted(_QUANT_TYPES):
    assert_gpu_compatible(saved_model_dir, size, variant)
