"""Masks as the product of mask features and mask embeddings."""

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskProjection(tf_keras.layers.Layer):
  """mask_logits[b, y, x, k] = sum_c features[b, y, x, c] * embeddings[b, k, c].

  A 1x1 "dynamic convolution" whose K kernels are the mask embeddings.
  """

  def call(self, mask_features: tf.Tensor,
           mask_embeddings: tf.Tensor) -> tf.Tensor:
    """Computes mask logits.

    Args:
      mask_features: float [batch, height, width, channels].
      mask_embeddings: float [batch, K, channels].

    Returns:
      float [batch, height, width, K] mask logits.
    """
    mask_embeddings = tf.cast(mask_embeddings, mask_features.dtype)
    return tf.einsum('bhwc,bkc->bhwk', mask_features, mask_embeddings)
