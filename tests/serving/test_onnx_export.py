"""ONNX export: onnxruntime (CPU) against the SavedModel and TensorFlow ops.

Tolerances: integer outputs (maps, classes, thing flags) must be identical.
Float outputs (scores, image info) within 1e-5 absolute: the two runtimes sum
and fuse in other orders (measured: at most 2e-7, docs/onnx.md), and 1e-5 is
still far below the gap between two segments' scores.
"""

import math
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory

from maskconver import keys
from maskconver.modeling import panoptic_postprocessor
from maskconver.serving import export_module
from maskconver.serving import export_onnx
from maskconver.serving import export_saved_model
from tests.serving import conftest as serving_fixtures

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
tf2onnx = pytest.importorskip('tf2onnx')

_MODULE = 'maskconver.serving.export_onnx'
_FLOAT_ATOL = 1e-5


def _session(model_bytes):
  return ort.InferenceSession(model_bytes,
                              providers=['CPUExecutionProvider'])


def _run(session, feeds):
  names = [o.name for o in session.get_outputs()]
  return dict(zip(names, session.run(None, feeds)))


def _assert_same_outputs(onnx_outputs, reference):
  assert set(onnx_outputs) == set(reference)
  for key, expected in reference.items():
    expected = np.asarray(expected)
    got = onnx_outputs[key]
    assert got.shape == expected.shape, key
    if expected.dtype.kind == 'f':
      np.testing.assert_allclose(got, expected, rtol=0, atol=_FLOAT_ATOL,
                                 err_msg=key)
    else:
      assert got.dtype == expected.dtype, key
      np.testing.assert_array_equal(got, expected, err_msg=key)


def _from_function(function, specs):
  model, _ = tf2onnx.convert.from_function(
      function, input_signature=specs, opset=export_onnx.DEFAULT_OPSET,
      custom_op_handlers=export_onnx.CUSTOM_OP_HANDLERS)
  return model


def _scenes(tiny_module, test_image):
  """Normalized network inputs of the test image and of its mirror image."""
  return [tiny_module.preprocess(tf.constant(image))[0][tf.newaxis].numpy()
          for image in (test_image, test_image[:, ::-1].copy())]


def test_tiny_model_converts_to_the_same_outputs(exported, tiny_module,
                                                 test_image, serving):
  model_bytes = export_onnx.convert(exported, signature_key='tflite')
  model = onnx.load_from_string(model_bytes)
  op_types = {node.op_type for node in model.graph.node}
  # The light heads' GELU, through the Erfc rewrite.
  assert 'Erf' in op_types
  session = _session(model_bytes)
  signature = tf.saved_model.load(exported).signatures['tflite']
  segments = 0
  for scene in _scenes(tiny_module, test_image):
    reference = signature(inputs=tf.constant(scene))
    segments += serving.num_segments(reference)
    _assert_same_outputs(_run(session, {'inputs': scene}),
                         {k: v.numpy() for k, v in reference.items()})
  assert segments >= 2  # Not a vacuous comparison of empty maps.


def _fast_merge_function(height, width, mask_size, num_masks):
  layer = panoptic_postprocessor.PanopticPostprocessor(
      num_classes=5, num_thing_classes=3, mask_activation='hard_sigmoid',
      output_size=(height, width), merge_method='fast', fast_refine_share=0.5)
  specs = [tf.TensorSpec([1, mask_size, mask_size * width // height,
                          num_masks], tf.float32, name='logits'),
           tf.TensorSpec([1, num_masks], tf.int32, name='classes'),
           tf.TensorSpec([1, num_masks], tf.float32, name='scores')]

  @tf.function(input_signature=specs)
  def merge(logits, classes, scores):
    return layer({keys.MASK_LOGITS: logits, keys.DETECTED_CLASSES: classes,
                  keys.DETECTED_SCORES: scores})

  return merge, specs


def _blob_logits(rng, shape):
  """Mask logits of discs at random centres (positive inside): segments."""
  _, height, width, num_masks = shape
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  centres = rng.uniform(0.0, 1.0, [num_masks, 2]) * [height, width]
  radii = rng.uniform(0.15, 0.4, num_masks) * min(height, width)
  distance = np.hypot(rows[..., None] - centres[:, 0],
                      cols[..., None] - centres[:, 1])
  logits = 4.0 * (1.0 - distance / radii) + rng.normal(0.0, 0.5,
                                                       distance.shape)
  return logits[None].astype(np.float32)


def test_fast_merge_converts_to_the_same_maps():
  """The merge alone, with its segment sums: onnxruntime equals TF."""
  merge, specs = _fast_merge_function(64, 48, 16, 8)
  session = _session(_from_function(merge, specs).SerializeToString())
  rng = np.random.default_rng(4)
  segments = 0
  for _ in range(3):
    logits = _blob_logits(rng, specs[0].shape)
    classes = rng.integers(0, 5, specs[1].shape).astype(np.int32)
    scores = rng.uniform(0.0, 1.0, specs[2].shape).astype(np.float32)
    reference = {k: v.numpy() for k, v in merge(logits, classes,
                                                scores).items()}
    segments += int(np.sum(reference[keys.SEGMENT_CLASSES_OUT] >= 0))
    _assert_same_outputs(
        _run(session, {'logits': logits, 'classes': classes,
                       'scores': scores}), reference)
  assert segments >= 3


def test_erfc_rewrite_equals_tf_gelu():
  """GELU through Sub(1, Erf): equal to TF's Erfc form to float32 rounding."""
  x = np.linspace(-12.0, 12.0, 24001, dtype=np.float32)[None]
  spec = [tf.TensorSpec(x.shape, tf.float32, name='x')]
  model = _from_function(tf.function(tf.nn.gelu), spec)
  assert 'Erfc' not in {node.op_type for node in model.graph.node}
  got = _run(_session(model.SerializeToString()), {'x': x})
  got = next(iter(got.values()))
  expected = tf.nn.gelu(x).numpy()
  exact = np.array([0.5 * v * math.erfc(-v / math.sqrt(2.0))
                    for v in x[0].astype(np.float64)])[None]
  # Both within 2 float32 ulps of |x| of the float64 value (1 - erf loses
  # erfc's relative precision only where GELU is below 1e-6 in magnitude).
  bound = 2.0 * np.spacing(np.maximum(np.abs(x), 1.0)).astype(np.float64)
  assert np.all(np.abs(got - exact) <= bound)
  assert np.all(np.abs(expected - exact) <= bound)
  np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def _bad_input(capsys, argv):
  status = export_onnx.main(argv)
  error = capsys.readouterr().err.strip().splitlines()
  return status, error


def test_missing_saved_model_dir_is_named(capsys, tmp_path):
  status, error = _bad_input(capsys, [
      f'--saved_model_dir={tmp_path / "none"}',
      f'--onnx_path={tmp_path / "m.onnx"}'])
  assert status == 2
  assert len(error) == 1 and error[0].startswith('error: --saved_model_dir=')
  assert 'no SavedModel' in error[0]
  assert os.listdir(tmp_path) == []


def test_missing_output_folder_is_named(capsys, exported, tmp_path):
  status, error = _bad_input(capsys, [
      f'--saved_model_dir={exported}',
      f'--onnx_path={tmp_path / "absent" / "m.onnx"}'])
  assert status == 2
  assert len(error) == 1 and error[0].startswith('error: --onnx_path=')
  assert 'does not exist' in error[0]
  assert os.listdir(tmp_path) == []


def test_unwritable_output_folder_is_named(capsys, exported, tmp_path,
                                           monkeypatch):
  folder = tmp_path / 'read_only'
  folder.mkdir()
  folder.chmod(0o500)
  if os.geteuid() == 0:  # root writes anywhere: the folder denies the check.
    access = os.access
    monkeypatch.setattr(
        export_onnx.os, 'access',
        lambda path, mode: False if str(path) == str(folder) else access(
            path, mode))
  try:
    status, error = _bad_input(capsys, [
        f'--saved_model_dir={exported}', f'--onnx_path={folder / "m.onnx"}'])
  finally:
    folder.chmod(0o700)
  assert status == 2
  assert len(error) == 1 and error[0].startswith('error: --onnx_path=')
  assert 'not writable' in error[0]
  assert os.listdir(folder) == []


def test_missing_converter_names_the_extra(capsys, exported, tmp_path,
                                           monkeypatch):
  monkeypatch.setitem(sys.modules, 'tf2onnx', None)  # import raises
  status, error = _bad_input(capsys, [
      f'--saved_model_dir={exported}', f'--onnx_path={tmp_path / "m.onnx"}'])
  assert status == 2
  assert len(error) == 1 and error[0].startswith('error: --onnx_path')
  assert 'pip install -e .[onnx]' in error[0]
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('opset', [9, 19])
def test_unsupported_opset_is_named(capsys, exported, tmp_path, opset):
  status, error = _bad_input(capsys, [
      f'--saved_model_dir={exported}', f'--onnx_path={tmp_path / "m.onnx"}',
      f'--opset={opset}'])
  assert status == 2
  assert error == [f'error: --opset must be 13 to 18, got {opset}']
  assert os.listdir(tmp_path) == []


def test_unfixed_shapes_are_refused(capsys, exported, tmp_path):
  """serving_default of the fixture takes images of any size."""
  status, error = _bad_input(capsys, [
      f'--saved_model_dir={exported}', f'--onnx_path={tmp_path / "m.onnx"}'])
  assert status == 2
  assert len(error) == 1 and 'fixed batch and image size' in error[0]
  assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_mobile_recipe_at_256_converts_to_the_same_outputs(serving, tmp_path):
  """maskconver_mnmh_coco_256 (fast merge), random live weights."""
  params = exp_factory.get_exp_config('maskconver_mnmh_coco_256')
  tf_keras.utils.set_random_seed(0)
  module = export_module.MaskConverModule(
      params, batch_size=1, input_image_size=[256, 256], input_type='tflite')
  serving_fixtures.liven(module.model, 0)
  saved_model_dir = export_saved_model.save_module(
      module, ['tflite'], str(tmp_path / 'saved_model'))
  onnx_path = tmp_path / 'mobile.onnx'
  result = serving.run_module(_MODULE, [
      f'--saved_model_dir={saved_model_dir}', f'--onnx_path={onnx_path}'])
  assert result.returncode == 0, result.stderr
  session = _session(onnx_path.read_bytes())
  signature = tf.saved_model.load(saved_model_dir).signatures[
      'serving_default']
  rng = np.random.default_rng(0)
  segments = 0
  for _ in range(2):
    scene = rng.normal(0.0, 1.0, [1, 256, 256, 3]).astype(np.float32)
    reference = {k: v.numpy()
                 for k, v in signature(inputs=tf.constant(scene)).items()}
    segments += serving.num_segments(reference)
    _assert_same_outputs(_run(session, {'inputs': scene}), reference)
  assert segments >= 2
