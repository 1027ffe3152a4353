"""The TFLite runtime: interpreters, and values in and out of quantized tensors.

`make_interpreter` builds an interpreter of LiteRT (ai-edge-litert) when it is
installed, else of `tf.lite`, with XNNPACK (`kernels='xnnpack'`, the runtime's
default delegate) or TFLite's own builtin kernels (`kernels='builtin'`, no
delegate). `quantize` / `dequantize` convert between float values and a
uint8 / int8 tensor with the (scale, zero point) of its details, as
`get_input_details()` / `get_output_details()` report them;
`quantize_inputs` / `dequantize_outputs` do it for every input or output of a
signature runner.
"""

import sys
from typing import Any, Dict, Mapping, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

RUNTIMES = ('auto', 'litert', 'tf')
KERNELS = ('xnnpack', 'builtin')

# Tensor details as the interpreter reports them: 'dtype', 'shape',
# 'quantization' (scale, zero point), ...
TensorDetails = Mapping[str, Any]


def interpreter_class(runtime: str = 'auto') -> type:
  """The TFLite interpreter class: LiteRT's (ai-edge-litert) or tf.lite's.

  Args:
    runtime: 'litert', 'tf' or 'auto' (LiteRT if installed, else tf.lite).

  Returns:
    The Interpreter class.

  Raises:
    ValueError: an unknown runtime.
    ImportError: runtime='litert' without ai-edge-litert.
  """
  if runtime not in RUNTIMES:
    raise ValueError(f'runtime must be one of {RUNTIMES}, got {runtime!r}')
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


def make_interpreter(model_content: Optional[bytes] = None,
                     num_threads: Optional[int] = None,
                     kernels: str = 'xnnpack',
                     runtime: str = 'auto',
                     preserve_all_tensors: bool = False,
                     model_path: Optional[str] = None) -> Any:
  """A TFLite interpreter with its tensors allocated.

  Args:
    model_content: the TFLite model; or None with `model_path`.
    num_threads: CPU threads; None for the runtime's default.
    kernels: 'xnnpack' (the default XNNPACK delegate) or 'builtin' (TFLite's
      own kernels, no delegate).
    runtime: see `interpreter_class`.
    preserve_all_tensors: keep every intermediate tensor readable after
      `invoke` (slower; for profiling).
    model_path: a .tflite file, read by the runtime, instead of
      `model_content`.

  Returns:
    The interpreter.

  Raises:
    ValueError: unknown kernels or runtime, not exactly one of
      `model_content` and `model_path`, or not a TFLite model.
  """
  if kernels not in KERNELS:
    raise ValueError(f'kernels must be one of {KERNELS}, got {kernels!r}')
  if (model_content is None) == (model_path is None):
    raise ValueError('give exactly one of model_content and model_path')
  interpreter_cls = interpreter_class(runtime)
  resolver = sys.modules[interpreter_cls.__module__].OpResolverType
  interpreter = interpreter_cls(
      model_content=model_content, model_path=model_path,
      num_threads=num_threads,
      experimental_op_resolver_type=(
          resolver.AUTO if kernels == 'xnnpack' else
          resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
      experimental_preserve_all_tensors=preserve_all_tensors)
  interpreter.allocate_tensors()
  return interpreter


def quantization(details: TensorDetails) -> Optional[Tuple[float, int]]:
  """(scale, zero point) of a quantized uint8 / int8 tensor, else None."""
  scale, zero_point = details.get('quantization', (0.0, 0))
  if np.dtype(details['dtype']) not in (np.uint8, np.int8) or not scale:
    return None
  return float(scale), int(zero_point)


def quantize(value: np.ndarray, details: TensorDetails) -> np.ndarray:
  """A float value as the quantized tensor of `details` takes it.

  Args:
    value: the float value.
    details: the tensor's details.

  Returns:
    round(value / scale + zero point), clipped to the tensor's integer type,
    for a quantized tensor and a float value; `value` itself otherwise.
  """
  value = np.asarray(value)
  params = quantization(details)
  if params is None or value.dtype.kind != 'f':
    return value
  scale, zero_point = params
  dtype = np.dtype(details['dtype'])
  limits = np.iinfo(dtype)
  return np.clip(np.round(value / scale + zero_point), limits.min,
                 limits.max).astype(dtype)


def dequantize(value: np.ndarray, details: TensorDetails) -> np.ndarray:
  """float32 (value - zero point) * scale of a quantized tensor, else value."""
  params = quantization(details)
  if params is None:
    return value
  scale, zero_point = params
  return (np.asarray(value).astype(np.float32) - zero_point) * scale


def quantize_inputs(runner: Any, inputs: Mapping[str, np.ndarray]
                    ) -> Dict[str, np.ndarray]:
  """{name: value} for a signature runner, float values quantized."""
  details = runner.get_input_details()
  return {name: quantize(value, details[name])
          for name, value in inputs.items()}


def dequantize_outputs(runner: Any, outputs: Mapping[str, np.ndarray]
                       ) -> Dict[str, np.ndarray]:
  """A signature runner's {name: value}, quantized outputs dequantized."""
  details = runner.get_output_details()
  return {name: dequantize(value, details[name]) if name in details else value
          for name, value in outputs.items()}
