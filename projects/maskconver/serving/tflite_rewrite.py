"""Rewrites of converted TFLite flatbuffers, and what they are made of.

* `float_top_k`: the int8 types' TOPK_V2 back in float32 (the quantizer
  quantizes its input although its producers are denylisted);
* `float16_filters`: the filters of the convolutions and fully connected
  layers of a float32 model stored in float16 (the `fp16` type);
* `rename_signature`: the one signature of a model renamed;
* `op_names` / `non_builtin_ops`: the operators a model needs.

The flatbuffer is edited through LiteRT's object API (`ai_edge_litert`'s
schema and flatbuffer_utils, a dependency in setup.py).
"""

import re
from typing import Any, List, Sequence

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils
import numpy as np

from maskconver.inference import tflite_runtime

_OPS = schema.BuiltinOperator
_FLOAT32 = schema.TensorType.FLOAT32
# Ops that only move values (their first input to their output): a float
# input gives a float output.
_MOVING_OPS = (_OPS.STRIDED_SLICE, _OPS.SLICE, _OPS.RESHAPE, _OPS.SQUEEZE,
               _OPS.EXPAND_DIMS)
_QUANTIZATION_OPS = (_OPS.DEQUANTIZE, _OPS.QUANTIZE)
# Ops whose input 1 is a filter (float16_filters).
_FILTER_OPS = (_OPS.CONV_2D, _OPS.DEPTHWISE_CONV_2D, _OPS.FULLY_CONNECTED,
               _OPS.TRANSPOSE_CONV)


def _read(tflite_model: bytes) -> Any:
  return flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_model))


def _write(model: Any) -> bytes:
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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

  Raises:
    ValueError: an op that only takes int8 reads the top-K values.
  """
  model = _read(tflite_model)
  codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c)
           for c in model.operatorCodes]
  changed = False
  for graph_index, graph in enumerate(model.subgraphs):
    producer = {o: op for op in graph.operators for o in op.outputs}
    for op in list(graph.operators):
      if codes[op.opcodeIndex] != _OPS.TOPK_V2:
        continue
      quantize = producer.get(op.inputs[0])
      if (quantize is not None and
          codes[quantize.opcodeIndex] == _OPS.QUANTIZE and
          graph.tensors[quantize.inputs[0]].type == _FLOAT32):
        op.inputs = [quantize.inputs[0]] + list(op.inputs[1:])
        changed = True
      if graph.tensors[op.inputs[0]].type == _FLOAT32:
        changed |= _FloatPass(model, graph_index, codes).run(op.outputs[0])
    if changed:
      _remove_unread_ops(graph, codes, _QUANTIZATION_OPS)
  if not changed:
    return tflite_model
  return _write(model)


class _FloatPass:
  """Keeps a TOPK_V2's values, and what moves them, in float32 (float_top_k).

  If the values were quantized, every reader must only move them (slices,
  reshapes: their outputs become float32 in turn), dequantize them (the
  DEQUANTIZE is bypassed: its readers read the float tensor) or (re)quantize
  them. Such a QUANTIZE is bypassed the same way when all that reads its
  output could be float, and kept otherwise (float to int8 is valid).
  """

  def __init__(self, model: Any, graph_index: int, codes: Sequence[int]):
    """Binds the pass to one subgraph.

    Args:
      model: the flatbuffer model object (ModelT), changed in place.
      graph_index: the subgraph to change.
      codes: the builtin code of each operator code index.
    """
    self._model = model
    self._graph_index = graph_index
    self._graph = model.subgraphs[graph_index]
    self._codes = codes
    self._changed = False

  def run(self, tensor: int) -> bool:
    """Makes `tensor` (the values of a TOPK_V2) and its movers float32.

    Args:
      tensor: the index of the values tensor.

    Returns:
      Whether the model changed.

    Raises:
      ValueError: another op reads the quantized values; it would be handed
        float32.
    """
    graph = self._graph
    if graph.tensors[tensor].type != _FLOAT32 and not self._floatable(tensor):
      names = {v: k for k, v in vars(_OPS).items() if not k.startswith('_')}
      chain = [(names.get(self._code(op)), list(op.inputs).index(tensor),
                [names.get(self._code(o))
                 for o in self._readers(op.outputs[0])])
               for op in self._readers(tensor)]
      raise ValueError(f'float_top_k: the top-K values '
                       f'{graph.tensors[tensor].name!r} are read in int8 by '
                       f'an op that only takes int8 (readers: {chain}); '
                       'cannot keep them float')
    self._to_float(tensor)
    return self._changed

  def _code(self, op: Any) -> int:
    return self._codes[op.opcodeIndex]

  def _readers(self, index: int) -> List[Any]:
    return [op for op in self._graph.operators if index in op.inputs]

  def _floatable(self, index: int) -> bool:
    """Whether every reader of a quantized tensor could read it as float32.

    A (re)QUANTIZE reading float is valid as it is.
    """
    for op in self._readers(index):
      code = self._code(op)
      if code in _QUANTIZATION_OPS:
        continue
      if (code in _MOVING_OPS and list(op.inputs).index(index) == 0 and
          (self._graph.tensors[op.outputs[0]].type == _FLOAT32 or
           self._floatable(op.outputs[0]))):
        continue
      return False
    return True

  def _bypass(self, op: Any, index: int) -> None:
    """Drops `op`; what read its output reads `index` instead."""
    graph = self._graph
    old = op.outputs[0]
    for other in graph.operators:
      other.inputs = [index if i == old else i for i in other.inputs]
    graph.outputs = [index if i == old else i for i in graph.outputs]
    for signature in self._model.signatureDefs or []:
      if signature.subgraphIndex == self._graph_index:
        for output in signature.outputs:
          if output.tensorIndex == old:
            output.tensorIndex = index
    graph.operators = [other for other in graph.operators if other is not op]

  def _to_float(self, index: int) -> None:
    graph = self._graph
    if graph.tensors[index].type != _FLOAT32:
      graph.tensors[index].type = _FLOAT32
      graph.tensors[index].quantization = None
      self._changed = True
    for op in self._readers(index):
      if op not in graph.operators:
        continue
      code = self._code(op)
      if code in _QUANTIZATION_OPS:
        if code == _OPS.QUANTIZE and not self._floatable(op.outputs[0]):
          continue
        self._bypass(op, index)
        self._changed = True
        self._to_float(index)  # The bypassed op's readers read it now.
      elif (code in _MOVING_OPS and
            graph.tensors[op.outputs[0]].type != _FLOAT32):
        self._to_float(op.outputs[0])


def _remove_unread_ops(graph: Any, codes: Sequence[int],
                      removable: Sequence[int]) -> None:
  """Drops ops of the `removable` types whose outputs nothing reads.

  Args:
    graph: a subgraph (SubGraphT), changed in place.
    codes: the builtin code of each operator code index.
    removable: builtin codes of the ops that may go.
  """
  while True:
    read = set(graph.outputs) | {i for op in graph.operators
                                  for i in op.inputs}
    unread = [op for op in graph.operators
              if codes[op.opcodeIndex] in removable and
              not set(op.outputs) & read]
    if not unread:
      return
    graph.operators = [op for op in graph.operators if op not in unread]


def _operator_code(model: Any, builtin: int, version: int) -> int:
  """The index of the operator code of a builtin op, added if absent."""
  for index, code in enumerate(model.operatorCodes):
    if flatbuffer_utils.get_builtin_code_from_operator_code(code) == builtin:
      code.version = max(code.version, version)
      return index
  code = schema.OperatorCodeT()
  code.builtinCode = builtin
  code.deprecatedBuiltinCode = min(
      builtin, _OPS.PLACEHOLDER_FOR_GREATER_OP_CODES)
  code.version = version
  model.operatorCodes.append(code)
  return len(model.operatorCodes) - 1


def float16_filters(tflite_model: bytes) -> bytes:
  """Stores the constant float32 filters of a model in float16.

  Each constant float32 filter (input 1) of a CONV_2D, DEPTHWISE_CONV_2D,
  FULLY_CONNECTED or TRANSPOSE_CONV becomes a float16 constant read through
  a DEQUANTIZE to float32, the form of the converter's float16 weights
  (XNNPACK folds it into the op's float32 weights at delegation). Every
  other constant keeps float32, so integer-valued float constants (the
  panoptic merge's cell indices, up to (h + 1) * (w + 1) - 1; the
  selector's fill and threshold) stay exact: float16 represents integers
  exactly only up to 2048. A filter with values beyond float16's range
  keeps float32.

  Args:
    tflite_model: a float32 TFLite model.

  Returns:
    The model with float16 filters (unchanged if it has none to convert).
  """
  model = _read(tflite_model)
  codes = [flatbuffer_utils.get_builtin_code_from_operator_code(c)
           for c in model.operatorCodes]
  dequantize = None
  if model.buffers[0].data is not None and len(model.buffers[0].data):
    raise ValueError('float16_filters: buffer 0 holds data; TFLite keeps it '
                     'empty for tensors without constant values')
  for graph in model.subgraphs:
    readers = {}
    for tensor in graph.tensors:
      readers[tensor.buffer] = readers.get(tensor.buffer, 0) + 1
    filters = sorted({op.inputs[1] for op in graph.operators
                      if codes[op.opcodeIndex] in _FILTER_OPS and
                      len(op.inputs) > 1 and op.inputs[1] >= 0})
    dequantize_ops = []
    for index in filters:
      tensor = graph.tensors[index]
      buffer = model.buffers[tensor.buffer]
      if tensor.type != _FLOAT32 or buffer.data is None or not len(
          buffer.data):
        continue
      values = np.frombuffer(bytes(buffer.data), np.float32)
      if not np.all(np.abs(values) <= np.finfo(np.float16).max):
        continue
      half = schema.BufferT()
      half.data = np.frombuffer(values.astype(np.float16).tobytes(), np.uint8)
      model.buffers.append(half)
      constant = schema.TensorT()
      constant.shape = tensor.shape
      constant.shapeSignature = tensor.shapeSignature
      constant.type = schema.TensorType.FLOAT16
      constant.buffer = len(model.buffers) - 1
      constant.name = (tensor.name or b'') + b'/float16'
      graph.tensors.append(constant)
      readers[tensor.buffer] -= 1
      if not readers[tensor.buffer]:
        buffer.data = None
      # The filter becomes the DEQUANTIZE's output (buffer 0: no data).
      tensor.buffer = 0
      if dequantize is None:
        # Version 3: DEQUANTIZE of float16.
        dequantize = _operator_code(model, _OPS.DEQUANTIZE, 3)
      op = schema.OperatorT()
      op.opcodeIndex = dequantize
      op.inputs = [len(graph.tensors) - 1]
      op.outputs = [index]
      dequantize_ops.append(op)
    graph.operators = dequantize_ops + list(graph.operators)
  if dequantize is None:
    return tflite_model
  return _write(model)


def rename_signature(tflite_model: bytes, signature_key: str) -> bytes:
  """The model with its one signature named signature_key."""
  model = _read(tflite_model)
  if len(model.signatureDefs or []) != 1:
    raise ValueError(f'expected one signature, got '
                     f'{len(model.signatureDefs or [])}')
  model.signatureDefs[0].signatureKey = signature_key.encode()
  return _write(model)


def op_names(tflite_model: bytes) -> List[str]:
  """Sorted names of the distinct operators of a TFLite model."""
  interpreter = tflite_runtime.interpreter_class()(model_content=tflite_model)
  # The op list has no public accessor. pylint: disable-next=protected-access
  return sorted({op['op_name'] for op in interpreter._get_ops_details()})


def non_builtin_ops(tflite_model: bytes) -> List[str]:
  """Ops that are not TFLite builtins (Flex ops, custom ops)."""
  return [name for name in op_names(tflite_model)
          if name.startswith('Flex') or not re.fullmatch(r'[A-Z0-9_]+',
                                                          name)]
