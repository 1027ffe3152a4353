"""Scale jitter as index windows: only the output pixels are ever read.

Model Garden's `preprocess_ops.resize_and_crop_image` resizes the whole image
to its random scale (up to 2.9 x 1280 = 3712 px square in the R50 recipe) and
then crops the output window. Here:

* `scale_and_crop_info` computes its `image_info` (same random draws) without
  resizing anything;
* `Window` says, for every output row (column), which source row (column) its
  nearest-neighbour sample reads and whether it lies inside the scaled image
  (outside is padding). Segment maps are resampled through it, and
  `targets.describe_targets` reads its statistics through it without
  building the output map.

The bilinear counterpart for images, `maskconver.ops.image_ops.resize_window`,
runs in the train and validation steps on the device.
"""

import math
from typing import NamedTuple, Optional, Sequence

import tensorflow as tf


class Window(NamedTuple):
  """Output pixel `(r, c)` reads source pixel `(rows[r], cols[c])`.

  Where `row_valid[r]` or `col_valid[c]` is False the output pixel is padding.
  `rows` and `cols` are int32, non-decreasing over their valid entries and
  always in the source's range (padding entries repeat a valid index).
  """
  rows: tf.Tensor
  row_valid: tf.Tensor
  cols: tf.Tensor
  col_valid: tf.Tensor


def identity_window(height: int, width: int) -> Window:
  """The window that reads every pixel of a `height` x `width` map."""
  return Window(tf.range(height), tf.ones([height], tf.bool),
                tf.range(width), tf.ones([width], tf.bool))


def scale_and_crop_info(image: tf.Tensor, output_size: Sequence[int],
                        scale_min: float, scale_max: float,
                        seed: Optional[int] = 1) -> tf.Tensor:
  """The `image_info` of `resize_and_crop_image`, without the resize.

  The operations, in order, are those `preprocess_ops.resize_and_crop_image`
  runs before its resize (with `desired_size = padded_size = output_size`
  and the aspect ratio kept): the same random draws, and under a global seed
  the same op seeds when it is called where that function was.

  Args:
    image: [height, width, channels], the source (only its shape is read).
    output_size: [height, width] of the output.
    scale_min: smallest random scale of `output_size`.
    scale_max: largest random scale.
    seed: op seed of the two random draws; 1 is `resize_and_crop_image`'s
      default, so both give the same draws under a global seed.

  Returns:
    float32 [4, 2]: [[source size], [output size], [y scale, x scale],
    [y offset, x offset]], as `resize_and_crop_image` returns it (the scaled
    size is `round(source size * scale)`).
  """
  with tf.name_scope('resize_and_crop_image'):
    image_size = tf.cast(tf.shape(image)[0:2], tf.float32)
    jitter = not (math.isclose(scale_min, 1.0) and
                  math.isclose(scale_max, 1.0))
    if jitter:
      random_scale = tf.random.uniform([], scale_min, scale_max, seed=seed)
      scaled_size = tf.round(random_scale * tf.cast(output_size, tf.float32))
    else:
      scaled_size = tf.cast(output_size, tf.float32)
    scale = tf.minimum(scaled_size[0] / image_size[0],
                       scaled_size[1] / image_size[1])
    scaled_size = tf.round(image_size * scale)
    image_scale = scaled_size / image_size
    if jitter:
      max_offset = scaled_size - tf.cast(output_size, tf.float32)
      max_offset = tf.where(tf.less(max_offset, 0),
                            tf.zeros_like(max_offset), max_offset)
      offset = tf.cast(max_offset * tf.random.uniform([2], 0, 1, seed=seed),
                       tf.int32)
    else:
      offset = tf.zeros((2,), tf.int32)
    return tf.stack([image_size, tf.cast(output_size, tf.float32),
                     image_scale, tf.cast(offset, tf.float32)])


def _positions(image_info: tf.Tensor, output_size: Sequence[int], axis: int):
  """Positions in the scaled image of the output's rows (0) or columns (1),
  the source size and the scaled size along `axis`."""
  in_size = tf.cast(image_info[0, axis], tf.int32)
  scaled = tf.cast(tf.round(image_info[0, axis] * image_info[2, axis]),
                   tf.int32)
  offset = tf.cast(image_info[3, axis], tf.int32)
  position = tf.range(output_size[axis]) + offset
  return position, in_size, scaled


def nearest_window(image_info: tf.Tensor,
                   output_size: Sequence[int]) -> Window:
  """The window of `tf.image.resize(..., NEAREST_NEIGHBOR)` + crop + pad.

  The source index of position `p` in the scaled image is
  `floor((p + 0.5) * in / scaled)` (half-pixel centres, as TensorFlow's
  nearest-neighbour resize), clipped to the source.
  """
  def axis_indices(axis):
    position, in_size, scaled = _positions(image_info, output_size, axis)
    ratio = tf.cast(in_size, tf.float32) / tf.cast(scaled, tf.float32)
    index = tf.cast(tf.floor((tf.cast(position, tf.float32) + 0.5) * ratio),
                    tf.int32)
    valid = position < scaled
    index = tf.minimum(index, in_size - 1)
    # Padding entries repeat the last valid index, keeping `index` in range
    # and non-decreasing.
    last = tf.reduce_max(tf.where(valid, index, 0))
    return tf.where(valid, index, last), valid

  rows, row_valid = axis_indices(0)
  cols, col_valid = axis_indices(1)
  return Window(rows, row_valid, cols, col_valid)


def resample(source: tf.Tensor, window: Window, padding_value) -> tf.Tensor:
  """Output map of `source` [h, w, ...] through `window`; padding elsewhere."""
  output = tf.gather(tf.gather(source, window.rows), window.cols, axis=1)
  inside = tf.logical_and(window.row_valid[:, tf.newaxis],
                          window.col_valid[tf.newaxis])
  for _ in range(len(output.shape) - 2):
    inside = inside[..., tf.newaxis]
  return tf.where(inside, output, tf.cast(padding_value, output.dtype))
