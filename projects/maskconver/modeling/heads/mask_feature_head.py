"""Mask feature head: decoder levels fused at stride 4, then a light head."""

from typing import Any, Dict, Mapping, Optional, Sequence

import tensorflow as tf
import tf_keras

from maskconver.modeling.layers import head_block
from maskconver.modeling.layers import initializers
from maskconver.ops import resize_ops



@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskFeatureHead(tf_keras.layers.Layer):
  """Produces the stride-`output_stride` per-pixel mask features.

  Every decoder level in `levels` is resized (bilinear) to stride
  `output_stride` (4) and the results are summed; `num_blocks` head blocks and
  a 1x1 conv to `embedding_size` follow. The mask of a center is the dot
  product of these features with the center's mask embedding.
  """

  def __init__(self,
               levels: Sequence[int],
               embedding_size: int,
               num_blocks: int = 1,
               num_filters: int = 256,
               block_type: str = 'light',
               kernel_size: Optional[int] = None,
               output_stride: int = 4,
               **kwargs):
    """Initializes the head.

    Args:
      levels: decoder levels to fuse, e.g. [3, 4, 5]; all must have the same
        channels.
      embedding_size: output channels (C_embd).
      num_blocks: number of head blocks after the fusion.
      num_filters: channels of the head blocks.
      block_type: 'light', 'conv' or 'separable_bn' (see HeadBlock).
      kernel_size: spatial kernel size of the head blocks; None: the block
        type's default (7 light, 3 conv).
      output_stride: stride of the output, a power of two <= 2**min(levels).
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    if not levels:
      raise ValueError('levels must not be empty')
    if output_stride > 2**min(levels):
      raise ValueError(f'output_stride {output_stride} is coarser than level '
                       f'{min(levels)}')
    self.levels = [int(l) for l in levels]
    self.embedding_size = embedding_size
    self.num_blocks = num_blocks
    self.num_filters = num_filters
    self.block_type = block_type
    self.kernel_size = kernel_size
    self.output_stride = output_stride
    self._blocks = [
        head_block.HeadBlock(num_filters, block_type, kernel_size,
                             name=f'block_{i}') for i in range(num_blocks)
    ]
    self._output_conv = tf_keras.layers.Conv2D(
        embedding_size, 1,
        kernel_initializer=initializers.truncated_normal(),
        name='output')

  def call(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """Fuses the levels and predicts mask features.

    Args:
      features: {str(level): float [batch, h_l, w_l, channels]}.

    Returns:
      float [batch, h_l * 2**l / output_stride, ..., embedding_size], i.e.
      stride `output_stride` relative to the input image.
    """
    finest = min(self.levels)
    finest_shape = features[str(finest)].shape.as_list()
    if None in finest_shape[1:3]:
      finest_shape = tf.shape(features[str(finest)])
    factor = 2**finest // self.output_stride
    size = [finest_shape[1] * factor, finest_shape[2] * factor]
    fused = None
    for level in self.levels:
      x = features[str(level)]
      if level != finest or factor != 1:
        x = resize_ops.bilinear_resize(x, size)
      fused = x if fused is None else fused + x
    x = fused
    for block in self._blocks:
      x = block(x)
    return self._output_conv(x)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({
        'levels': self.levels,
        'embedding_size': self.embedding_size,
        'num_blocks': self.num_blocks,
        'num_filters': self.num_filters,
        'block_type': self.block_type,
        'kernel_size': self.kernel_size,
        'output_stride': self.output_stride,
    })
    return config
