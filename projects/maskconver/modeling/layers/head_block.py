"""One block of a MaskConver prediction head, shareable across levels."""

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras
from maskconver.modeling.layers import initializers

BLOCK_TYPES = ('light', 'conv', 'separable_bn')
# Kernel size of each block type when none is given.
DEFAULT_KERNEL_SIZES = {'light': 7, 'conv': 3, 'separable_bn': 3}
# Block types normalized by BatchNorm (folded into the convs at export).
BATCH_NORM_BLOCK_TYPES = ('separable_bn',)


@tf_keras.utils.register_keras_serializable(package='maskconver')
class HeadBlock(tf_keras.layers.Layer):
  """conv -> LayerNorm -> GELU, with convs shared and norms per level.

  `block_type='light'` is MaskConver's light block: a `kernel_size` (7x7)
  depthwise conv followed by a 1x1 conv to `filters` (the depthwise conv alone
  cannot mix or change channels). `block_type='conv'` is the regular
  3x3-conv block the paper's ablation compares against. When the head is
  shared across pyramid levels, the conv weights are shared and each level has
  its own LayerNorm (`num_levels` of them), as in MaskConver's R50 recipe.

  `block_type='separable_bn'` is the phone block of the mobile recipes: a
  `kernel_size` (3x3) depthwise conv -> BatchNorm -> ReLU -> 1x1 conv ->
  BatchNorm -> ReLU, convs without bias, BatchNorms per level. At inference
  both BatchNorms are affine maps that the TFLite converter (and TensorFlow's
  graph optimizer) folds into the preceding conv, so the block runs as two
  convolutions with fused ReLU; there is no LayerNorm statistic or exact
  GELU left to compute, and int8 kernels run it end to end. 3x3, not 7x7:
  XNNPACK runs a 3x3 depthwise conv about 75x faster than a 7x7 one of the
  same shape on x86 (5.4x fewer multiply-adds and a single-pass kernel).
  """

  def __init__(self,
               filters: int,
               block_type: str = 'light',
               kernel_size: Optional[int] = None,
               num_levels: int = 1,
               **kwargs):
    """Initializes the block.

    Args:
      filters: output channels.
      block_type: 'light' (depthwise kxk + 1x1, LayerNorm, GELU), 'conv'
        (dense kxk, LayerNorm, GELU) or 'separable_bn' (depthwise kxk + 1x1,
        each with BatchNorm and ReLU).
      kernel_size: spatial kernel size; None: 7 for light, 3 for conv and
        separable_bn blocks (DEFAULT_KERNEL_SIZES).
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
    if kernel_size is None:
      kernel_size = DEFAULT_KERNEL_SIZES[block_type]
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
    elif block_type == 'separable_bn':
      self._convs = [
          tf_keras.layers.DepthwiseConv2D(
              kernel_size, padding='same', use_bias=False,
              depthwise_initializer=initializers.truncated_normal(),
              name='depthwise'),
          tf_keras.layers.Conv2D(
              filters, 1, use_bias=False,
              kernel_initializer=initializers.truncated_normal(),
              name='pointwise'),
      ]
    else:
      self._convs = [
          tf_keras.layers.Conv2D(filters, kernel_size, padding='same',
                                 kernel_initializer=initializers.truncated_normal(), name='conv'),
      ]
    # The depthwise conv's BatchNorms (separable_bn only).
    self._depthwise_norms = []
    if block_type in BATCH_NORM_BLOCK_TYPES:
      self._depthwise_norms = [
          tf_keras.layers.BatchNormalization(name=f'depthwise_norm_{i}')
          for i in range(num_levels)
      ]
      self._norms = [
          tf_keras.layers.BatchNormalization(name=f'norm_{i}')
          for i in range(num_levels)
      ]
    else:
      self._norms = [
          tf_keras.layers.LayerNormalization(epsilon=1e-6, name=f'norm_{i}')
          for i in range(num_levels)
      ]

  def call(self, inputs: tf.Tensor, level_index: int = 0) -> tf.Tensor:
    """Applies the block.

    Args:
      inputs: float [batch, height, width, channels].
      level_index: which level's norms to use, in [0, num_levels).

    Returns:
      float [batch, height, width, filters].
    """
    x = inputs
    if self._depthwise_norms:
      depthwise, pointwise = self._convs
      x = tf.nn.relu(self._depthwise_norms[level_index](depthwise(x)))
      return tf.nn.relu(self._norms[level_index](pointwise(x)))
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
