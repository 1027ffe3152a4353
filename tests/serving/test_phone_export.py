"""The deployable TFLite model: uint8 pixels in, metadata, int8 that pays."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.inference import tflite_runtime
from maskconver.serving import export_module
from maskconver.serving import export_saved_model
from maskconver.serving import tflite_conversion
from maskconver.serving import tflite_metadata
from maskconver.serving import tflite_rewrite

_MAPS = (keys.PANOPTIC_SEGMENT_MAP, keys.CATEGORY_MASK, keys.INSTANCE_MASK)


@pytest.fixture(scope='module')
def uint8_export(tiny_module, tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('uint8') / 'saved_model')
  return export_saved_model.save_module(
      tiny_module, {'tflite_uint8': 'serving_default'}, directory)


@pytest.fixture(scope='module')
def pixels(test_image):
  """The test image as the app feeds it: 64 px wide, padded to 64x64."""
  scaled = tf.image.resize(test_image, [38, 64]).numpy()
  image = np.empty((1, 64, 64, 3), np.uint8)
  image[:] = [124, 116, 104]
  image[0, :38] = np.round(scaled)
  return image


def test_uint8_signature_normalizes_inside(uint8_export, tiny_module, pixels):
  specs = tflite_conversion.signature_input_specs(uint8_export)
  assert specs['inputs'].dtype == tf.uint8
  assert specs['inputs'].shape == [1, 64, 64, 3]
  model = tflite_conversion.convert(uint8_export)
  runner = tflite_runtime.make_interpreter(model).get_signature_runner(
      'serving_default')
  assert runner.get_input_details()['inputs']['dtype'] == np.uint8
  lite = runner(inputs=pixels)
  # The same as the float path fed the normalized pixels.
  normalized = (pixels.astype(np.float32) - np.float32([123.675, 116.28,
                                                        103.53])) / np.float32(
                                                            [58.395, 57.12,
                                                             57.375])
  eager = tiny_module.serve_normalized(tf.constant(normalized))
  assert sorted(lite) == sorted(export_module.OUTPUT_KEYS)
  for key in _MAPS:
    # Float rounding of the normalization and of TFLite's kernels can move
    # a pixel on a mask boundary; 99.5% of the 4096 pixels agree.
    assert np.mean(lite[key] == eager[key].numpy()) >= 0.995, key
  assert np.sum(eager[keys.SEGMENT_CLASSES_OUT].numpy() >= 0) >= 1


def test_metadata_describes_the_model_and_round_trips(uint8_export, pixels):
  model = tflite_conversion.convert(uint8_export)
  assert tflite_metadata.read_metadata(model) is None
  labels = [{'id': i, 'name': f'shape{i}', 'isthing': i < 4,
             'category_id': 10 + i} for i in range(7)]
  described = tflite_conversion.with_metadata(model, 7, 4, labels)
  metadata = tflite_metadata.read_metadata(described)
  assert metadata['format'] == tflite_metadata.FORMAT
  assert metadata['input']['dtype'] == 'uint8'
  assert metadata['input']['shape'] == [1, 64, 64, 3]
  assert metadata['input']['normalization']['inside_model']
  assert metadata['input']['normalization']['mean'] == [123.675, 116.28,
                                                        103.53]
  assert metadata['outputs'][keys.PANOPTIC_SEGMENT_MAP]['shape'] == [1, 64,
                                                                     64]
  assert metadata['outputs'][keys.SEGMENT_CLASSES_OUT]['shape'] == [1, 6]
  assert metadata['outputs'][keys.SEGMENT_IS_THING_OUT]['dtype'] == 'bool'
  assert [l['name'] for l in metadata['labels']] == [
      f'shape{i}' for i in range(7)]
  assert (metadata['num_classes'], metadata['num_thing_classes'],
          metadata['void_class']) == (7, 4, keys.VOID_CLASS)
  # Written again, the entry is replaced, not repeated; the graph runs as
  # before.
  again = tflite_conversion.with_metadata(described, 7, 4)
  assert tflite_metadata.read_metadata(again)['labels'][0]['name'] == (
      'class_0')
  run = lambda m: tflite_runtime.make_interpreter(m).get_signature_runner(
      'serving_default')(inputs=pixels)
  for key, value in run(model).items():
    np.testing.assert_array_equal(run(again)[key], value, err_msg=key)


@pytest.mark.slow
def test_int8_full_takes_raw_pixels_and_keeps_the_merge_float(
    uint8_export, tiny_params, val_records, pixels):
  params = tiny_params.replace(
      task={'validation_data': {'input_path': val_records}})
  calibration = tflite_conversion.calibration_dataset(
      params, [1, 64, 64, 3], 3, tf.uint8)
  first = next(iter(calibration()))[0]
  assert first.dtype == np.uint8 and first.shape == (1, 64, 64, 3)
  model = tflite_conversion.convert(uint8_export, 'int8_full', calibration)
  interpreter = tflite_runtime.make_interpreter(model)
  runner = interpreter.get_signature_runner('serving_default')
  detail = runner.get_input_details()['inputs']
  # Raw pixels: uint8 without quantization parameters.
  assert detail['dtype'] == np.uint8 and detail['quantization'] == (0.0, 0)
  outputs = runner(inputs=pixels)
  for key in _MAPS:
    assert outputs[key].dtype == np.int32 and outputs[key].shape == (1, 64,
                                                                     64)
  tensors = {t['index']: t for t in interpreter.get_tensor_details()}
  types = {}
  for op in interpreter._get_ops_details():  # pylint: disable=protected-access
    types.setdefault(op['op_name'], []).append(
        np.dtype(tensors[op['inputs'][0]]['dtype']).name)
  # Every conv is int8 but the heatmap head's output conv (kept float with
  # the selector, tflite_conversion.FLOAT_SCOPES).
  assert types['CONV_2D'].count('float32') == 1
  assert types['CONV_2D'].count('int8') == len(types['CONV_2D']) - 1 >= 5
  assert set(types['ARG_MAX']) == {'float32'}   # the merge stays float
  assert set(types['TOPK_V2']) == {'float32'}   # tflite_rewrite.float_top_k


@pytest.mark.slow
def test_export_tflite_cli_writes_labels(uint8_export, val_records, serving,
                                         tmp_path):
  label_map = os.path.join(os.path.dirname(val_records), 'val_label_map.json')
  path = str(tmp_path / 'model.tflite')
  result = serving.run_module('maskconver.serving.export_tflite', [
      f'--saved_model_dir={uint8_export}', f'--tflite_path={path}',
      f'--experiment={serving.experiment}',
      f'--params_override={serving.override_flag}',
      f'--label_map={label_map}'])
  assert result.returncode == 0, result.stderr
  assert 'with metadata' in result.stdout
  with open(path, 'rb') as f:
    metadata = tflite_metadata.read_metadata(f.read())
  with open(label_map, encoding='utf-8') as f:
    names = [c['name'] for c in json.load(f)['classes']]
  assert [l['name'] for l in metadata['labels']] == names
  assert [l['isthing'] for l in metadata['labels']] == [True] * 4 + [False] * 3


def _runtime_weight_matmuls(ops):
  """The FULLY_CONNECTED / BATCH_MATMUL ops whose second input is computed."""
  produced = {index for op in ops for index in op['outputs']}
  return [op for op in ops
          if op['op_name'] in ('FULLY_CONNECTED', 'BATCH_MATMUL') and
          op['inputs'][1] in produced]


@pytest.fixture(scope='module')
def fast_merge_exports(tiny_module, tiny_params, val_records,
                       tmp_path_factory):
  """{merge method: (params, uint8 SavedModel)}, same weights."""
  exports = {}
  for method in ('exact', 'fast'):
    params = tiny_params.replace(task={
        'model': {'postprocessor': {'merge_method': method}},
        'validation_data': {'input_path': val_records}})
    module = tiny_module
    if method == 'fast':
      module = export_module.MaskConverModule(params, batch_size=1,
                                              input_image_size=[64, 64])
      module.model.set_weights(tiny_module.model.get_weights())
    directory = export_saved_model.save_module(
        module, {'tflite_uint8': 'serving_default'},
        str(tmp_path_factory.mktemp(method) / 'saved_model'))
    assert tflite_conversion.signature_keys(directory) == [
        'serving_default', 'serving_default_int8']
    exports[method] = (params, directory)
  return exports


def test_fast_merge_tflite_computes_the_mask_einsum_once(fast_merge_exports,
                                                         pixels):
  # The merge reads the mask logits flattened; a reshape of the einsum's
  # output must not make the converter emit the einsum a second time.
  outputs = {}
  for method, (_, directory) in fast_merge_exports.items():
    model = tflite_conversion.convert(directory)
    interpreter = tflite_runtime.make_interpreter(model)
    ops = [op['op_name'] for op in interpreter._get_ops_details()]  # pylint: disable=protected-access
    assert ops.count('BATCH_MATMUL') == 1, (method, ops.count('BATCH_MATMUL'))
    outputs[method] = interpreter.get_signature_runner('serving_default')(
        inputs=pixels)
  assert np.sum(outputs['exact'][keys.SEGMENT_CLASSES_OUT] >= 0) >= 1
  for key in _MAPS:
    assert np.mean(outputs['fast'][key] == outputs['exact'][key]) >= 0.99


def test_int8_full_runs_the_fast_merge_in_float(fast_merge_exports, pixels):
  """The mobile recipes' merge survives int8 conversion.

  The quantizer quantizes the fast merge's TOPK_V2 (the best and runner-up
  ranks of each mask pixel) although its scope is denylisted;
  tflite_rewrite.float_top_k turns it, and the reshape of its values, back to
  float. Before that, the interpreter refused the model (a STRIDED_SLICE
  from float32 to int8). Same weights and calibration, so the int8 network
  is the same with either merge, and the fast merge's maps agree with the
  exact merge's (>= 99% of the pixels; measured: all of them).
  """
  maps = {}
  for method, (params, directory) in fast_merge_exports.items():
    calibration = tflite_conversion.calibration_dataset(
        params, [1, 64, 64, 3], 3, tf.uint8)
    model = tflite_conversion.convert(directory, 'int8_full', calibration)
    interpreter = tflite_runtime.make_interpreter(model)
    maps[method] = interpreter.get_signature_runner('serving_default')(
        inputs=pixels)
    tensors = {t['index']: t for t in interpreter.get_tensor_details()}
    # The int8 twin's mask einsum (export_module.INT8_TWIN_SUFFIX), once:
    # the only FULLY_CONNECTED whose weights come from another op, in int8;
    # no BATCH_MATMUL.
    ops = interpreter._get_ops_details()  # pylint: disable=protected-access
    assert 'BATCH_MATMUL' not in [op['op_name'] for op in ops], method
    einsum = _runtime_weight_matmuls(ops)
    assert len(einsum) == 1, method
    assert [np.dtype(tensors[i]['dtype']).name
            for i in einsum[0]['inputs'] if i >= 0] == ['int8', 'int8'], method
    merge_outputs = [
        tensors[op['outputs'][0]]
        for op in interpreter._get_ops_details()  # pylint: disable=protected-access
        if tensors[op['outputs'][0]]['name'].startswith(
            'panoptic_postprocessor')]
    assert len(merge_outputs) >= 20, method
    quantized_in_merge = [t['name'] for t in merge_outputs
                          if np.dtype(t['dtype']) in (np.int8, np.uint8)]
    assert not quantized_in_merge, (method, quantized_in_merge)
  assert np.sum(maps['exact'][keys.SEGMENT_CLASSES_OUT] >= 0) >= 1
  for key in _MAPS:
    assert maps['fast'][key].shape == (1, 64, 64), key
    assert np.mean(maps['fast'][key] == maps['exact'][key]) >= 0.99, key


def test_int8_without_the_twin_keeps_the_einsum_float(fast_merge_exports):
  params, directory = fast_merge_exports['exact']
  calibration = tflite_conversion.calibration_dataset(
      params, [1, 64, 64, 3], 3, tf.uint8)
  model = tflite_conversion.convert(directory, 'int8_full', calibration,
                                    int8_twin=False)
  interpreter = tflite_runtime.make_interpreter(model)
  tensors = {t['index']: t for t in interpreter.get_tensor_details()}
  einsum = _runtime_weight_matmuls(interpreter._get_ops_details())  # pylint: disable=protected-access
  assert [op['op_name'] for op in einsum] == ['BATCH_MATMUL']
  assert {np.dtype(tensors[i]['dtype']).name
          for i in einsum[0]['inputs']} == {'float32'}
