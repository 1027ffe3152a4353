"""TFLite conversion: builtin ops only, agreement with the eager model."""

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.serving import export_module
from maskconver.serving import export_tflite

_MAPS = (keys.PANOPTIC_SEGMENT_MAP, keys.CATEGORY_MASK, keys.INSTANCE_MASK)


def _eager_and_input(tiny_module, test_image):
  normalized, _ = tiny_module.preprocess(tf.constant(test_image))
  normalized = normalized[tf.newaxis]
  return tiny_module.serve_normalized(normalized), normalized.numpy()


def _run(tflite_model, image, runtime):
  interpreter = export_tflite.make_interpreter(tflite_model, runtime=runtime)
  assert list(interpreter.get_signature_list()) == ['tflite']
  runner = interpreter.get_signature_runner('tflite')
  return runner(inputs=image)


def _agreement(actual, expected):
  return float(np.mean(np.asarray(actual) == np.asarray(expected)))


def _assert_builtin_only(tflite_model):
  names = export_tflite.op_names(tflite_model)
  assert names, 'no ops found'
  assert not [n for n in names if n.startswith('Flex')]
  assert export_tflite.non_builtin_ops(tflite_model) == []
  # The panoptic merge is inside the model.
  assert {'ARG_MAX', 'ONE_HOT', 'CUMSUM', 'TOPK_V2'} <= set(names)


def _assert_consistent(outputs, num_classes=7):
  """The maps of one image agree with the per-segment outputs."""
  segment_map = outputs[keys.PANOPTIC_SEGMENT_MAP][0]
  classes = outputs[keys.SEGMENT_CLASSES_OUT][0]
  for key in _MAPS:
    assert outputs[key].shape == (1, 64, 64)
    assert outputs[key].dtype == np.int32
  assert segment_map.min() >= 0 and segment_map.max() <= len(classes)
  lookup = np.concatenate([[keys.VOID_CLASS], classes])
  np.testing.assert_array_equal(outputs[keys.CATEGORY_MASK][0],
                                lookup[segment_map])
  assert np.all((classes >= keys.VOID_CLASS) & (classes < num_classes))
  things = outputs[keys.SEGMENT_IS_THING_OUT][0]
  np.testing.assert_array_equal(things, (classes >= 0) & (classes < 4))
  is_thing_pixel = np.concatenate([[False], things])[segment_map]
  np.testing.assert_array_equal(outputs[keys.INSTANCE_MASK][0] > 0,
                                is_thing_pixel)


@pytest.mark.parametrize('runtime', ['tf', 'litert'])
def test_float_tflite_agrees_with_eager(tflite_float, tiny_module, test_image,
                                        serving, runtime):
  if runtime == 'litert':
    pytest.importorskip('ai_edge_litert')
  _assert_builtin_only(tflite_float)
  eager, image = _eager_and_input(tiny_module, test_image)
  assert serving.num_segments(eager) >= 1
  outputs = _run(tflite_float, image, runtime)
  assert sorted(outputs) == sorted(export_module.OUTPUT_KEYS)
  _assert_consistent(outputs)
  for key in _MAPS:
    assert outputs[key].shape == (1, 64, 64)
    assert _agreement(outputs[key], eager[key]) >= 0.995, key
  np.testing.assert_array_equal(outputs[keys.IMAGE_INFO][0],
                                [[64, 64], [64, 64], [1, 1], [0, 0]])


def test_dynamic_range_tflite_has_int8_weights_and_runs(exported, tflite_float,
                                                        tiny_module,
                                                        test_image):
  # Quantization noise changes the random tiny model's maps a lot; their
  # agreement is measured on a trained model (scripts/evaluate_exported.py).
  dynamic = export_tflite.convert(exported, 'default', signature_key='tflite')
  _assert_builtin_only(dynamic)
  # int8 instead of float32 weights: well under half the size.
  assert len(dynamic) < 0.5 * len(tflite_float)
  _, image = _eager_and_input(tiny_module, test_image)
  _assert_consistent(_run(dynamic, image, 'auto'))


def test_conversion_errors_name_the_problem(exported):
  with pytest.raises(ValueError, match='--quant_type'):
    export_tflite.normalize_quant_type('int4')
  assert export_tflite.normalize_quant_type('none') is None
  assert export_tflite.normalize_quant_type(None) is None
  with pytest.raises(ValueError, match='--input_type=tflite'):
    export_tflite.signature_input_specs(exported, 'serving_default')
  with pytest.raises(ValueError, match="no signature 'missing'"):
    export_tflite.signature_input_specs(exported, 'missing')
  specs = export_tflite.signature_input_specs(exported, 'tflite')
  assert specs['inputs'].shape == [1, 64, 64, 3]
  with pytest.raises(ValueError, match='calibration data'):
    export_tflite.convert(exported, 'int8_full', None, signature_key='tflite')


def _op_input_types(tflite_model):
  """{op name: set of dtypes of the ops' first inputs}."""
  interpreter = tf.lite.Interpreter(model_content=tflite_model)
  tensors = {t['index']: t for t in interpreter.get_tensor_details()}
  types = {}
  for op in interpreter._get_ops_details():  # pylint: disable=protected-access
    dtype = np.dtype(tensors[op['inputs'][0]]['dtype']).name
    types.setdefault(op['op_name'], set()).add(dtype)
  return types


@pytest.mark.slow
@pytest.mark.parametrize('quant_type', ['fp16', 'int8_fallback',
                                        'int8_full_fp32_io', 'int8_full',
                                        'int8_full_int8_io'])
def test_quantized_tflite_builtin_only_and_runs(exported, tiny_params,
                                                val_records, tiny_module,
                                                test_image, quant_type):
  params = tiny_params.replace(
      task={'validation_data': {'input_path': val_records}})
  calibration = (export_tflite.calibration_dataset(params, [1, 64, 64, 3], 3)
                 if quant_type.startswith('int8') else None)
  model = export_tflite.convert(exported, quant_type, calibration,
                                signature_key='tflite')
  _assert_builtin_only(model)
  eager, image = _eager_and_input(tiny_module, test_image)
  interpreter = export_tflite.make_interpreter(model)
  runner = interpreter.get_signature_runner('tflite')
  detail = runner.get_input_details()['inputs']
  if np.dtype(detail['dtype']).kind in 'iu':
    scale, zero_point = detail['quantization']
    info = np.iinfo(detail['dtype'])
    image = np.clip(np.round(image / scale + zero_point), info.min,
                    info.max).astype(detail['dtype'])
  outputs = runner(inputs=image)
  _assert_consistent(outputs)
  if quant_type.startswith('int8'):
    op_types = _op_input_types(model)
    # All convs int8 but the heatmap output conv (export_tflite.FLOAT_SCOPES).
    assert op_types['CONV_2D'] == {'int8', 'float32'}
    # The merge stays in float (export_tflite.FLOAT_SCOPES).
    assert op_types['DIV'] == {'float32'}
    assert op_types['ARG_MAX'] == {'float32'}
    np.testing.assert_array_equal(outputs[keys.IMAGE_INFO][0],
                                  [[64, 64], [64, 64], [1, 1], [0, 0]])
  if quant_type == 'fp16':
    assert _agreement(outputs[keys.CATEGORY_MASK],
                      eager[keys.CATEGORY_MASK]) >= 0.99
