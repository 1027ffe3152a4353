"""Runs a MaskConver TFLite model (the `tflite` input type export).

The model takes one [1, input_height, input_width, 3] image, pre-processed
like the evaluation parser (done here): float32, uint8 / int8 quantized with
the input's scale and zero point (full-integer exports of the `tflite`
input), or uint8 pixels without quantization (the `tflite_uint8` input, which
normalizes inside the model; padding gets the mean color). It returns the
panoptic maps at the input size under the keys of `maskconver.keys`
(quantized float outputs are dequantized); they are mapped back to the
original image here. The model must keep its signature (the exporter's
converter does), since the outputs are found by name.
"""

import os
from typing import Optional, Tuple

import numpy as np

from official.vision.ops import preprocess_ops

from maskconver.inference import predictor
from maskconver.inference import preprocessing

# pylint: disable=g-import-not-at-top
try:
  from ai_edge_litert import interpreter as _litert
  _Interpreter = _litert.Interpreter
except ImportError:  # LiteRT is optional; TensorFlow ships an interpreter.
  import tensorflow as tf
  _Interpreter = tf.lite.Interpreter
# pylint: enable=g-import-not-at-top


class TfLitePredictor(predictor.Predictor):
  """A `Predictor` backed by a .tflite file."""

  def __init__(self, path: str, signature: Optional[str] = None,
               num_threads: Optional[int] = None):
    """Loads the model.

    Args:
      path: the .tflite file.
      signature: signature key; None takes the only one.
      num_threads: interpreter threads; None lets the runtime choose.

    Raises:
      ValueError: if the file is not a TFLite model, has no (or an ambiguous)
        signature, or its input is not a float32 [1, h, w, 3] image.
    """
    if not os.path.isfile(path):
      raise ValueError(f'{path}: no such TFLite file')
    self._path = path
    try:
      self._interpreter = _Interpreter(model_path=path,
                                       num_threads=num_threads)
    except ValueError as e:
      raise ValueError(f'{path}: not a TFLite model ({e})') from e
    signatures = self._interpreter.get_signature_list()
    if not signatures:
      raise ValueError(f'{path}: the model has no signature, so its outputs '
                       'cannot be found by name; convert it with '
                       'maskconver.serving.export_tflite')
    if signature is None:
      if len(signatures) != 1:
        raise ValueError(f'{path}: several signatures {sorted(signatures)}; '
                         'choose one')
      signature = next(iter(signatures))
    if signature not in signatures:
      raise ValueError(f'{path}: no signature {signature!r}; it has '
                       f'{sorted(signatures)}')
    self._runner = self._interpreter.get_signature_runner(signature)
    inputs = self._runner.get_input_details()
    if len(inputs) != 1:
      raise ValueError(f'{path}: expected one input, got {sorted(inputs)}')
    (self._input_name, details), = inputs.items()
    shape = [int(v) for v in details['shape']]
    self._input_dtype = np.dtype(details['dtype'])
    self._input_quantization = _quantization(details)
    self._raw_pixels = (self._input_dtype == np.uint8 and
                        self._input_quantization is None)
    quantized_ok = (self._input_dtype in (np.uint8, np.int8) and
                    self._input_quantization is not None) or self._raw_pixels
    if ((self._input_dtype != np.float32 and not quantized_ok) or
        len(shape) != 4 or shape[0] != 1 or shape[3] != 3):
      raise ValueError(
          f'{path}: input {self._input_name!r} is {self._input_dtype.name} '
          f'{shape}; expected float32, uint8 or quantized int8 '
          "[1, height, width, 3] (export with input type 'tflite' and batch "
          'size 1)')
    self._input_size = shape[1:3]
    self._output_quantization = {
        name: _quantization(output)
        for name, output in self._runner.get_output_details().items()}

  @property
  def description(self) -> str:
    return f'TFLite {self._path}'

  @property
  def input_size(self):
    """(height, width) of the model input."""
    return list(self._input_size)

  def predict(self, image: np.ndarray) -> predictor.PanopticPrediction:
    normalized, image_info = preprocessing.preprocess_image(
        image, self._input_size)
    feed = normalized[None]
    if self._raw_pixels:
      feed = np.clip(np.round(
          feed * np.float32(preprocess_ops.STDDEV_RGB) +
          np.float32(preprocess_ops.MEAN_RGB)), 0, 255).astype(np.uint8)
    elif self._input_quantization is not None:
      scale, zero_point = self._input_quantization
      limits = np.iinfo(self._input_dtype)
      feed = np.clip(np.round(feed / scale + zero_point), limits.min,
                     limits.max).astype(self._input_dtype)
    outputs = self._runner(**{self._input_name: feed})
    for name, quantization in self._output_quantization.items():
      if quantization is not None and name in outputs:
        scale, zero_point = quantization
        outputs[name] = (outputs[name].astype(np.float32) - zero_point) * scale
    return predictor.PanopticPrediction.from_outputs(
        outputs, image_info=image_info, source=self.description)


def _quantization(details) -> Optional[Tuple[float, int]]:
  """(scale, zero point) of a quantized uint8 / int8 tensor, else None."""
  scale, zero_point = details.get('quantization', (0.0, 0))
  if np.dtype(details['dtype']) not in (np.uint8, np.int8) or not scale:
    return None
  return float(scale), int(zero_point)
