"""Runs a MaskConver SavedModel (`maskconver.serving` export).

The signature's single input decides how images are fed:

* uint8 [batch, height, width, 3] (`image_tensor`): the image as is; the
  model pre-processes and returns maps at the image resolution.
* string [batch] (`image_bytes`): the image re-encoded as PNG, so that the
  EXIF orientation applied on loading is kept.
* float32 [batch, input_height, input_width, 3] (`tflite`): pre-processed
  here like the evaluation parser; the maps (at the input size) are mapped
  back to the image with the pre-processing's image info.

If the maps of a tensor or bytes signature do not have the image size, the
model's `image_info` output maps them back.
"""

import io
import os

import numpy as np
from PIL import Image
import tensorflow as tf

from maskconver import keys
from maskconver.inference import predictor
from maskconver.inference import preprocessing

DEFAULT_SIGNATURE = 'serving_default'


def _encode_png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


class SavedModelPredictor(predictor.Predictor):
  """A `Predictor` backed by a SavedModel directory."""

  def __init__(self, path: str, signature: str = DEFAULT_SIGNATURE):
    """Loads the SavedModel.

    Args:
      path: the SavedModel directory (with saved_model.pb).
      signature: name of the serving signature.

    Raises:
      ValueError: if the directory holds no SavedModel, lacks the signature
        or the signature's input is not one of the kinds above.
    """
    if not os.path.isdir(path) or not tf.saved_model.contains_saved_model(
        path):
      raise ValueError(f'{path}: not a SavedModel directory (no '
                       'saved_model.pb or saved_model.pbtxt)')
    self._path = path
    try:
      self._loaded = tf.saved_model.load(path)
    except (OSError, tf.errors.OpError) as e:
      raise ValueError(f'{path}: cannot load the SavedModel ({e})') from e
    signatures = self._loaded.signatures
    if signature not in signatures:
      raise ValueError(f'{path}: no signature {signature!r}; it has '
                       f'{sorted(signatures)}')
    self._function = signatures[signature]
    _, input_specs = self._function.structured_input_signature
    if len(input_specs) != 1:
      raise ValueError(f'{path}: signature {signature!r} must take one input, '
                       f'it takes {sorted(input_specs)}')
    (self._input_name, spec), = input_specs.items()
    self._dtype = spec.dtype
    shape = spec.shape
    if self._dtype == tf.uint8 and shape.rank == 4:
      self._input_size = None
    elif self._dtype == tf.string and shape.rank == 1:
      self._input_size = None
    elif (self._dtype == tf.float32 and shape.rank == 4 and
          shape[1:3].is_fully_defined()):
      self._input_size = [int(shape[1]), int(shape[2])]
    else:
      raise ValueError(
          f'{path}: signature {signature!r} input {self._input_name!r} is '
          f'{self._dtype.name} {shape}; expected uint8 [batch, h, w, 3], '
          'string [batch] or float32 [batch, height, width, 3]')

  @property
  def description(self) -> str:
    return f'SavedModel {self._path}'

  @property
  def input_size(self):
    """(height, width) of a fixed-size float input, else None."""
    return self._input_size

  def predict(self, image: np.ndarray) -> predictor.PanopticPrediction:
    image = np.asarray(image)
    height, width = image.shape[:2]
    image_info = None
    if self._dtype == tf.uint8:
      feed = tf.constant(image[None])
    elif self._dtype == tf.string:
      feed = tf.constant([_encode_png(image)])
    else:
      normalized, image_info = preprocessing.preprocess_image(
          image, self._input_size)
      feed = tf.constant(normalized[None])
    outputs = {k: v.numpy() for k, v in
               self._function(**{self._input_name: feed}).items()}
    map_shape = np.shape(outputs.get(keys.CATEGORY_MASK))[-2:]
    if image_info is None and tuple(map_shape) != (height, width):
      if keys.IMAGE_INFO not in outputs:
        raise ValueError(
            f'{self.description}: maps of shape {map_shape} for a '
            f'{height}x{width} image and no {keys.IMAGE_INFO!r} output to '
            'map them back')
      image_info = np.asarray(outputs[keys.IMAGE_INFO]).reshape(4, 2)
    return predictor.PanopticPrediction.from_outputs(
        outputs, image_info=image_info, source=self.description)
