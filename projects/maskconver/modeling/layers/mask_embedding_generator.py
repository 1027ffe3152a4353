"""Mask embeddings from selected centers: gather, add class embedding, MLP."""

from typing import Any, Dict, Mapping

import tensorflow as tf
import tf_keras

from maskconver.modeling.layers import level_utils
from maskconver.modeling.layers import mask_embedding_mlp
from maskconver.modeling.layers import initializers


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskEmbeddingGenerator(tf_keras.layers.Layer):
  """Turns K (center, class) pairs into K mask embeddings.

  The center embedding at each center's cell is gathered; the learned
  embedding of the center's class is added (it separates centers of different
  classes that fall on the same cell, e.g. a person and the wall behind them);
  a two-layer MLP maps the sum to the mask embedding.
  """

  def __init__(self,
               num_classes: int,
               embedding_size: int,
               min_level: int,
               max_level: int,
               use_class_embedding: bool = True,
               mlp_hidden_size: int = 0,
               **kwargs):
    """Initializes the generator.

    Args:
      num_classes: number of classes (rows of the class embedding table).
      embedding_size: size of center, class and mask embeddings.
      min_level: first level of the center embeddings.
      max_level: last level of the center embeddings.
      use_class_embedding: add the class embedding (the paper's default);
        False for the ablation.
      mlp_hidden_size: hidden width of the MLP; 0 means embedding_size.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    self.num_classes = num_classes
    self.embedding_size = embedding_size
    self.min_level = min_level
    self.max_level = max_level
    self.use_class_embedding = use_class_embedding
    self.mlp_hidden_size = mlp_hidden_size
    self._class_embedding = None
    if use_class_embedding:
      self._class_embedding = tf_keras.layers.Embedding(
          num_classes, embedding_size,
          embeddings_initializer=initializers.truncated_normal(),
          name='class_embedding')
    self._mlp = mask_embedding_mlp.MaskEmbeddingMLP(
        mlp_hidden_size or embedding_size, embedding_size, name='mlp')

  def call(self, center_embeddings: Mapping[str, tf.Tensor],
           center_indices: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """Computes mask embeddings.

    Args:
      center_embeddings: {str(level): float [batch, h_l, w_l, embedding_size]}.
      center_indices: int32 [batch, K], flat cell indices (keys.py).
      classes: int32 [batch, K], class of each center.

    Returns:
      float [batch, K, embedding_size].
    """
    flat = level_utils.flatten_levels(center_embeddings, self.min_level,
                                      self.max_level)
    x = tf.gather(flat, tf.cast(center_indices, tf.int32), batch_dims=1)
    return self.embed(x, classes)

  def embed(self, embeddings: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """Mask embeddings of given center (or region-pooled) embeddings.

    Args:
      embeddings: float [batch, K, embedding_size].
      classes: int32 [batch, K], class of each.

    Returns:
      float [batch, K, embedding_size]: class embedding added, then the MLP.
    """
    x = embeddings
    if self._class_embedding is not None:
      x = x + tf.cast(self._class_embedding(tf.cast(classes, tf.int32)),
                      x.dtype)
    return self._mlp(x)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({
        'num_classes': self.num_classes,
        'embedding_size': self.embedding_size,
        'min_level': self.min_level,
        'max_level': self.max_level,
        'use_class_embedding': self.use_class_embedding,
        'mlp_hidden_size': self.mlp_hidden_size,
    })
    return config
