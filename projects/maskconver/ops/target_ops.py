"""Dense MaskConver targets from the compact description, on the device.

`maskconver.dataloaders.targets.describe_targets` runs in the input pipeline
and sends a slot map, heatmap ignore counts and per-slot vectors; the train
and validation steps call `dense_targets` to expand them, batched, with static
shapes, in XLA. Conventions (cells, levels, centre indices) are those of
`keys.py` and `dataloaders/targets.py`.
"""

from typing import Dict, Mapping, Sequence

import tensorflow as tf

from maskconver import keys


def draw_gaussians(cells: tf.Tensor, radii: tf.Tensor, classes: tf.Tensor,
                   mask: tf.Tensor, grid_size: Sequence[int],
                   num_classes: int) -> tf.Tensor:
  """Draws one truncated Gaussian per center, CenterNet style, batched.

  For a center in cell `(cy, cx)` with integer radius `r`, cell `(y, x)` gets
  `exp(-((y - cy)**2 + (x - cx)**2) / (2 * sigma**2))` with
  `sigma = (2 * r + 1) / 6` when `|y - cy| <= r` and `|x - cx| <= r`, else 0.
  The center cell gets exactly 1.0; `r = 0` gives a single 1.0 peak.
  Overlapping Gaussians of one class combine by maximum.

  Args:
    cells: int32 [batch, k, 2], (y, x) center cells.
    radii: int32 [batch, k], Gaussian radii in cells (>= 0).
    classes: int32 [batch, k], class channel of each center.
    mask: bool [batch, k], which centers to draw.
    grid_size: static (height, width) of the heatmap.
    num_classes: number of class channels.

  Returns:
    float32 [batch, height, width, num_classes].
  """
  height, width = grid_size
  batch = tf.shape(cells)[0]
  cells = tf.cast(cells, tf.float32)
  radii = tf.cast(radii, tf.float32)
  sigma = (2.0 * radii + 1.0) / 6.0
  denominator = (2.0 * sigma * sigma)[..., tf.newaxis]

  def profile(size, center):
    delta = (tf.range(size, dtype=tf.float32)[tf.newaxis, tf.newaxis] -
             center[..., tf.newaxis])
    inside = tf.abs(delta) <= radii[..., tf.newaxis]
    return tf.where(inside, tf.exp(-delta * delta / denominator), 0.0)

  rows = profile(height, cells[..., 0])
  cols = profile(width, cells[..., 1])
  gaussians = rows[..., :, tf.newaxis] * cols[..., tf.newaxis, :]
  # One segment per (image, class), plus one per image for undrawn slots.
  channel = tf.where(mask, tf.cast(classes, tf.int32), num_classes)
  segment = channel + (num_classes + 1) * tf.range(batch)[:, tf.newaxis]
  heatmap = tf.math.unsorted_segment_max(
      tf.reshape(gaussians, [-1, height * width]), tf.reshape(segment, [-1]),
      batch * (num_classes + 1))
  heatmap = tf.reshape(tf.maximum(heatmap, 0.0),
                       [batch, num_classes + 1, height, width])
  return tf.transpose(heatmap[:, :num_classes], [0, 2, 3, 1])


def dense_targets(labels: Mapping[str, tf.Tensor], *, num_classes: int,
                  num_thing_classes: int, min_level: int, max_level: int,
                  heatmap_ignore_fraction: float = 0.5
                  ) -> Dict[str, tf.Tensor]:
  """Expands a batch of compact labels into the dense training labels.

  Heatmap weights: a cell is 0 when more than `heatmap_ignore_fraction` of
  its pixels are ignored (coarser levels average 2x2 finer cells), except the
  cells holding a center of that level, which are always 1. Masks: slot k's
  mask is the slot map's `k + 1` pixels; mask weights are 0 on void and crowd.

  Args:
    labels: batched compact labels (`keys.SLOT_MAP`,
      `keys.HEATMAP_IGNORE_COUNT`, `keys.CLASSES`, `keys.CENTERS`,
      `keys.LEVELS`, `keys.GAUSSIAN_RADII`, `keys.NUM_INSTANCES`) with static
      spatial shapes and slot count K.
    num_classes: number of training classes.
    num_thing_classes: classes below it are things.
    min_level: finest head level.
    max_level: coarsest head level.
    heatmap_ignore_fraction: ignored-pixel share above which a cell gets
      weight 0.

  Returns:
    {CENTER_HEATMAPS, HEATMAP_WEIGHTS: {str(level): ...}, MASKS,
     MASK_WEIGHTS, CLASSES, CENTER_INDICES, IS_THING, VALID}, see keys.py.
  """
  slot_map = tf.cast(labels[keys.SLOT_MAP], tf.int32)
  ignore_count = tf.cast(labels[keys.HEATMAP_IGNORE_COUNT], tf.float32)
  classes = tf.cast(labels[keys.CLASSES], tf.int32)
  centers = tf.cast(labels[keys.CENTERS], tf.float32)
  levels = tf.cast(labels[keys.LEVELS], tf.int32)
  radii = tf.cast(labels[keys.GAUSSIAN_RADII], tf.int32)
  k = classes.shape[1]
  if k is None or None in ignore_count.shape[1:] or None in slot_map.shape[1:]:
    raise ValueError('dense_targets needs static label shapes, got classes '
                     f'{classes.shape}, ignore counts {ignore_count.shape}, '
                     f'slot map {slot_map.shape}')
  batch = tf.shape(classes)[0]
  valid = tf.range(k)[tf.newaxis] < tf.reshape(
      tf.cast(labels[keys.NUM_INSTANCES], tf.int32), [-1, 1])
  min_h, min_w = ignore_count.shape[1:3]
  image_h, image_w = min_h * 2**min_level, min_w * 2**min_level

  heatmaps, heatmap_weights = {}, {}
  center_indices = tf.zeros_like(classes)
  offset = 0
  fraction = ignore_count / float(4**min_level)
  batch_index = tf.broadcast_to(tf.range(batch)[:, tf.newaxis], [batch, k])
  for level in range(min_level, max_level + 1):
    stride = 2**level
    grid_h, grid_w = image_h // stride, image_w // stride
    cells = tf.cast(tf.floor(centers / float(stride)), tf.int32)
    cells = tf.minimum(tf.maximum(cells, 0), [grid_h - 1, grid_w - 1])
    at_level = tf.logical_and(valid, tf.equal(levels, level))
    heatmaps[str(level)] = draw_gaussians(cells, radii, classes, at_level,
                                          (grid_h, grid_w), num_classes)
    if level > min_level:
      fraction = tf.reduce_mean(
          tf.reshape(fraction, [-1, grid_h, 2, grid_w, 2]), axis=[2, 4])
    weight = tf.cast(fraction <= heatmap_ignore_fraction, tf.float32)
    indices = tf.stack([batch_index, cells[..., 0], cells[..., 1]], axis=-1)
    heatmap_weights[str(level)] = tf.tensor_scatter_nd_max(
        weight, tf.reshape(indices, [-1, 3]),
        tf.reshape(tf.cast(at_level, tf.float32), [-1]))
    center_indices = tf.where(
        at_level, offset + cells[..., 0] * grid_w + cells[..., 1],
        center_indices)
    offset += grid_h * grid_w

  slots = tf.range(1, k + 1)[tf.newaxis, :, tf.newaxis, tf.newaxis]
  masks = tf.cast(tf.equal(slot_map[:, tf.newaxis], slots), tf.uint8)
  return {
      keys.CENTER_HEATMAPS: heatmaps,
      keys.HEATMAP_WEIGHTS: heatmap_weights,
      keys.MASKS: masks,
      keys.MASK_WEIGHTS: tf.cast(tf.not_equal(slot_map, k + 1), tf.float32),
      keys.CLASSES: classes,
      keys.CENTER_INDICES: center_indices,
      keys.IS_THING: tf.logical_and(valid, classes < num_thing_classes),
      keys.VALID: tf.cast(valid, tf.float32),
  }
