"""TFLite conversion: builtin ops only, agreement with the eager model."""

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.inference import tflite_runtime
from maskconver.serving import export_module
from maskconver.serving import export_saved_model
from maskconver.serving import tflite_conversion
from maskconver.serving import tflite_rewrite

_MAPS = (keys.PANOPTIC_SEGMENT_MAP, keys.CATEGORY_MASK, keys.INSTANCE_MASK)


def _eager_and_input(tiny_module, test_image):
  normalized, _ = tiny_module.preprocess(tf.constant(test_image))
  normalized = normalized[tf.newaxis]
  return tiny_module.serve_normalized(normalized), normalized.numpy()


def _run(tflite_model, image, runtime):
  interpreter = tflite_runtime.make_interpreter(tflite_model, runtime=runtime)
  assert list(interpreter.get_signature_list()) == ['tflite']
  runner = interpreter.get_signature_runner('tflite')
  return runner(inputs=image)


def _agreement(actual, expected):
  return float(np.mean(np.asarray(actual) == np.asarray(expected)))


def _assert_builtin_only(tflite_model):
  names = tflite_rewrite.op_names(tflite_model)
  assert names, 'no ops found'
  assert not [n for n in names if n.startswith('Flex')]
  assert tflite_rewrite.non_builtin_ops(tflite_model) == []
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
  # agreement is measured on a trained model (benchmarks.evaluate_exported).
  dynamic = tflite_conversion.convert(exported, 'default',
                                     signature_key='tflite')
  _assert_builtin_only(dynamic)
  # int8 instead of float32 weights: well under half the size.
  assert len(dynamic) < 0.5 * len(tflite_float)
  _, image = _eager_and_input(tiny_module, test_image)
  _assert_consistent(_run(dynamic, image, 'auto'))


def test_conversion_errors_name_the_problem(exported):
  with pytest.raises(ValueError, match='--quant_type'):
    tflite_conversion.normalize_quant_type('int4')
  assert tflite_conversion.normalize_quant_type('none') is None
  assert tflite_conversion.normalize_quant_type(None) is None
  with pytest.raises(ValueError, match='--input_type=tflite'):
    tflite_conversion.signature_input_specs(exported, 'serving_default')
  with pytest.raises(ValueError, match="no signature 'missing'"):
    tflite_conversion.signature_input_specs(exported, 'missing')
  specs = tflite_conversion.signature_input_specs(exported, 'tflite')
  assert specs['inputs'].shape == [1, 64, 64, 3]
  with pytest.raises(ValueError, match='calibration data'):
    tflite_conversion.convert(exported, 'int8_full', None,
                              signature_key='tflite')


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
  calibration = (
      tflite_conversion.calibration_dataset(params, [1, 64, 64, 3], 3)
      if quant_type.startswith('int8') else None)
  model = tflite_conversion.convert(exported, quant_type, calibration,
                                    signature_key='tflite')
  _assert_builtin_only(model)
  eager, image = _eager_and_input(tiny_module, test_image)
  interpreter = tflite_runtime.make_interpreter(model)
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
    # All convs int8 but the heatmap output conv
    # (tflite_conversion.FLOAT_SCOPES).
    assert op_types['CONV_2D'] == {'int8', 'float32'}
    # The merge stays in float (tflite_conversion.FLOAT_SCOPES).
    assert op_types['DIV'] == {'float32'}
    assert op_types['ARG_MAX'] == {'float32'}
    np.testing.assert_array_equal(outputs[keys.IMAGE_INFO][0],
                                  [[64, 64], [64, 64], [1, 1], [0, 0]])
  if quant_type == 'fp16':
    assert _agreement(outputs[keys.CATEGORY_MASK],
                      eager[keys.CATEGORY_MASK]) >= 0.99


def _quantized_top_k_model(int8_add_reader: bool) -> bytes:
  """x (float32 [6]) -> QUANTIZE -> TOPK_V2 (k=3) -> values[0:2] -> DEQUANTIZE.

  As the int8 quantizer leaves a top-K whose producers are denylisted:
  outputs the two best values (float32) and the indices; with
  `int8_add_reader`, an int8 ADD reads the values too (and is an output).
  """
  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated as schema
  from ai_edge_litert.tools import flatbuffer_utils
  ops = schema.BuiltinOperator
  types = schema.TensorType
  codes = [ops.QUANTIZE, ops.TOPK_V2, ops.STRIDED_SLICE, ops.DEQUANTIZE,
           ops.ADD]
  model = schema.ModelT()
  model.version = 3
  model.operatorCodes = []
  for code in codes:
    operator_code = schema.OperatorCodeT()
    operator_code.builtinCode = code
    operator_code.deprecatedBuiltinCode = min(code, 127)
    operator_code.version = 1
    model.operatorCodes.append(operator_code)
  model.buffers = [schema.BufferT()]

  def constant(value):
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.asarray(value, np.int32).tobytes(),
                                np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1

  def quantization(scale):
    params = schema.QuantizationParametersT()
    params.scale, params.zeroPoint = [scale], [0]
    return params

  specs = [('x', [6], types.FLOAT32, 0, None),
           ('xq', [6], types.INT8, 0, quantization(0.05)),
           ('k', [], types.INT32, constant(3), None),
           ('values', [3], types.INT8, 0, quantization(0.05)),
           ('indices', [3], types.INT32, 0, None),
           ('begin', [1], types.INT32, constant([0]), None),
           ('end', [1], types.INT32, constant([2]), None),
           ('strides', [1], types.INT32, constant([1]), None),
           ('sliced', [2], types.INT8, 0, quantization(0.05)),
           ('best', [2], types.FLOAT32, 0, None),
           ('sum', [3], types.INT8, 0, quantization(0.1))]
  graph = schema.SubGraphT()
  graph.tensors = []
  for name, shape, tensor_type, buffer, params in specs:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type = name, shape, tensor_type
    tensor.buffer, tensor.quantization = buffer, params
    graph.tensors.append(tensor)
  index = {spec[0]: i for i, spec in enumerate(specs)}

  def operator(code, inputs, outputs, options_type=0, options=None):
    op = schema.OperatorT()
    op.opcodeIndex = codes.index(code)
    op.inputs = [index[name] for name in inputs]
    op.outputs = [index[name] for name in outputs]
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op

  graph.operators = [
      operator(ops.QUANTIZE, ['x'], ['xq']),
      operator(ops.TOPK_V2, ['xq', 'k'], ['values', 'indices']),
      operator(ops.STRIDED_SLICE, ['values', 'begin', 'end', 'strides'],
               ['sliced'], schema.BuiltinOptions.StridedSliceOptions,
               schema.StridedSliceOptionsT()),
      operator(ops.DEQUANTIZE, ['sliced'], ['best'])]
  graph.inputs = [index['x']]
  graph.outputs = [index['best'], index['indices']]
  if int8_add_reader:
    graph.operators.append(operator(
        ops.ADD, ['values', 'values'], ['sum'],
        schema.BuiltinOptions.AddOptions, schema.AddOptionsT()))
    graph.outputs.append(index['sum'])
  model.subgraphs = [graph]
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_float_top_k_keeps_the_values_and_their_slices_float():
  x = np.array([0.3, -1.0, 2.0, 0.71, 0.72, 1.5], np.float32)

  def run(model):
    interpreter = tflite_runtime.make_interpreter(model)
    interpreter.set_tensor(interpreter.get_input_details()[0]['index'], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d['index'])
            for d in interpreter.get_output_details()]

  model = _quantized_top_k_model(int8_add_reader=False)
  best, indices = run(model)
  # In int8 (scale 0.05) 0.71 and 0.72 are both 14: the tie goes to 0.71.
  np.testing.assert_array_equal(indices, [2, 5, 3])
  fixed = tflite_rewrite.float_top_k(model)
  assert sorted(tflite_rewrite.op_names(fixed)) == ['STRIDED_SLICE', 'TOPK_V2']
  best, indices = run(fixed)
  np.testing.assert_array_equal(indices, [2, 5, 4])
  np.testing.assert_array_equal(best, np.float32([2.0, 1.5]))
  # An op that computes on the int8 values cannot be handed float32.
  with pytest.raises(ValueError, match="'values' are read in int8"):
    tflite_rewrite.float_top_k(_quantized_top_k_model(int8_add_reader=True))


def _float16_rounded_filters(tflite_model):
  """The float32 model with its fp16 filters' values, still in float32.

  The filters `tflite_rewrite.float16_filters` converts, rounded to float16:
  the fp16 model's exact counterpart.
  """
  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated as schema
  from ai_edge_litert.tools import flatbuffer_utils
  ops = schema.BuiltinOperator
  filter_ops = (ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED,
                ops.TRANSPOSE_CONV)
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_model))
  codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c)
           for c in model.operatorCodes]
  for graph in model.subgraphs:
    for op in graph.operators:
      if codes[op.opcodeIndex] not in filter_ops:
        continue
      tensor = graph.tensors[op.inputs[1]]
      buffer = model.buffers[tensor.buffer]
      if tensor.type == schema.TensorType.FLOAT32 and buffer.data is not None:
        values = np.frombuffer(bytes(buffer.data), np.float32)
        buffer.data = np.frombuffer(
            values.astype(np.float16).astype(np.float32).tobytes(), np.uint8)
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_fp16_tflite_keeps_the_merge_exact_beyond_2048_cells(
    tiny_module, test_image, serving, tmp_path):
  # A 384 x 384 input gives 48 x 48 masks, (48 + 1)**2 = 2401 fast merge
  # cells, all of them refined: the cell selection orders indices above
  # 2048, which float16 does not represent exactly.
  size = 384
  params = serving.make_params({'task': {'model': {'postprocessor': {
      'merge_method': 'fast', 'fast_refine_share': 1.0}}}})
  module = export_module.MaskConverModule(
      params, batch_size=1, input_image_size=[size, size])
  module.model.set_weights(tiny_module.model.get_weights())
  saved_model = export_saved_model.save_module(
      module, {'tflite': 'tflite'}, str(tmp_path / 'saved_model'))
  float32 = tflite_conversion.convert(saved_model, None,
                                      signature_key='tflite')
  fp16 = tflite_conversion.convert(saved_model, 'fp16',
                                   signature_key='tflite')
  assert tflite_rewrite.non_builtin_ops(fp16) == []
  interpreter = tflite_runtime.interpreter_class()(model_content=fp16)
  assert 'float16' in {np.dtype(t['dtype']).name
                       for t in interpreter.get_tensor_details()}
  normalized, _ = module.preprocess(tf.constant(test_image))
  image = normalized[tf.newaxis].numpy()
  expected = _run(_float16_rounded_filters(float32), image, 'auto')
  assert serving.num_segments(expected) >= 1
  outputs = _run(fp16, image, 'auto')
  assert sorted(outputs) == sorted(expected)
  for key, value in expected.items():
    np.testing.assert_array_equal(outputs[key], value, err_msg=key)
  # And the float32 model itself, up to the filters' rounding.
  reference = _run(float32, image, 'auto')
  assert _agreement(outputs[keys.PANOPTIC_SEGMENT_MAP],
                    reference[keys.PANOPTIC_SEGMENT_MAP]) >= 0.99
