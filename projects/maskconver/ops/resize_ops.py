"""Spatial resizes that compile with XLA, gradients included, in any dtype.

`tf.image.resize` has two problems inside an XLA-compiled train step:
nearest-neighbour resizing has no XLA gradient kernel
(`ResizeNearestNeighborGrad`), and bilinear resizing of bfloat16 returns
float32 whose gradient mixes float32 and bfloat16 in one sum, which XLA
rejects. These ops give the same values as `tf.image.resize` (half-pixel
centres, no antialiasing) and differentiate everywhere.
"""

from typing import Sequence, Union

import tensorflow as tf

Size = Union[Sequence[int], tf.Tensor]


def _static_or_dynamic(size: Size):
  """[height, width] as Python ints when static, else a tensor's entries."""
  if isinstance(size, (list, tuple)):
    return [size[0], size[1]]
  static = tf.get_static_value(size)
  if static is not None:
    return [int(static[0]), int(static[1])]
  return [size[0], size[1]]


def _nearest_source_index(in_size, out_size) -> tf.Tensor:
  """Source index of each output index, as TF's half-pixel nearest resize.

  `floor((i + 0.5) * in / out)` in float32, clipped to `in - 1`.
  """
  scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
  position = (tf.cast(tf.range(out_size), tf.float32) + 0.5) * scale
  index = tf.cast(tf.floor(position), tf.int32)
  return tf.minimum(index, tf.cast(in_size, tf.int32) - 1)


def _is_exact_upsampling(in_size, out_size) -> int:
  """The integer factor `out / in` when both are static and it divides."""
  if isinstance(in_size, int) and isinstance(out_size, int):
    if in_size > 0 and out_size % in_size == 0:
      return out_size // in_size
  return 0


def nearest_resize(images: tf.Tensor, size: Size) -> tf.Tensor:
  """Nearest-neighbour resize, equal to `tf.image.resize(..., 'nearest')`.

  An integer upsampling factor on both axes (the UNet's 2x) is a broadcast
  and reshape, the cheapest form on a TPU; other sizes gather rows and
  columns, whose gradient (a segment sum) XLA compiles.

  Args:
    images: [batch, height, width, channels], any dtype.
    size: output (height, width), ints or an int32 tensor.

  Returns:
    [batch, out_height, out_width, channels], the dtype of `images`.
  """
  out_h, out_w = _static_or_dynamic(size)
  in_h, in_w = images.shape[1], images.shape[2]
  factor_h = _is_exact_upsampling(in_h, out_h)
  factor_w = _is_exact_upsampling(in_w, out_w)
  if factor_h and factor_w:
    if factor_h == factor_w == 1:
      return images
    batch = tf.shape(images)[0]
    channels = images.shape[3] if images.shape[3] is not None else tf.shape(
        images)[3]
    # Reshape (not new-axis slicing, which TFLite cannot convert) + broadcast.
    expanded = tf.reshape(images, [batch, in_h, 1, in_w, 1, channels])
    expanded = tf.broadcast_to(
        expanded, [batch, in_h, factor_h, in_w, factor_w, channels])
    return tf.reshape(expanded, [batch, out_h, out_w, channels])
  shape = tf.shape(images)
  rows = _nearest_source_index(in_h if in_h is not None else shape[1], out_h)
  cols = _nearest_source_index(in_w if in_w is not None else shape[2], out_w)
  return tf.gather(tf.gather(images, rows, axis=1), cols, axis=2)


def bilinear_resize(images: tf.Tensor, size: Size) -> tf.Tensor:
  """Bilinear resize, equal to `tf.image.resize(..., 'bilinear')`.

  Computed in float32 and cast back, so that the forward pass and its
  gradient each keep one dtype (XLA refuses mixed-precision sums).

  Args:
    images: [batch, height, width, channels], floating.
    size: output (height, width), ints or an int32 tensor.

  Returns:
    [batch, out_height, out_width, channels], the dtype of `images`.
  """
  out_h, out_w = _static_or_dynamic(size)
  if images.shape[1] == out_h and images.shape[2] == out_w and isinstance(
      out_h, int):
    return images
  resized = tf.image.resize(tf.cast(images, tf.float32), [out_h, out_w],
                            method='bilinear')
  return tf.cast(resized, images.dtype)
