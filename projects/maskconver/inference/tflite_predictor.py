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
from typing import Optional

import numpy as np

from official.vision.ops import preprocess_ops

from maskconver.inference import predictor
from maskconver.inference import preprocessing
from maskconver.inference import tflite_runtime


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
      self._interpreter = tflite_runtime.make_interpreter(
          model_path=path, num_threads=num_threads)
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
    self._input_details = details
    self._input_dtype = np.dtype(details['dtype'])
    quantized = tflite_runtime.quantization(details) is not None
    self._raw_pixels = self._input_dtype == np.uint8 and not quantized
    quantized_ok = quantized or self._raw_pixels
    if ((self._input_dtype != np.float32 and not quantized_ok) or
        len(shape) != 4 or shape[0] != 1 or shape[3] != 3):
      raise ValueError(
          f'{path}: input {self._input_name!r} is {self._input_dtype.name} '
          f'{shape}; expected float32, uint8 or quantized int8 '
          "[1, height, width, 3] (export with input type 'tflite' and batch "
          'size 1)')
    self._input_size = shape[1:3]

  @property
  def description(self) -> str:
    return f'TFLite {self._path}'

  @property
  def input_size(self):
    """(height, width) of the model input."""
    return list(self._input_size)

  def predict(self, image: np.ndarray) -> predictor.PanopticPrediction:
    return self.predict_preprocessed(
        *preprocessing.preprocess_image(image, self._input_size))

  def predict_preprocessed(self, normalized: np.ndarray,
                           image_info: np.ndarray
                           ) -> predictor.PanopticPrediction:
    """Segments an image pre-processed like `preprocessing.preprocess_image`.

    Args:
      normalized: float32 [input_height, input_width, 3], the image resized,
        normalized and zero padded as the evaluation parser does.
      image_info: float [4, 2] image info of that pre-processing.

    Returns:
      The panoptic prediction of the original image.
    """
    feed = np.asarray(normalized, np.float32)[None]
    if self._raw_pixels:
      feed = np.clip(np.round(
          feed * np.float32(preprocess_ops.STDDEV_RGB) +
          np.float32(preprocess_ops.MEAN_RGB)), 0, 255).astype(np.uint8)
    else:
      feed = tflite_runtime.quantize(feed, self._input_details)
    outputs = tflite_runtime.dequantize_outputs(
        self._runner, self._runner(**{self._input_name: feed}))
    return predictor.PanopticPrediction.from_outputs(
        outputs, image_info=image_info, source=self.description)
