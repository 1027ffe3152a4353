"""The evaluation preprocessing of the parser, for fixed-size models.

`maskconver.dataloaders.parser` evaluates on `normalize_image` followed by
`resize_and_crop_image(image, output_size, output_size)`: the image is scaled
keeping its aspect ratio to fit the input, then padded at the bottom and right
with zeros (after normalization). Models with a fixed float32 input (TFLite,
or a checkpoint) need exactly that; `undo_preprocessing` maps their outputs
back to the original image.

Here the resize comes before the normalization, which is the same up to
float rounding (bilinear weights sum to 1, normalization is affine) but never
builds a float copy of a full-size photo.
"""

from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

from official.vision.ops import preprocess_ops

from maskconver.evaluation import prediction_writer


def preprocess_image(image: np.ndarray,
                     input_size: Sequence[int]) -> Tuple[np.ndarray,
                                                         np.ndarray]:
  """Resizes, pads and normalizes an image as the parser's eval path.

  Args:
    image: uint8 [height, width, 3] RGB.
    input_size: (height, width) of the model input.

  Returns:
    (float32 [input_height, input_width, 3] normalized image, zero padded;
     float32 [4, 2] image info (keys.IMAGE_INFO): original [h, w], scaled
     content [h, w], [y_scale, x_scale], [y_offset, x_offset]).

  Raises:
    ValueError: if the image is not uint8 [h, w, 3] or so elongated that a
      side scales to zero pixels.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f'image must be uint8 [height, width, 3], got '
                     f'{image.dtype} {image.shape}')
  height, width = (int(s) for s in input_size)
  scale = min(height / image.shape[0], width / image.shape[1])
  if min(round(image.shape[0] * scale), round(image.shape[1] * scale)) < 1:
    raise ValueError(
        f'image of {image.shape[0]}x{image.shape[1]} pixels is too elongated '
        f'for the {height}x{width} model input: a side would scale to 0')
  scaled, image_info = preprocess_ops.resize_and_crop_image(
      tf.convert_to_tensor(image), [height, width], [height, width])
  image_info = image_info.numpy().astype(np.float32)
  scaled_h, scaled_w = scaled_size(image_info)
  # Row 1 holds the content size, as keys.IMAGE_INFO and the parser have it
  # (`resize_and_crop_image` puts the desired output size there).
  image_info[1] = scaled_h, scaled_w
  normalized = preprocess_ops.normalize_scaled_float_image(
      scaled[:scaled_h, :scaled_w] / 255.0)
  padded = np.zeros((height, width, 3), np.float32)
  padded[:scaled_h, :scaled_w] = normalized.numpy()
  return padded, image_info


def scaled_size(image_info: np.ndarray) -> np.ndarray:
  """int64 [2], (height, width) of the image inside the model input.

  Computed from the scale, as `resize_and_crop_image` rounds it: row 1 is
  the content size in keys.IMAGE_INFO, but the desired (input) size in the
  image info of Model Garden's `resize_and_crop_image` (and of exported
  models that use it); both conventions work here.
  """
  info = np.asarray(image_info, np.float64)
  return np.round(info[0] * info[2]).astype(np.int64)


def undo_preprocessing(label_map: np.ndarray, image_info: np.ndarray,
                       fill_value: int = 0) -> np.ndarray:
  """Maps an int [input_h, input_w] output back to the original image.

  Crops the padding and resizes with nearest neighbour, the inverse of
  `preprocess_image` for label maps.

  Args:
    label_map: int [input_height, input_width].
    image_info: float [4, 2] image info of `preprocess_image` or of an
      exported model (row 1 may be the content or the input size).
    fill_value: value of pixels the map does not cover.

  Returns:
    int [original height, original width].
  """
  # `resize_to_original` reads row 1 as the content size: make sure it is.
  info = np.array(image_info, np.float64).reshape(4, 2)
  info[1] = scaled_size(info)
  return prediction_writer.resize_to_original(label_map, image_info=info,
                                              fill_value=fill_value)


def denormalize_image(image: np.ndarray) -> np.ndarray:
  """Inverse of the normalization: float [..., 3] -> uint8 [..., 3] RGB."""
  mean = np.asarray(preprocess_ops.MEAN_NORM, np.float32)
  stddev = np.asarray(preprocess_ops.STDDEV_NORM, np.float32)
  pixels = (np.asarray(image, np.float32) * stddev + mean) * 255.0
  return np.clip(np.round(pixels), 0, 255).astype(np.uint8)
