"""Image normalization inside the step, on the device."""

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
