"""Masks as the product of mask features and mask embeddings."""

import contextlib
from typing import Any, Dict, Iterator

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskProjection(tf_keras.layers.Layer):
  """mask_logits[b, y, x, k] = sum_c features[b, y, x, c] * embeddings[b, k, c].

  A 1x1 "dynamic convolution" whose K kernels are the mask embeddings, in
  one of two forms of the same product that TFLite runs with different
  kernels (their latencies: docs/tflite_and_quantization.md, from
  `python -m benchmarks.mask_einsum`):

  * `fully_connected=False` (default): one einsum, a BATCH_MATMUL in TFLite,
    fast in float32 with XNNPACK, slow with TFLite's own kernels.
  * `fully_connected=True` (batch 1 only): the features as an
    [H * W, C] matrix times the embeddings, a FULLY_CONNECTED with runtime
    weights in TFLite, the fast form in int8 with either kernel set.
    `export_module` traces the int8 twin of its batch-1 TFLite signatures
    in this form.
  """

  def __init__(self, fully_connected: bool = False, **kwargs):
    """Initializes the layer.

    Args:
      fully_connected: compute in the fully connected form (class doc).
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    self.fully_connected = fully_connected

  @contextlib.contextmanager
  def fully_connected_form(self) -> Iterator[None]:
    """Calls (and traces) inside the block use the fully connected form."""
    previous = self.fully_connected
    self.fully_connected = True
    try:
      yield
    finally:
      self.fully_connected = previous

  def call(self, mask_features: tf.Tensor,
           mask_embeddings: tf.Tensor) -> tf.Tensor:
    """Computes mask logits.

    Args:
      mask_features: float [batch, height, width, channels].
      mask_embeddings: float [batch, K, channels].

    Returns:
      float [batch, height, width, K] mask logits.

    Raises:
      ValueError: the fully connected form with a batch size other than a
        static 1.
    """
    mask_embeddings = tf.cast(mask_embeddings, mask_features.dtype)
    if not self.fully_connected:
      return tf.einsum('bhwc,bkc->bhwk', mask_features, mask_embeddings)
    if mask_features.shape[0] != 1 or mask_embeddings.shape[0] != 1:
      raise ValueError(
          'MaskProjection(fully_connected=True) multiplies one image\'s '
          'features by its embeddings: it needs batch size 1, got features '
          f'{mask_features.shape} and embeddings {mask_embeddings.shape}')
    _, height, width, channels = mask_features.shape
    if None in (height, width, channels):
      _, height, width, channels = tf.unstack(tf.shape(mask_features))
    logits = tf.matmul(
        tf.reshape(mask_features, [-1, channels]), mask_embeddings[0],
        transpose_b=True)
    return tf.reshape(logits, [1, height, width, -1])

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config['fully_connected'] = self.fully_connected
    return config
