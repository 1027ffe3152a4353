r"""Converts a MaskConver SavedModel signature to TFLite, with quantization.

`convert` turns one signature of an `export_module` SavedModel (a fixed-size
`tflite` or `tflite_uint8` input at batch size 1, the panoptic
post-processing inside) into a TFLite model of builtin ops only (no Flex /
select TF ops: the conversion fails if any is needed), whose signature keeps
the SavedModel's name, input and output names. `with_metadata` adds the
model's description (`tflite_metadata`).

The quantization types (`QUANT_TYPES`) are Model Garden's:

| quant_type          | weights | network activations | input |
| ------------------- | ------- | ------------------- | ----- |
| none (default)      | float32 | float32             | float32 |
| fp16                | float16 (filters) | float32   | float32 |
| default             | int8 (depthwise: float32) | float32 (dynamic range) | float32 |
| int8_fallback       | int8    | int8, float where no int8 kernel | float32 |
| int8_full_fp32_io   | int8    | int8 (TFLITE_BUILTINS_INT8)      | float32 |
| int8_full           | int8    | int8                | uint8 (quantized; raw pixels for tflite_uint8) |
| int8_full_int8_io   | int8    | int8                | int8 (quantized) |

In every int8 type the panoptic merge (the ops under the
`panoptic_postprocessor/` name scope), the top-K center selection (its
peaks and TOPK_V2: it masks suppressed cells with the lowest float32, which
as an int8 scale either aborts the interpreter or, on TOPK_V2's input, maps
every logit to one value; `tflite_rewrite.float_top_k`) and the uint8
input's normalization stay in float32, and so does the heatmap head's output
conv (whose int8 scale the converter would otherwise share with the
selector's padding). The mask einsum is int8 when the SavedModel has an int8
twin of the signature (`<signature>_int8`, which `export_module` writes for
its batch-1 TFLite signatures; these types convert it instead of the
signature itself, unless `int8_twin=False`): there it is a FULLY_CONNECTED
with runtime weights, which XNNPACK and TFLite's own kernels run in int8.
Without a twin the einsum stays a float BATCH_MATMUL, which runs faster in
float32 than in int8 with either kernel set. In 8 bits the merge would count
mask areas with a step of dozens of pixels, and the int8 DIV kernel aborts
on an empty mask. Its outputs keep their types (int32 maps and classes, bool
flags, float32 scores and image_info) in every variant.

In `fp16` only the filters of the convolutions and fully connected layers
are float16 (`tflite_rewrite.float16_filters`, on the float32 model): the
converter's float16 type would store every float constant in float16, and
the fast merge's cell indices (up to (h + 1) * (w + 1) - 1, 25920 at
640 x 640) and the selector's fill and score threshold are float constants
that float16 does not hold exactly (integers only up to 2048). The merge,
the selection and their outputs are those of the float32 model.

In `default` the depthwise convolutions keep float32 filters
(`float_depthwise_filters`): XNNPACK runs a convolution with int8 weights
and float activations by quantizing its input on the fly, but has no such
depthwise kernel, so an int8-weight DEPTHWISE_CONV_2D runs in TFLite's own
hybrid kernel, several times slower than in float32. Their filters are a
small share of the weights (k x k x channels each).

The int8 types calibrate on a representative dataset: `calibration_dataset`
(validation images of the experiment, parsed like evaluation: resized and
padded to task.model.input_size, which must be the SavedModel's input size;
normalized for a float input, raw uint8 pixels for a tflite_uint8 one) or
`random_calibration_dataset` (random images, for latency work). For a
tflite_uint8 signature `int8_full` keeps the raw uint8 pixels as input (no
quantization parameters to apply) and its outputs keep their types.
"""

import os
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional,
                    Sequence)

from absl import logging
from ai_edge_litert import schema_py_generated as tflite_schema
from ai_edge_litert.tools import flatbuffer_utils
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2
# No public API changes the input type of a model quantized with a denylist.
from tensorflow.lite.python import util as lite_util

from official.core import config_definitions as cfg

from maskconver.data import label_map as label_map_lib
from maskconver.inference import tflite_runtime
from maskconver.ops import image_ops
from maskconver.serving import export_module
from maskconver.serving import tflite_metadata
from maskconver.serving import tflite_rewrite
from maskconver.tasks import maskconver_task

QUANT_TYPES = ('none', 'fp16', 'default', 'int8_fallback', 'int8_full_fp32_io',
               'int8_full', 'int8_full_int8_io')
RepresentativeDataset = Callable[[], Iterator[Any]]
# Name scopes of the ops that the int8 types leave in float (see
# float_node_names).
FLOAT_SCOPES = ('panoptic_postprocessor/', 'image_info/',
                export_module.INPUT_NORMALIZATION_SCOPE + '/',
                'maskconver/center_selector/',
                'maskconver/center_heatmap_head/output')
# The mask einsum stays float too, unless it is the int8 twin's fully
# connected form (module doc).
EINSUM_SCOPE = 'maskconver/mask_projection/'
_DEPTHWISE_CONV_2D = tflite_schema.BuiltinOperator.DEPTHWISE_CONV_2D
_FLOAT32 = tflite_schema.TensorType.FLOAT32
_INT8 = tflite_schema.TensorType.INT8


def normalize_quant_type(quant_type: Optional[str]) -> Optional[str]:
  """Returns None for float32, else the validated quantization type."""
  if quant_type is None or quant_type.lower() in ('', 'none', 'float32'):
    return None
  if quant_type not in QUANT_TYPES:
    raise ValueError(f'--quant_type must be one of {QUANT_TYPES}, got '
                     f'{quant_type!r}')
  return quant_type


def _signature_defs(saved_model_dir: str
                    ) -> Mapping[str, meta_graph_pb2.SignatureDef]:
  """The signature defs of saved_model.pb, read without loading the model."""
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(saved_model_dir, 'saved_model.pb'),
                         'rb') as f:
    saved_model.ParseFromString(f.read())
  return saved_model.meta_graphs[0].signature_def


def signature_keys(saved_model_dir: str) -> List[str]:
  """The signature names of a SavedModel, sorted (not its init op)."""
  return sorted(key for key in _signature_defs(saved_model_dir)
                if not key.startswith('__'))


def signature_inputs(saved_model_dir: str,
                     signature_key: str = 'serving_default'
                     ) -> Dict[str, tf.TensorSpec]:
  """{input name: spec} of a signature, read from saved_model.pb.

  Raises:
    ValueError: the SavedModel has no such signature.
  """
  signatures = _signature_defs(saved_model_dir)
  if signature_key not in signatures:
    raise ValueError(
        f'--saved_model_dir={saved_model_dir} has no signature '
        f'{signature_key!r} (it has {sorted(signatures)}); see '
        '--signature_key')
  return {name: tf.TensorSpec(tf.TensorShape(info.tensor_shape),
                              tf.dtypes.as_dtype(info.dtype), name=name)
          for name, info in signatures[signature_key].inputs.items()}


def signature_input_specs(saved_model_dir: str,
                          signature_key: str = 'serving_default'
                          ) -> Dict[str, tf.TensorSpec]:
  """The inputs of a signature, checked to have the fixed shapes TFLite needs.

  Reads the signature from saved_model.pb without loading the model.

  Args:
    saved_model_dir: the SavedModel.
    signature_key: the signature.

  Returns:
    {input name: spec}.

  Raises:
    ValueError: no such signature, or an input of unknown size (e.g. an
      image_tensor export).
  """
  specs = signature_inputs(saved_model_dir, signature_key)
  for name, spec in specs.items():
    if not spec.shape.is_fully_defined() or spec.dtype == tf.string:
      raise ValueError(
          f'--saved_model_dir={saved_model_dir}: signature {signature_key!r} '
          f'input {name!r} is {spec.dtype.name} {spec.shape}; TFLite needs '
          'fixed-size tensors: export with --input_type=tflite '
          '--batch_size=1')
  return specs


def calibration_dataset(params: cfg.ExperimentConfig,
                        input_shape: Sequence[int],
                        num_steps: int,
                        input_dtype: tf.dtypes.DType = tf.float32
                        ) -> RepresentativeDataset:
  """Representative dataset of validation images.

  Args:
    params: experiment config; task.validation_data is read.
    input_shape: [1, height, width, 3] input of the model to calibrate.
    num_steps: number of images.
    input_dtype: float32 (normalized images, the `tflite` input) or uint8
      (pixels, the `tflite_uint8` input, as the input pipeline sends them).

  Returns:
    A function yielding [float32 or uint8 [1, height, width, 3]] lists.

  Raises:
    ValueError: no validation input, or images of another size.
  """
  if not params.task.validation_data.input_path:
    raise ValueError('int8 quantization calibrates on '
                     'task.validation_data.input_path, which is empty: set '
                     'it with --params_override or --config_file')
  model_size = list(params.task.model.input_size[:2])
  if model_size != list(input_shape[1:3]):
    raise ValueError(
        f'task.model.input_size {model_size} differs from the SavedModel '
        f'input {list(input_shape[1:3])}: calibration images would have the '
        'wrong size; set task.model.input_size to the export size')
  task_config = params.task.replace(validation_data={
      'global_batch_size': 1, 'drop_remainder': False, 'dtype': 'float32'})

  def images() -> Iterator[List[np.ndarray]]:
    task = maskconver_task.MaskConverTask(task_config)
    dataset = task.build_inputs(task_config.validation_data)
    for image, labels in dataset.take(num_steps):
      # The input pipeline sends uint8 pixels (or padded sources, resized
      # here as the steps do); the float input is normalized.
      image = task.input_images(image, labels)
      if input_dtype != tf.uint8:
        image = image_ops.normalize_images(image)
      yield [image.numpy()]

  return images


def random_calibration_dataset(input_shape: Sequence[int], num_steps: int,
                               seed: int = 0,
                               input_dtype: tf.dtypes.DType = tf.float32
                               ) -> RepresentativeDataset:
  """Representative dataset of random images (latency work only).

  Args:
    input_shape: [1, height, width, 3].
    num_steps: number of images.
    seed: random seed.
    input_dtype: float32 (standard normal values) or uint8 (uniform pixels).

  Returns:
    A function yielding [input_dtype input_shape] lists.
  """
  def images() -> Iterator[List[np.ndarray]]:
    rng = np.random.default_rng(seed)
    for _ in range(num_steps):
      if input_dtype == tf.uint8:
        yield [rng.integers(0, 256, list(input_shape)).astype(np.uint8)]
      else:
        yield [rng.standard_normal(list(input_shape)).astype(np.float32)]

  return images


def _converter(saved_model_dir: str, signature_key: str
               ) -> tf.lite.TFLiteConverter:
  converter = tf.lite.TFLiteConverter.from_saved_model(
      saved_model_dir, signature_keys=[signature_key])
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  return converter


def float_node_names(float_model: bytes) -> List[str]:
  """Tensors that the int8 types keep in float, in a float TFLite model.

  Those under FLOAT_SCOPES (module doc): quantized, the merge counts mask
  areas in 8 bits and the int8 DIV kernel aborts on an empty mask; the
  selector's lowest-float fill of suppressed cells gives an int8 scale the
  interpreter refuses. And the mask einsum's when it is a BATCH_MATMUL
  (no int8 twin), which runs slower in int8 than in float32.
  """
  interpreter = tflite_runtime.interpreter_class()(model_content=float_model)
  tensors = interpreter.get_tensor_details()
  scopes = FLOAT_SCOPES
  if any(op['op_name'] == 'BATCH_MATMUL' and
         tensors[op['outputs'][0]]['name'].startswith(EINSUM_SCOPE)
         for op in interpreter._get_ops_details()):  # pylint: disable=protected-access
    scopes += (EINSUM_SCOPE,)
  return [t['name'] for t in tensors if t['name'].startswith(scopes)]


def convert(saved_model_dir: str,
            quant_type: Optional[str] = None,
            representative_dataset: Optional[RepresentativeDataset] = None,
            signature_key: str = 'serving_default',
            int8_twin: bool = True) -> bytes:
  """Converts one signature of a SavedModel to a TFLite flatbuffer.

  Args:
    saved_model_dir: the SavedModel.
    quant_type: None or one of QUANT_TYPES (module doc).
    representative_dataset: calibration data, required by the int8 types.
    signature_key: the signature to convert; for the int8 types, its int8
      twin when the SavedModel has one and int8_twin (module doc), and the
      TFLite signature is named signature_key either way.
    int8_twin: whether the int8 types convert the twin.

  Returns:
    The TFLite model, with builtin ops only.

  Raises:
    ValueError: bad quant_type, missing calibration data, or the model
      needs ops that are not TFLite builtins.
  """
  quant_type = normalize_quant_type(quant_type)
  is_int8 = quant_type is not None and quant_type.startswith('int8')
  suffix = export_module.INT8_TWIN_SUFFIX
  twin = signature_key + suffix
  names = (signature_keys(saved_model_dir)
           if (is_int8 and int8_twin) or signature_key.endswith(suffix)
           else ())
  if is_int8 and int8_twin and twin in names:
    logging.info('%s: converting signature %r, the int8 twin of %r (mask '
                 'einsum as an int8 FULLY_CONNECTED)', quant_type, twin,
                 signature_key)
    return tflite_rewrite.rename_signature(
        convert(saved_model_dir, quant_type, representative_dataset, twin,
                int8_twin=False), signature_key)
  if (not is_int8 and signature_key.endswith(suffix) and
      signature_key[:-len(suffix)] in names):
    logging.warning(
        'converting %r, the int8 twin of %r, to %s: its fully connected mask '
        'einsum runs slower in float than the einsum of %r', signature_key,
        signature_key[:-len(suffix)], quant_type or 'float32',
        signature_key[:-len(suffix)])
  converter = _converter(saved_model_dir, signature_key)
  if quant_type is None:
    tflite_model = converter.convert()
  elif quant_type == 'fp16':
    tflite_model = tflite_rewrite.float16_filters(converter.convert())
  elif quant_type == 'default':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    tflite_model = float_depthwise_filters(converter.convert())
  else:
    tflite_model = _convert_int8(saved_model_dir, signature_key, converter,
                                 quant_type, representative_dataset)
  non_builtin = tflite_rewrite.non_builtin_ops(tflite_model)
  if non_builtin:
    raise ValueError(f'the TFLite model needs non-builtin ops {non_builtin}')
  return tflite_model


def float_depthwise_filters(tflite_model: bytes) -> bytes:
  """Gives every hybrid DEPTHWISE_CONV_2D its filter back in float32.

  A hybrid depthwise conv (float32 input, int8 filter: dynamic range
  quantization) runs in TFLite's own kernel, which XNNPACK does not replace
  (module doc). Its filter becomes the float32 values the int8 ones stand
  for, (q - zero_point) * scale per channel, so the op runs in float32 with
  the weights it computed with.

  Args:
    tflite_model: a TFLite model.

  Returns:
    The model with float32 depthwise filters (unchanged if it has no hybrid
    depthwise conv).
  """
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_model))
  codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c)
           for c in model.operatorCodes]
  readers = {}
  for graph in model.subgraphs:
    for tensor in graph.tensors:
      readers[tensor.buffer] = readers.get(tensor.buffer, 0) + 1
  changed = False
  for graph in model.subgraphs:
    for op in graph.operators:
      if codes[op.opcodeIndex] != _DEPTHWISE_CONV_2D:
        continue
      inputs, weights = (graph.tensors[i] for i in op.inputs[:2])
      if inputs.type != _FLOAT32 or weights.type != _INT8:
        continue
      quantization = weights.quantization
      values = np.frombuffer(bytes(model.buffers[weights.buffer].data),
                             np.int8).reshape(weights.shape)
      channel_shape = [1] * values.ndim
      channel_shape[quantization.quantizedDimension] = -1
      scale = np.asarray(quantization.scale, np.float32).reshape(channel_shape)
      zero_point = np.asarray(quantization.zeroPoint,
                              np.float32).reshape(channel_shape)
      filters = ((values.astype(np.float32) - zero_point) * scale).astype(
          np.float32)
      data = np.frombuffer(filters.tobytes(), np.uint8)
      if readers[weights.buffer] == 1:
        model.buffers[weights.buffer].data = data
      else:
        # Another tensor reads the int8 buffer: the float32 one is new.
        buffer = tflite_schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        weights.buffer = len(model.buffers) - 1
      weights.type = _FLOAT32
      weights.quantization = None
      changed = True
  if not changed:
    return tflite_model
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _convert_int8(saved_model_dir: str, signature_key: str,
                  converter: tf.lite.TFLiteConverter, quant_type: str,
                  representative_dataset: Optional[RepresentativeDataset]
                  ) -> bytes:
  """Integer quantization of the network; the panoptic merge stays float."""
  if representative_dataset is None:
    raise ValueError(f'--quant_type={quant_type} needs calibration data: '
                     'pass --experiment with task.validation_data')
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = representative_dataset
  if quant_type.startswith('int8_full'):
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  io_type = {'int8_full': tf.uint8, 'int8_full_int8_io': tf.int8}.get(
      quant_type)
  input_dtypes = {spec.dtype for spec in signature_input_specs(
      saved_model_dir, signature_key).values()}
  if input_dtypes != {tf.float32}:
    # Integer inputs (the tflite_uint8 pixels) stay as they are.
    io_type = None
  float_nodes = float_node_names(
      _converter(saved_model_dir, signature_key).convert())
  if not float_nodes:
    if io_type is not None:
      converter.inference_input_type = io_type
      converter.inference_output_type = io_type
    return converter.convert()
  debugger = tf.lite.experimental.QuantizationDebugger(
      converter=converter, debug_dataset=representative_dataset,
      debug_options=tf.lite.experimental.QuantizationDebugOptions(
          denylisted_nodes=float_nodes))
  tflite_model = tflite_rewrite.float_top_k(
      debugger.get_nondebug_quantized_model())
  if io_type is not None:
    # The denylisting path ignores inference_input_type; the outputs of the
    # float merge stay float32.
    tflite_model = lite_util.modify_model_io_type(tflite_model, io_type,
                                                  tf.float32)
  return tflite_model


def write_atomic(path: str, content: bytes) -> None:
  """Writes a file (a model) so that a reader never sees it half-written."""
  directory = os.path.dirname(os.path.abspath(path))
  tf.io.gfile.makedirs(directory)
  temporary = path + '.tmp'
  with tf.io.gfile.GFile(temporary, 'wb') as f:
    f.write(content)
  tf.io.gfile.rename(temporary, path, overwrite=True)


def metadata_labels(label_map: label_map_lib.LabelMap
                    ) -> List[Dict[str, Any]]:
  """The metadata's labels of a converter label map, by training id."""
  return [{'id': i, 'name': c.name, 'isthing': bool(c.isthing),
           'category_id': int(c.coco_id)}
          for i, c in enumerate(label_map.classes)]


def with_metadata(tflite_model: bytes, num_classes: int,
                  num_thing_classes: int,
                  labels: Optional[List[Dict[str, Any]]] = None) -> bytes:
  """The model with its `tflite_metadata` entry, read off its signature."""
  interpreter = tflite_runtime.interpreter_class()(model_content=tflite_model)
  signatures = interpreter.get_signature_list()
  if len(signatures) != 1:
    raise ValueError(f'expected one signature, got {sorted(signatures)}')
  runner = interpreter.get_signature_runner(next(iter(signatures)))
  inputs = runner.get_input_details()
  if len(inputs) != 1:
    raise ValueError(f'expected one input, got {sorted(inputs)}')
  (name, details), = inputs.items()
  metadata = tflite_metadata.describe(
      dict(details, name=name),
      {k: v for k, v in sorted(runner.get_output_details().items())},
      num_classes, num_thing_classes, labels)
  return tflite_metadata.add_metadata(tflite_model, metadata)
