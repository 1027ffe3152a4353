"""Top-K center selection from the center heatmaps."""

from typing import Any, Dict, Mapping

import tensorflow as tf
import tf_keras

from maskconver.modeling.layers import level_utils
from maskconver.modeling.layers import score_activation


def _shift(x: tf.Tensor, dy: int, dx: int, fill: float) -> tf.Tensor:
  """out[y, x] = x[y + dy, x + dx], `fill` outside the map.

  Args:
    x: [batch, height, width, channels].
    dy: row offset (any sign).
    dx: column offset (any sign).
    fill: value of cells whose source lies outside the map.

  Returns:
    Same shape as `x` (static shapes kept: pad then slice).
  """
  pad_y, pad_x = abs(dy), abs(dx)
  padded = tf.pad(x, [[0, 0], [pad_y, pad_y], [pad_x, pad_x], [0, 0]],
                  constant_values=fill)
  height, width = tf.shape(x)[1], tf.shape(x)[2]
  return padded[:, pad_y + dy:pad_y + dy + height,
                pad_x + dx:pad_x + dx + width, :]


def local_peaks(logits: tf.Tensor, kernel_size: int) -> tf.Tensor:
  """Cells that are the first maximum of their window, per channel.

  A cell is kept when no cell of its `kernel_size` x `kernel_size` window
  is larger and no earlier cell (row-major order: the rows above it in the
  window, and the cells left of it on its row) is equal. This is the max-pool
  NMS of CenterNet with ties broken: a plateau of equal values (a confident
  3x3 patch in bfloat16, say) keeps one cell, its first one, instead of all.

  Args:
    logits: float32 [batch, height, width, channels].
    kernel_size: odd window size; 1 keeps every cell.

  Returns:
    bool, same shape: True at the kept cells.
  """
  if kernel_size <= 1:
    return tf.ones_like(logits, dtype=tf.bool)
  is_max = tf.equal(logits, tf.nn.max_pool2d(logits, kernel_size, 1, 'SAME'))
  radius = kernel_size // 2
  earlier = [(dy, dx) for dy in range(-radius, 1)
             for dx in range(-radius, radius + 1) if dy < 0 or dx < 0]
  lowest = logits.dtype.min
  earlier_max = _shift(logits, *earlier[0], lowest)
  for dy, dx in earlier[1:]:
    earlier_max = tf.maximum(earlier_max, _shift(logits, dy, dx, lowest))
  return tf.logical_and(is_max, logits > earlier_max)


@tf_keras.utils.register_keras_serializable(package='maskconver')
class CenterSelector(tf_keras.layers.Layer):
  """Selects the K highest-scoring (cell, class) centers over all levels.

  Peaks and ranking use the heatmap logits, and the activation only maps the
  selected logits to scores. Both activations are monotonic, so this ranks as
  the scores would, except where the scores tie and the logits do not:
  hard-sigmoid is exactly 1.0 for every logit >= 3 (and sigmoid rounds to 1.0
  in float32 above ~17), so a max-pool NMS on scores kept every cell of a
  confident patch and one object could fill all K slots. A cell keeps a
  class when it is the first maximum of its `nms_kernel_size` window of that
  class's logits (see `local_peaks`); top-K then runs jointly over all
  levels, cells and classes. Suppressed cells score 0 and rank last.
  """

  def __init__(self,
               num_instances: int,
               min_level: int,
               max_level: int,
               activation: str = 'sigmoid',
               nms_kernel_size: int = 3,
               **kwargs):
    """Initializes the selector.

    Args:
      num_instances: K, the number of centers selected per image.
      min_level: first heatmap level.
      max_level: last heatmap level.
      activation: 'sigmoid' or 'hard_sigmoid' mapping logits to scores.
      nms_kernel_size: odd NMS window; 1 disables NMS.
      **kwargs: passed to the Layer.

    Raises:
      ValueError: unknown activation or even / non-positive window.
    """
    super().__init__(**kwargs)
    if activation not in score_activation.ACTIVATIONS:
      raise ValueError(f'activation must be one of '
                       f'{score_activation.ACTIVATIONS}, got {activation!r}')
    if nms_kernel_size < 1 or nms_kernel_size % 2 == 0:
      raise ValueError(f'nms_kernel_size must be a positive odd number, got '
                       f'{nms_kernel_size}')
    self.num_instances = num_instances
    self.min_level = min_level
    self.max_level = max_level
    self.activation = activation
    self.nms_kernel_size = nms_kernel_size

  def call(self, heatmap_logits: Mapping[str, tf.Tensor]) -> Dict[str,
                                                                   tf.Tensor]:
    """Selects centers.

    Args:
      heatmap_logits: {str(level): float [batch, h_l, w_l, num_classes]}.

    Returns:
      'scores': float32 [batch, K], activated logits, in descending order
        (0 for suppressed cells, when fewer than K peaks exist);
      'classes': int32 [batch, K], class of each center;
      'center_indices': int32 [batch, K], flat cell index (keys.py).
    """
    lowest = tf.float32.min
    peaks = {}
    for level in range(self.min_level, self.max_level + 1):
      logits = tf.cast(heatmap_logits[str(level)], tf.float32)
      keep = local_peaks(logits, self.nms_kernel_size)
      peaks[str(level)] = tf.where(keep, logits, lowest)
    flat = level_utils.flatten_levels(peaks, self.min_level, self.max_level)
    num_classes = flat.shape[-1]
    flat = tf.reshape(flat, [tf.shape(flat)[0], -1])
    top_logits, top_indices = tf.math.top_k(flat, k=self.num_instances)
    scores = tf.where(
        top_logits > lowest,
        score_activation.score_activation(top_logits, self.activation), 0.0)
    return {
        'scores': scores,
        'classes': top_indices % num_classes,
        'center_indices': top_indices // num_classes,
    }

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({
        'num_instances': self.num_instances,
        'min_level': self.min_level,
        'max_level': self.max_level,
        'activation': self.activation,
        'nms_kernel_size': self.nms_kernel_size,
    })
    return config
