"""Top-K center selection from the center heatmaps."""

from typing import Any, Dict, Mapping

import tensorflow as tf
import tf_keras

from maskconver.modeling.layers import level_utils
from maskconver.modeling.layers import score_activation


@tf_keras.utils.register_keras_serializable(package='maskconver')
class CenterSelector(tf_keras.layers.Layer):
  """Selects the K highest-scoring (cell, class) centers over all levels.

  Scores are the activated heatmap logits; a cell keeps its score for a class
  only where it equals the `nms_kernel_size` x `nms_kernel_size` max-pool of
  that class's map (max-pool NMS, as in CenterNet), else it scores 0. Top-K
  then runs jointly over all levels, cells and classes.
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
      activation: 'sigmoid' or 'hard_sigmoid' applied to the logits.
      nms_kernel_size: max-pool window of the NMS; 1 disables NMS.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    if activation not in score_activation.ACTIVATIONS:
      raise ValueError(f'activation must be one of '
                       f'{score_activation.ACTIVATIONS}, got {activation!r}')
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
      'scores': float32 [batch, K], in descending order;
      'classes': int32 [batch, K], class of each center;
      'center_indices': int32 [batch, K], flat cell index (keys.py).
    """
    peaks = {}
    for level in range(self.min_level, self.max_level + 1):
      scores = score_activation.score_activation(
          tf.cast(heatmap_logits[str(level)], tf.float32), self.activation)
      if self.nms_kernel_size > 1:
        pooled = tf.nn.max_pool2d(scores, self.nms_kernel_size, 1, 'SAME')
        scores = scores * tf.cast(tf.equal(scores, pooled), scores.dtype)
      peaks[str(level)] = scores
    flat = level_utils.flatten_levels(peaks, self.min_level, self.max_level)
    num_classes = flat.shape[-1]
    flat = tf.reshape(flat, [tf.shape(flat)[0], -1])
    top_scores, top_indices = tf.math.top_k(flat, k=self.num_instances)
    return {
        'scores': top_scores,
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
