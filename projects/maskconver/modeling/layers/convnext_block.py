"""ConvNeXt block, optionally with squeeze-and-excitation (ConvNeXt-SE)."""

from typing import Any, Dict

import tensorflow as tf
import tf_keras

from official.vision.modeling.layers import nn_layers

from maskconver.modeling.layers import initializers




@tf_keras.utils.register_keras_serializable(package='maskconver')
class ConvNeXtBlock(tf_keras.layers.Layer):
  """ConvNeXt block (Liu et al. 2022), the building block of ConvNeXt-UNet.

  x + drop_path(gamma * pw2(SE(gelu(pw1(LN(dw7x7(x))))))): a 7x7 depthwise
  conv, LayerNorm, a 1x1 conv expanding the channels `expansion` times, GELU,
  an optional squeeze-and-excitation on the expanded channels (MaskConver's
  ConvNeXt-SE), a 1x1 conv back to `filters`, a learned per-channel layer
  scale and a residual connection. Input and output channels are equal.
  """

  def __init__(self,
               filters: int,
               kernel_size: int = 7,
               expansion: int = 4,
               se_ratio: float = 0.0,
               layer_scale_init_value: float = 1e-6,
               drop_path_rate: float = 0.0,
               **kwargs):
    """Initializes the block.

    Args:
      filters: input and output channels.
      kernel_size: depthwise kernel size (7 in ConvNeXt).
      expansion: width multiplier of the inner 1x1 convs.
      se_ratio: squeeze ratio of the SE layer relative to the expanded
        channels; 0 disables SE (plain ConvNeXt block).
      layer_scale_init_value: initial value of the per-channel output scale;
        0 disables layer scale.
      drop_path_rate: stochastic depth rate of the residual branch.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    if not 0.0 <= se_ratio <= 1.0:
      raise ValueError(f'se_ratio must lie in [0, 1], got {se_ratio}')
    self.filters = filters
    self.kernel_size = kernel_size
    self.expansion = expansion
    self.se_ratio = se_ratio
    self.layer_scale_init_value = layer_scale_init_value
    self.drop_path_rate = drop_path_rate

    self._depthwise = tf_keras.layers.DepthwiseConv2D(
        kernel_size, padding='same', depthwise_initializer=initializers.truncated_normal(),
        name='depthwise')
    self._norm = tf_keras.layers.LayerNormalization(epsilon=1e-6, name='norm')
    self._expand = tf_keras.layers.Conv2D(
        expansion * filters, 1, kernel_initializer=initializers.truncated_normal(), name='expand')
    self._project = tf_keras.layers.Conv2D(
        filters, 1, kernel_initializer=initializers.truncated_normal(), name='project')
    self._se = None
    if se_ratio > 0:
      self._se = nn_layers.SqueezeExcitation(
          in_filters=expansion * filters, out_filters=expansion * filters,
          se_ratio=se_ratio, activation='gelu', name='se')
    self._drop_path = (nn_layers.StochasticDepth(drop_path_rate)
                       if drop_path_rate > 0 else None)

  def build(self, input_shape):
    if input_shape[-1] != self.filters:
      raise ValueError(f'{self.name}: expects {self.filters} input channels, '
                       f'got input shape {input_shape}')
    self._gamma = None
    if self.layer_scale_init_value > 0:
      self._gamma = self.add_weight(
          name='layer_scale', shape=[self.filters],
          initializer=tf_keras.initializers.Constant(
              self.layer_scale_init_value))
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, training=None) -> tf.Tensor:
    """Applies the block to float [batch, height, width, filters] features."""
    x = self._depthwise(inputs)
    x = self._norm(x)
    x = self._expand(x)
    x = tf.nn.gelu(x)
    if self._se is not None:
      x = self._se(x)
    x = self._project(x)
    if self._gamma is not None:
      x = x * tf.cast(self._gamma, x.dtype)
    if self._drop_path is not None:
      x = self._drop_path(x, training=training)
    return inputs + x

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({
        'filters': self.filters,
        'kernel_size': self.kernel_size,
        'expansion': self.expansion,
        'se_ratio': self.se_ratio,
        'layer_scale_init_value': self.layer_scale_init_value,
        'drop_path_rate': self.drop_path_rate,
    })
    return config
