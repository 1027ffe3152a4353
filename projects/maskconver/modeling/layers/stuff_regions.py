"""Stuff as regions (the paper's Table 7, Panoptic FCN's way).

Things keep their centers. Each stuff class gets one embedding: the center
embeddings of `min_level` averaged over the class's region, weighted by a
region map (predicted probabilities at inference, ground-truth masks pooled
to the level in training). The pooled embedding then goes through the class
embedding and MLP like a center embedding.
"""

from typing import Any, Dict, Tuple

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package='maskconver')
class StuffRegionPooling(tf_keras.layers.Layer):
  """emb[b, s] = sum_hw R[b, h, w, s] E[b, h, w] / (sum_hw R[b, h, w, s] + eps).

  A weighted average of the embeddings over each region; an empty region
  gives a zero embedding.
  """

  def __init__(self, epsilon: float = 1e-6, **kwargs):
    """Initializes the layer.

    Args:
      epsilon: added to each region's weight sum.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    self.epsilon = epsilon

  def call(self, regions: tf.Tensor, embeddings: tf.Tensor) -> tf.Tensor:
    """Pools the embeddings.

    Args:
      regions: float [batch, h, w, S], non-negative region weights.
      embeddings: float [batch, h, w, C].

    Returns:
      float [batch, S, C], the dtype of `embeddings`.
    """
    regions = tf.cast(regions, tf.float32)
    total = tf.einsum('bhws,bhwc->bsc', regions,
                      tf.cast(embeddings, tf.float32))
    weight = tf.reduce_sum(regions, axis=[1, 2])[..., tf.newaxis]
    return tf.cast(total / (weight + self.epsilon), embeddings.dtype)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config['epsilon'] = self.epsilon
    return config


def masks_to_level(masks: tf.Tensor, factor: int) -> tf.Tensor:
  """Per-target masks at the mask stride, averaged down to a level's grid.

  Args:
    masks: [batch, N, mask_h, mask_w], 0 / 1 (any real or integer dtype).
    factor: level stride / mask stride, e.g. 8 / 4 = 2 for L3.

  Returns:
    float32 [batch, ceil(mask_h / factor), ceil(mask_w / factor), N]: the
    share of each cell covered by each mask ('SAME' average pooling: a
    border cell averages the mask pixels it has).
  """
  masks = tf.transpose(tf.cast(masks, tf.float32), [0, 2, 3, 1])
  if factor == 1:
    return masks
  return tf.nn.avg_pool2d(masks, factor, factor, 'SAME')


def stuff_region_targets(masks: tf.Tensor, classes: tf.Tensor,
                         is_thing: tf.Tensor, valid: tf.Tensor,
                         mask_weights: tf.Tensor, num_thing_classes: int,
                         num_stuff_classes: int,
                         factor: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """Targets of the stuff region head, from the per-target masks.

  Args:
    masks: [batch, N, mask_h, mask_w] 0 / 1 target masks (stride 4).
    classes: int [batch, N] training class ids.
    is_thing: bool [batch, N].
    valid: [batch, N], 1 for real targets.
    mask_weights: float [batch, mask_h, mask_w], 0 on void / crowd / padding.
    num_thing_classes: first stuff class id.
    num_stuff_classes: S.
    factor: region level stride / mask stride (2 for L3 and stride-4 masks).

  Returns:
    (targets float32 [batch, h, w, S]: share of each cell covered by each
    stuff class; weights float32 [batch, h, w]: share of each cell that is
    neither void nor padding).
  """
  regions = masks_to_level(masks, factor)  # [b, h, w, N]
  is_stuff = tf.logical_and(tf.logical_not(tf.cast(is_thing, tf.bool)),
                            tf.cast(valid, tf.float32) > 0)
  stuff_index = tf.cast(classes, tf.int32) - num_thing_classes
  one_hot = tf.one_hot(tf.where(is_stuff, stuff_index, -1),
                       num_stuff_classes, dtype=tf.float32)  # [b, N, S]
  targets = tf.einsum('bhwn,bns->bhws', regions, one_hot)
  weights = masks_to_level(tf.cast(mask_weights, tf.float32)[:, tf.newaxis],
                           factor)[..., 0]
  return tf.minimum(targets, 1.0), weights
