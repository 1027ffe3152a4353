"""The two-layer MLP that turns a center's embedding into a mask kernel."""

from typing import Any, Dict

import tensorflow as tf
import tf_keras
from maskconver.modeling.layers import initializers




@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskEmbeddingMLP(tf_keras.layers.Layer):
  """dense(hidden) -> GELU -> dense(output): the mask embedding."""

  def __init__(self, hidden_size: int, output_size: int, **kwargs):
    """Initializes the MLP.

    Args:
      hidden_size: width of the hidden layer.
      output_size: size of the mask embedding (C_embd of the mask features).
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.output_size = output_size
    self._hidden = tf_keras.layers.Dense(
        hidden_size, kernel_initializer=initializers.truncated_normal(), name='hidden')
    self._output = tf_keras.layers.Dense(
        output_size, kernel_initializer=initializers.truncated_normal(), name='output')

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    """Maps float [batch, K, channels] to float [batch, K, output_size]."""
    return self._output(tf.nn.gelu(self._hidden(inputs)))

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({'hidden_size': self.hidden_size,
                   'output_size': self.output_size})
    return config
