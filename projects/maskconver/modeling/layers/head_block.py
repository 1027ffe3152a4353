"""One block of a MaskConver prediction head, shareable across levels."""

from typing import Any, Dict

import tensorflow as tf
import tf_keras
from maskconver.modeling.layers import initializers

BLOCK_TYPES = ('light', 'conv')



@tf_keras.utils.register_keras_serializable(package='maskconver')
class HeadBlock(tf_keras.layers.Layer):
  """conv -> LayerNorm -> GELU, with convs shared and norms per level.

  `block_type='light'` is MaskConver's light block: a `kernel_size` (7x7)
  depthwise conv followed by a 1x1 conv to `filters` (the depthwise conv alone
  cannot mix or change channels). `block_type='conv'` is the regular
  3x3-conv block the paper's ablation compares against. When the head is
  shared across pyramid levels, the conv weights are shared and each level has
  its own LayerNorm (`num_levels` of them), as in MaskConver's R50 recipe.
  """

  def __init__(self,
               filters: int,
               block_type: str = 'light',
               kernel_size: int = 7,
               num_levels: int = 1,
               **kwargs):
    """Initializes the block.

    Args:
      filters: output channels.
      block_type: 'light' (depthwise kxk + 1x1) or 'conv' (dense kxk).
      kernel_size: spatial kernel size (7 for light, 3 for conv blocks).
      num_levels: number of pyramid levels sharing the convs; each gets its
        own LayerNorm.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    if block_type not in BLOCK_TYPES:
      raise ValueError(
          f'block_type must be one of {BLOCK_TYPES}, got {block_type!r}')
    if num_levels < 1:
      raise ValueError(f'num_levels must be >= 1, got {num_levels}')
    self.filters = filters
    self.block_type = block_type
    self.kernel_size = kernel_size
    self.num_levels = num_levels

    if block_type == 'light':
      self._convs = [
          tf_keras.layers.DepthwiseConv2D(
              kernel_size, padding='same', depthwise_initializer=initializers.truncated_normal(),
              name='depthwise'),
          tf_keras.layers.Conv2D(filters, 1, kernel_initializer=initializers.truncated_normal(),
                                 name='pointwise'),
      ]
    else:
      self._convs = [
          tf_keras.layers.Conv2D(filters, kernel_size, padding='same',
                                 kernel_initializer=initializers.truncated_normal(), name='conv'),
      ]
    self._norms = [
        tf_keras.layers.LayerNormalization(epsilon=1e-6, name=f'norm_{i}')
        for i in range(num_levels)
    ]

  def call(self, inputs: tf.Tensor, level_index: int = 0) -> tf.Tensor:
    """Applies the block.

    Args:
      inputs: float [batch, height, width, channels].
      level_index: which level's LayerNorm to use, in [0, num_levels).

    Returns:
      float [batch, height, width, filters].
    """
    x = inputs
    for conv in self._convs:
      x = conv(x)
    return tf.nn.gelu(self._norms[level_index](x))

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({
        'filters': self.filters,
        'block_type': self.block_type,
        'kernel_size': self.kernel_size,
        'num_levels': self.num_levels,
    })
    return config
