"""Rewrites of converted TFLite flatbuffers, and what they are made of.

* `float_top_k`: the int8 types' TOPK_V2 back in float32 (the quantizer
  quantizes its input although its producers are denylisted);
* `rename_signature`: the one signature of a model renamed;
* `op_names` / `non_builtin_ops`: the operators a model needs.

The flatbuffer is edited through LiteRT's object API (`ai_edge_litert`'s
schema and flatbuffer_utils, a dependency in setup.py).
"""

import re
from typing import Any, List, Sequence

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from maskconver.inference import tflite_runtime

_OPS = schema.BuiltinOperator
_FLOAT32 = schema.TensorType.FLOAT32
# Ops that only move values (their first input to their output): a float
# input gives a float output.
_MOVING_OPS = (_OPS.STRIDED_SLICE, _OPS.SLICE, _OPS.RESHAPE, _OPS.SQUEEZE,
               _OPS.EXPAND_DIMS)
_QUANTIZATION_OPS = (_OPS.DEQUANTIZE, _OPS.QUANTIZE)


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
