"""Image normalization and the scale-jitter resize of the steps (on device)."""

import tensorflow as tf

from official.vision.ops import preprocess_ops

# Model Garden's ImageNet mean and standard deviation, in 0..255 pixels.
MEAN_RGB = tuple(preprocess_ops.MEAN_RGB)
STDDEV_RGB = tuple(preprocess_ops.STDDEV_RGB)
# The mean pixel rounded to uint8: the padding value of parsed images, which
# normalizes to (almost) 0 as Model Garden's float padding does.
MEAN_PIXEL_UINT8 = tuple(int(round(m)) for m in MEAN_RGB)


def normalize_images(images: tf.Tensor,
                     dtype: tf.DType = tf.float32) -> tf.Tensor:
  """`(images - mean) / stddev`, as `preprocess_ops.normalize_image`.

  Args:
    images: uint8 (or float in 0..255) [..., 3] RGB images.
    dtype: dtype of the result.

  Returns:
    `dtype` [..., 3], normalized; computed in float32.
  """
  images = tf.cast(images, tf.float32)
  normalized = (images - tf.constant(MEAN_RGB)) / tf.constant(STDDEV_RGB)
  return tf.cast(normalized, dtype)


def _bilinear_weights(image_info: tf.Tensor, output_size: int, axis: int):
  """Per example and output position along `axis`: the lower and upper
  source index, the lerp weight and whether the position is inside the
  scaled image, as TensorFlow's `ResizeBilinear` (half-pixel centres)
  computes them for the scaled image."""
  in_size = tf.cast(image_info[:, 0, axis], tf.int32)
  scaled = tf.cast(tf.round(image_info[:, 0, axis] * image_info[:, 2, axis]),
                   tf.int32)
  offset = tf.cast(image_info[:, 3, axis], tf.int32)
  position = tf.range(output_size)[tf.newaxis] + offset[:, tf.newaxis]
  scale = tf.cast(in_size, tf.float32) / tf.cast(scaled, tf.float32)
  source = (tf.cast(position, tf.float32) + 0.5) * scale[:, tf.newaxis] - 0.5
  floor = tf.floor(source)
  last = (in_size - 1)[:, tf.newaxis]
  lower = tf.minimum(tf.maximum(tf.cast(floor, tf.int32), 0), last)
  upper = tf.minimum(tf.cast(tf.math.ceil(source), tf.int32), last)
  return lower, upper, source - floor, position < scaled[:, tf.newaxis]


def resize_window(images: tf.Tensor, image_info: tf.Tensor,
                  output_size) -> tf.Tensor:
  """The parser's scale jitter (resize, crop, pad) of source images.

  Equals the host's `preprocess_ops.resize_and_crop_image` of the
  mean-subtracted source followed by adding the mean back and rounding to
  uint8 (the padding becomes the mean pixel), for the window that
  `image_info` describes: the same interpolation weights and operation
  order as TensorFlow's `ResizeBilinear` kernel (columns, then rows), but
  only output pixels are computed. Static shapes; runs under XLA.

  Args:
    images: uint8 [batch, padded_height, padded_width, 3], each source image
      in the top-left corner (`parser.source_padded_size`).
    image_info: float32 [batch, 4, 2], the parser's `keys.RESIZE_INFO`
      (`resize_and_crop_image`'s image_info of each source).
    output_size: [height, width] of the result.

  Returns:
    uint8 [batch, height, width, 3].
  """
  height, width = int(output_size[0]), int(output_size[1])
  mean = tf.constant(MEAN_RGB, tf.float32)
  shifted = tf.cast(images, tf.float32) - mean
  y_lower, y_upper, y_lerp, y_valid = _bilinear_weights(image_info, height, 0)
  x_lower, x_upper, x_lerp, x_valid = _bilinear_weights(image_info, width, 1)
  left = tf.gather(shifted, x_lower, axis=2, batch_dims=1)
  right = tf.gather(shifted, x_upper, axis=2, batch_dims=1)
  across = left + (right - left) * x_lerp[:, tf.newaxis, :, tf.newaxis]
  top = tf.gather(across, y_lower, axis=1, batch_dims=1)
  bottom = tf.gather(across, y_upper, axis=1, batch_dims=1)
  output = top + (bottom - top) * y_lerp[:, :, tf.newaxis, tf.newaxis]
  inside = tf.logical_and(y_valid[:, :, tf.newaxis], x_valid[:, tf.newaxis])
  output = tf.where(inside[..., tf.newaxis], output, 0.0)
  # A bilinear sample of uint8 values lies in [0, 255] up to rounding far
  # below 0.5, so rounding needs no clip.
  return tf.cast(tf.round(output + mean), tf.uint8)
