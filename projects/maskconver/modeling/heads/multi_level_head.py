"""A dense prediction head shared across pyramid levels."""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from maskconver.modeling.layers import head_block
from maskconver.modeling.layers import initializers



@tf_keras.utils.register_keras_serializable(package='maskconver')
class MultiLevelHead(tf_keras.layers.Layer):
  """`num_blocks` head blocks then a 1x1 conv to `output_channels`.

  The same weights run on every level in [min_level, max_level]; each block
  has one LayerNorm per level (per-level normalization). With
  min_level == max_level it is an ordinary single-level head.
  """

  def __init__(self,
               output_channels: int,
               min_level: int,
               max_level: int,
               num_blocks: int = 2,
               num_filters: int = 256,
               block_type: str = 'light',
               kernel_size: Optional[int] = None,
               bias_init_value: float = 0.0,
               **kwargs):
    """Initializes the head.

    Args:
      output_channels: channels of the prediction.
      min_level: lowest pyramid level the head runs on.
      max_level: highest pyramid level the head runs on.
      num_blocks: number of head blocks before the output conv.
      num_filters: channels of the head blocks.
      block_type: 'light', 'conv' or 'separable_bn' (see HeadBlock).
      kernel_size: spatial kernel size of the head blocks; None: the block
        type's default (7 light, 3 conv).
      bias_init_value: initial bias of the output conv.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    if max_level < min_level:
      raise ValueError(
          f'max_level ({max_level}) must be >= min_level ({min_level})')
    self.output_channels = output_channels
    self.min_level = min_level
    self.max_level = max_level
    self.num_blocks = num_blocks
    self.num_filters = num_filters
    self.block_type = block_type
    self.kernel_size = kernel_size
    self.bias_init_value = bias_init_value
    num_levels = max_level - min_level + 1
    self._blocks = [
        head_block.HeadBlock(num_filters, block_type, kernel_size, num_levels,
                             name=f'block_{i}') for i in range(num_blocks)
    ]
    self._output_conv = tf_keras.layers.Conv2D(
        output_channels, 1,
        kernel_initializer=initializers.truncated_normal(),
        bias_initializer=tf_keras.initializers.Constant(bias_init_value),
        name='output')

  def call(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Runs the head on every level.

    Args:
      features: {str(level): float [batch, h_l, w_l, channels]}, at least the
        levels min_level .. max_level.

    Returns:
      {str(level): float [batch, h_l, w_l, output_channels]}.
    """
    outputs = {}
    for index, level in enumerate(range(self.min_level, self.max_level + 1)):
      if str(level) not in features:
        raise ValueError(f'{self.name}: missing level {level}; got levels '
                         f'{sorted(features)}')
      x = features[str(level)]
      for block in self._blocks:
        x = block(x, level_index=index)
      outputs[str(level)] = self._output_conv(x)
    return outputs

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({
        'output_channels': self.output_channels,
        'min_level': self.min_level,
        'max_level': self.max_level,
        'num_blocks': self.num_blocks,
        'num_filters': self.num_filters,
        'block_type': self.block_type,
        'kernel_size': self.kernel_size,
        'bias_init_value': self.bias_init_value,
    })
    return config
