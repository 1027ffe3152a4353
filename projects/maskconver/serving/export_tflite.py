r"""Converts a MaskConver SavedModel to TFLite, with post-training quantization.

  python -m maskconver.serving.export_tflite \
      --saved_model_dir=/path/to/export/saved_model \
      --tflite_path=/path/to/model_int8.tflite \
      --quant_type=int8_full_fp32_io \
      --experiment=maskconver_mnmh_coco_640 \
      --params_override="task.validation_data.input_path=coco/val-*"

The SavedModel comes from `export_saved_model --input_type=tflite
--batch_size=1` (float32 normalized input of a fixed size) or
`--input_type=tflite_uint8 --batch_size=1` (uint8 RGB pixels of a fixed
size, normalized inside the model: the one to put on a phone), with the
panoptic post-processing inside (see `export_module`), so the TFLite model
does everything from the image to the panoptic maps, with TFLite builtin ops
only (no Flex / select TF ops; the conversion fails if any is needed). Its
signature keeps the SavedModel's input and output names.

With `--experiment`, the .tflite also carries its description -- input
size, dtype, resize and normalization, every output's shape and meaning,
and the class labels (`--label_map`, the converter's label map JSON) -- as
TFLite metadata (`maskconver.serving.tflite_metadata`).

`--quant_type` takes Model Garden's names:

| quant_type          | weights | network activations | input |
| ------------------- | ------- | ------------------- | ----- |
| none (default)      | float32 | float32             | float32 |
| fp16                | float16 | float32             | float32 |
| default             | int8    | float32 (dynamic range) | float32 |
| int8_fallback       | int8    | int8, float where no int8 kernel | float32 |
| int8_full_fp32_io   | int8    | int8 (TFLITE_BUILTINS_INT8)      | float32 |
| int8_full           | int8    | int8                | uint8 (quantized; raw pixels for tflite_uint8) |
| int8_full_int8_io   | int8    | int8                | int8 (quantized) |

In every int8 type the panoptic merge (the ops under the
`panoptic_postprocessor/` name scope), the top-K center selection (its
peaks and TOPK_V2: it masks suppressed cells with the lowest float32, which
as an int8 scale either aborts the interpreter or, on TOPK_V2's input, maps
every logit to one value) and the uint8 input's normalization stay in
float32, and so does the heatmap head's output conv (whose int8 scale the
converter would otherwise share with the selector's padding). The mask
einsum is int8 when the SavedModel has an int8 twin of the signature
(`<signature>_int8`, which `export_module` writes for its batch-1 TFLite
signatures; these types convert it instead of the signature itself, unless
`int8_twin=False` / `--noint8_twin`): there it is a FULLY_CONNECTED with
runtime weights, which XNNPACK and TFLite's own kernels run in int8 in
~1.2 ms at 256x256. Without a twin the einsum stays a float BATCH_MATMUL (an
int8 BATCH_MATMUL takes ~8 ms with either kernel set, a float one 1.4 ms
with XNNPACK, 37 ms with TFLite's own kernels; MaskProjection's doc). In 8
bits the merge would count mask areas with a step of dozens of pixels, and
the int8 DIV kernel aborts on an empty mask. Its outputs keep their types
(int32 maps and classes, bool flags, float32 scores and image_info) in every
variant.

The int8 types calibrate on `--calibration_steps` images of the
experiment's `task.validation_data` (parsed like evaluation: resized and
padded to task.model.input_size, which must be the SavedModel's input size;
normalized for a float input, raw uint8 pixels for a tflite_uint8 one). For a
tflite_uint8 signature `int8_full` keeps the raw uint8 pixels as input (no
quantization parameters to apply) and its outputs keep their types.
"""

import os
import re
import sys
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional,
                    Sequence)

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2
# No public API changes the input type of a model quantized with a denylist.
from tensorflow.lite.python import util as lite_util

from official.core import config_definitions as cfg

from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.data import label_map as label_map_lib
from maskconver.serving import export_module
from maskconver.serving import export_saved_model
from maskconver.serving import tflite_metadata
from maskconver.ops import image_ops
from maskconver.tasks import maskconver_task

FLAGS = flags.FLAGS


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
  signatures = _signature_defs(saved_model_dir)
  if signature_key not in signatures:
    raise ValueError(
        f'--saved_model_dir={saved_model_dir} has no signature '
        f'{signature_key!r} (it has {sorted(signatures)}); see '
        '--signature_key')
  specs = {}
  for name, info in signatures[signature_key].inputs.items():
    spec = tf.TensorSpec(tf.TensorShape(info.tensor_shape),
                         tf.dtypes.as_dtype(info.dtype), name=name)
    if not spec.shape.is_fully_defined() or spec.dtype == tf.string:
      raise ValueError(
          f'--saved_model_dir={saved_model_dir}: signature {signature_key!r} '
          f'input {name!r} is {spec.dtype.name} {spec.shape}; TFLite needs '
          'fixed-size tensors: export with --input_type=tflite '
          '--batch_size=1')
    specs[name] = spec
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
    for image, _ in dataset.take(num_steps):
      # The input pipeline sends uint8 pixels; the float input is normalized.
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
  interpreter = interpreter_class()(model_content=float_model)
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
    return _rename_signature(
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
  elif quant_type in ('fp16', 'default'):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant_type == 'fp16':
      converter.target_spec.supported_types = [tf.float16]
    tflite_model = converter.convert()
  else:
    tflite_model = _convert_int8(saved_model_dir, signature_key, converter,
                                 quant_type, representative_dataset)
  non_builtin = non_builtin_ops(tflite_model)
  if non_builtin:
    raise ValueError(f'the TFLite model needs non-builtin ops {non_builtin}')
  return tflite_model


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
  tflite_model = float_top_k(debugger.get_nondebug_quantized_model())
  if io_type is not None:
    # The denylisting path ignores inference_input_type; the outputs of the
    # float merge stay float32.
    tflite_model = lite_util.modify_model_io_type(tflite_model, io_type,
                                                  tf.float32)
  return tflite_model


def float_top_k(tflite_model: bytes) -> bytes:
  """Runs every TOPK_V2 fed by a QUANTIZE of a float tensor in float.

  The quantizer quantizes the input of the top-K center selection even when
  its float producers are denylisted; that input masks suppressed cells with
  the lowest float32, so its int8 scale (~1e36) maps every logit to one
  value and the selection becomes arbitrary. Here the TOPK_V2 reads the
  float tensor instead, its values output becomes float32, as do the slices
  and reshapes of them (the fast merge reshapes its best and runner-up ranks),
  and the DEQUANTIZE ops that read those values are bypassed; ops left
  without readers (the QUANTIZE, the DEQUANTIZE) are removed.

  Args:
    tflite_model: a quantized model.

  Returns:
    The model with float top-K (unchanged if it has no such TOPK_V2).
  """
  # ai-edge-litert (setup.py). pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated as schema
  from ai_edge_litert.tools import flatbuffer_utils
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_model))
  ops = schema.BuiltinOperator
  codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c)
           for c in model.operatorCodes]
  changed = False
  for graph_index, graph in enumerate(model.subgraphs):
    producer = {o: op for op in graph.operators for o in op.outputs}
    for op in list(graph.operators):
      if codes[op.opcodeIndex] != ops.TOPK_V2:
        continue
      quantize = producer.get(op.inputs[0])
      if (quantize is not None and
          codes[quantize.opcodeIndex] == ops.QUANTIZE and
          graph.tensors[quantize.inputs[0]].type ==
          schema.TensorType.FLOAT32):
        op.inputs = [quantize.inputs[0]] + list(op.inputs[1:])
        changed = True
      if graph.tensors[op.inputs[0]].type == schema.TensorType.FLOAT32:
        changed |= _make_float(model, graph_index, codes, op.outputs[0])
    if changed:
      _remove_unread_ops(graph, codes, (ops.QUANTIZE, ops.DEQUANTIZE))
  if not changed:
    return tflite_model
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _rename_signature(tflite_model: bytes, signature_key: str) -> bytes:
  """The model with its one signature named signature_key."""
  # pylint: disable-next=g-import-not-at-top
  from ai_edge_litert.tools import flatbuffer_utils
  model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_model))
  if len(model.signatureDefs or []) != 1:
    raise ValueError(f'expected one signature, got '
                     f'{len(model.signatureDefs or [])}')
  model.signatureDefs[0].signatureKey = signature_key.encode()
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _make_float(model: Any, graph_index: int, codes: Sequence[int],
                tensor: int) -> bool:
  """Keeps a TOPK_V2's values, and what moves them, in float32 (float_top_k).

  If the values were quantized, every reader must only move them (slices,
  reshapes: their outputs become float32 in turn), dequantize them (the
  DEQUANTIZE is bypassed: its readers read the float tensor) or (re)quantize
  them. Such a QUANTIZE is bypassed the same way when all that reads its
  output could be float, and kept otherwise (float to int8 is valid).

  Args:
    model: the flatbuffer model object (ModelT), changed in place.
    graph_index: the subgraph of `tensor`.
    codes: the builtin code of each operator code index.
    tensor: the index of the values tensor.

  Returns:
    Whether the model changed.

  Raises:
    ValueError: another op reads the quantized values; it would be handed
      float32.
  """
  # ai-edge-litert (setup.py). pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated as schema
  ops = schema.BuiltinOperator
  float32 = schema.TensorType.FLOAT32
  moving = (ops.STRIDED_SLICE, ops.SLICE, ops.RESHAPE, ops.SQUEEZE,
            ops.EXPAND_DIMS)
  graph = model.subgraphs[graph_index]
  changed = False

  def readers(index):
    return [op for op in graph.operators if index in op.inputs]

  def floatable(index):
    # All readers of a quantized tensor could read it as float32: a
    # (re)QUANTIZE reading float is valid as it is.
    for op in readers(index):
      code = codes[op.opcodeIndex]
      if code in (ops.DEQUANTIZE, ops.QUANTIZE):
        continue
      if (code in moving and list(op.inputs).index(index) == 0 and
          (graph.tensors[op.outputs[0]].type == float32 or
           floatable(op.outputs[0]))):
        continue
      return False
    return True

  def bypass(op, index):
    # op's readers read `index` instead of op's output; op is dropped.
    old = op.outputs[0]
    for other in graph.operators:
      other.inputs = [index if i == old else i for i in other.inputs]
    graph.outputs = [index if i == old else i for i in graph.outputs]
    for signature in model.signatureDefs or []:
      if signature.subgraphIndex == graph_index:
        for output in signature.outputs:
          if output.tensorIndex == old:
            output.tensorIndex = index
    graph.operators = [other for other in graph.operators
                       if other is not op]

  def to_float(index):
    nonlocal changed
    if graph.tensors[index].type != float32:
      graph.tensors[index].type = float32
      graph.tensors[index].quantization = None
      changed = True
    for op in readers(index):
      if op not in graph.operators:
        continue
      code = codes[op.opcodeIndex]
      if code in (ops.DEQUANTIZE, ops.QUANTIZE):
        if code == ops.QUANTIZE and not floatable(op.outputs[0]):
          continue
        bypass(op, index)
        changed = True
        to_float(index)  # The bypassed op's readers read it now.
      elif code in moving and graph.tensors[op.outputs[0]].type != float32:
        to_float(op.outputs[0])

  if graph.tensors[tensor].type != float32 and not floatable(tensor):
    names = {v: k for k, v in vars(ops).items() if not k.startswith('_')}
    chain = [(names.get(codes[op.opcodeIndex]), list(op.inputs).index(tensor),
              [names.get(codes[o.opcodeIndex]) for o in readers(op.outputs[0])])
             for op in readers(tensor)]
    raise ValueError(f'float_top_k: the top-K values '
                     f'{graph.tensors[tensor].name!r} are read in int8 by an '
                     f'op that only takes int8 (readers: {chain}); cannot '
                     'keep them float')
  to_float(tensor)
  return changed


def _remove_unread_ops(graph: Any, codes: Sequence[int],
                       removable: Sequence[int]) -> None:
  """Drops ops of the `removable` types whose outputs nothing reads."""
  while True:
    read = set(graph.outputs) | {i for op in graph.operators
                                  for i in op.inputs}
    unread = [op for op in graph.operators
              if codes[op.opcodeIndex] in removable and
              not set(op.outputs) & read]
    if not unread:
      return
    graph.operators = [op for op in graph.operators if op not in unread]


def interpreter_class(runtime: str = 'auto') -> type:
  """The TFLite interpreter class: LiteRT's (ai-edge-litert) or tf.lite's.

  Args:
    runtime: 'litert', 'tf' or 'auto' (LiteRT if installed, else tf.lite).

  Returns:
    The Interpreter class.
  """
  if runtime not in ('auto', 'litert', 'tf'):
    raise ValueError(f'runtime must be auto, litert or tf, got {runtime!r}')
  if runtime == 'tf':
    return tf.lite.Interpreter
  try:
    # Optional dependency. pylint: disable-next=g-import-not-at-top
    from ai_edge_litert import interpreter as litert
  except ImportError:
    if runtime == 'litert':
      raise
    logging.info('ai-edge-litert is not installed; using tf.lite')
    return tf.lite.Interpreter
  return litert.Interpreter


def make_interpreter(model_content: bytes, num_threads: Optional[int] = None,
                     runtime: str = 'auto', use_xnnpack: bool = True) -> Any:
  """A TFLite interpreter with its tensors allocated.

  Args:
    model_content: the TFLite model.
    num_threads: CPU threads; None for the runtime's default.
    runtime: see `interpreter_class`.
    use_xnnpack: True: the default XNNPACK delegate; False: TFLite's own
      builtin kernels only.

  Returns:
    The interpreter.
  """
  interpreter_cls = interpreter_class(runtime)
  module = sys.modules[interpreter_cls.__module__]
  resolver = (module.OpResolverType.AUTO if use_xnnpack else
              module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
  interpreter = interpreter_cls(model_content=model_content,
                                num_threads=num_threads,
                                experimental_op_resolver_type=resolver)
  interpreter.allocate_tensors()
  return interpreter


def op_names(tflite_model: bytes) -> List[str]:
  """Sorted names of the distinct operators of a TFLite model."""
  interpreter = interpreter_class()(model_content=tflite_model)
  # The op list has no public accessor. pylint: disable-next=protected-access
  return sorted({op['op_name'] for op in interpreter._get_ops_details()})


def non_builtin_ops(tflite_model: bytes) -> List[str]:
  """Ops that are not TFLite builtins (Flex ops, custom ops)."""
  return [name for name in op_names(tflite_model)
          if name.startswith('Flex') or not re.fullmatch(r'[A-Z0-9_]+',
                                                          name)]


def write_atomic(path: str, content: bytes) -> None:
  """Writes a file so that a reader never sees it half-written."""
  directory = os.path.dirname(os.path.abspath(path))
  tf.io.gfile.makedirs(directory)
  temporary = path + '.tmp'
  with tf.io.gfile.GFile(temporary, 'wb') as f:
    f.write(content)
  tf.io.gfile.rename(temporary, path, overwrite=True)


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  flags.DEFINE_string(
      'saved_model_dir', None,
      'SavedModel exported with --input_type=tflite --batch_size=1.')
  flags.DEFINE_string('tflite_path', None, 'Output .tflite file.')
  flags.DEFINE_string(
      'quant_type', None,
      f'Post-training quantization: one of {", ".join(QUANT_TYPES)}; '
      'absent or "none" for float32.')
  flags.DEFINE_string(
      'signature_key', 'serving_default',
      'Signature of the SavedModel to convert (e.g. "tflite", "network" or '
      '"postprocess" of a multi-signature export).')
  flags.DEFINE_bool(
      'int8_twin', True,
      'For the int8 types, convert the SavedModel\'s int8 twin of '
      '--signature_key (<signature>_int8, written by export_saved_model at '
      'batch size 1) when it has one: the mask einsum then runs in int8. '
      '--noint8_twin keeps it a float BATCH_MATMUL.')
  flags.DEFINE_string(
      'experiment', None,
      'Registered experiment, for the int8 calibration data.')
  flags.DEFINE_multi_string(
      'config_file', None, 'YAML files overriding the experiment, in order.')
  flags.DEFINE_string(
      'params_override', '',
      'YAML string or file overriding the experiment after --config_file.')
  flags.DEFINE_integer(
      'calibration_steps', 100,
      'Validation images used to calibrate the int8 types.')
  flags.DEFINE_string(
      'label_map', None,
      'The converter\'s label map JSON (e.g. records/val_label_map.json): '
      'class names packed into the TFLite metadata (needs --experiment).')


def main(argv: Sequence[str]) -> None:
  del argv
  try:
    quant_type = normalize_quant_type(FLAGS.quant_type)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  saved_model_dir = FLAGS.saved_model_dir
  if not saved_model_dir:
    raise app.UsageError('--saved_model_dir is required')
  if not tf.saved_model.contains_saved_model(saved_model_dir):
    raise app.UsageError(f'--saved_model_dir={saved_model_dir}: no '
                         'SavedModel there')
  if not FLAGS.tflite_path:
    raise app.UsageError('--tflite_path is required')
  if FLAGS.calibration_steps <= 0:
    raise app.UsageError('--calibration_steps must be positive')
  try:
    specs = signature_input_specs(saved_model_dir, FLAGS.signature_key)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  representative_dataset = None
  if quant_type is not None and quant_type.startswith('int8'):
    if len(specs) != 1:
      raise app.UsageError(
          f'--quant_type={quant_type} calibrates with images, but signature '
          f'{FLAGS.signature_key!r} takes {sorted(specs)}')
    spec = next(iter(specs.values()))
    if not FLAGS.experiment:
      raise app.UsageError(
          f'--quant_type={quant_type} calibrates on validation images: pass '
          '--experiment (and --config_file / --params_override setting '
          'task.validation_data.input_path)')
    params = export_saved_model.load_params(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
    try:
      representative_dataset = calibration_dataset(
          params, spec.shape.as_list(), FLAGS.calibration_steps, spec.dtype)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  labels = None
  if FLAGS.label_map:
    if not FLAGS.experiment:
      raise app.UsageError('--label_map goes into the TFLite metadata, which '
                           'needs --experiment (for the classes)')
    try:
      labels = metadata_labels(label_map_lib.LabelMap.load(FLAGS.label_map))
    except (OSError, ValueError, KeyError) as e:
      raise app.UsageError(f'--label_map={FLAGS.label_map}: {e}') from e
  tflite_model = convert(saved_model_dir, quant_type, representative_dataset,
                         FLAGS.signature_key, FLAGS.int8_twin)
  described = ''
  if FLAGS.experiment:
    params = export_saved_model.load_params(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
    model_config = params.task.model
    if labels is not None and len(labels) != model_config.num_classes:
      raise app.UsageError(
          f'--label_map={FLAGS.label_map} has {len(labels)} classes, the '
          f'experiment {model_config.num_classes}')
    tflite_model = with_metadata(tflite_model, model_config.num_classes,
                                 model_config.num_thing_classes, labels)
    described = ', with metadata'
  write_atomic(FLAGS.tflite_path, tflite_model)
  print(f'TFLite model ({quant_type or "float32"}, '
        f'{len(tflite_model) / 1e6:.2f} MB{described}) written to '
        f'{FLAGS.tflite_path}')


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
  interpreter = interpreter_class()(model_content=tflite_model)
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


def run() -> None:
  """Console entry point."""
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
