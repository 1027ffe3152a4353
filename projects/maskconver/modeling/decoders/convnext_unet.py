"""ConvNeXt-UNet: MaskConver's top-down pixel decoder."""

from typing import Any, Dict, Mapping, Sequence

import tensorflow as tf
import tf_keras

from maskconver.modeling.layers import convnext_block
from maskconver.modeling.layers import initializers
from maskconver.ops import resize_ops




def _spatial_size(reference: tf.Tensor):
  """[height, width] of `reference`: static ints when known."""
  static = reference.shape[1:3].as_list()
  if None in static:
    return tf.shape(reference)[1:3]
  return static


def _layer_norm(name: str) -> tf_keras.layers.Layer:
  return tf_keras.layers.LayerNormalization(epsilon=1e-6, name=name)


@tf_keras.utils.register_keras_serializable(package='maskconver')
class ResizeNearestLike(tf_keras.layers.Layer):
  """Nearest-neighbour resize of `inputs` to the spatial size of `reference`.

  A 2x upsampling that also handles odd sizes (e.g. 1200 px wide: level 5 is
  38 wide, level 4 is 75 wide).
  """

  def call(self, inputs: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
    return resize_ops.nearest_resize(inputs, _spatial_size(reference))


@tf_keras.utils.register_keras_serializable(package='maskconver')
class ConvNeXtUNet(tf_keras.Model):
  """UNet-like top-down decoder of ConvNeXt(-SE) blocks, plus extra levels.

  From the coarsest backbone level down to `min_level`, each level l computes

    lateral_l = LN(conv1x1(backbone_l, D_l))
    x_l = lateral_l                                       (coarsest level)
    x_l = lateral_l + upsample2x(LN(conv1x1(x_{l+1}, D_l)))  (otherwise)
    x_l = N_l ConvNeXt(-SE) blocks applied to x_l

  which is the structure of Model Garden's `resnet_unet` top-down path, here
  as a decoder over any backbone's endpoints so that N, D and SE are
  configurable per level. With `output_num_filters` > 0, each of those levels
  is then projected by LN(conv1x1(x_l, output_num_filters)), so that heads
  shared across levels see one width whatever D is (the paper's
  D = [768, 384, 192] ablation). Levels above the coarsest backbone level, up
  to `max_level` (L6, L7), come from stride-2 7x7 depthwise convs + LayerNorm
  of the (projected) coarsest level. The MaskConver R50 recipe uses
  N = [18, 1, 1], D = [384, 384, 384], SE on, no projection.
  """

  def __init__(self,
               input_specs: Mapping[str, tf.TensorShape],
               min_level: int = 3,
               backbone_max_level: int = 5,
               max_level: int = 7,
               num_blocks: Sequence[int] = (18, 1, 1),
               num_filters: Sequence[int] = (384, 384, 384),
               kernel_size: int = 7,
               se_ratio: float = 0.0625,
               layer_scale_init_value: float = 1e-6,
               drop_path_rate: float = 0.0,
               output_num_filters: int = 0,
               **kwargs):
    """Initializes the decoder.

    Args:
      input_specs: {str(level): TensorShape} of the backbone endpoints.
      min_level: finest output level (3: stride 8).
      backbone_max_level: coarsest backbone level used (5: stride 32).
      max_level: coarsest output level; levels above backbone_max_level are
        made by strided depthwise convs.
      num_blocks: N, blocks per level from backbone_max_level down to
        min_level.
      num_filters: D, channels per level in the same order.
      kernel_size: depthwise kernel size of the blocks and extra levels.
      se_ratio: SE ratio of the blocks; 0 gives plain ConvNeXt blocks.
      layer_scale_init_value: initial layer scale of the blocks.
      drop_path_rate: stochastic depth rate, growing linearly over blocks to
        this value.
      output_num_filters: channels every output level is projected to; 0
        keeps D per level.
      **kwargs: passed to the Model.
    """
    num_levels = backbone_max_level - min_level + 1
    if len(num_blocks) != num_levels or len(num_filters) != num_levels:
      raise ValueError(
          f'num_blocks {list(num_blocks)} and num_filters {list(num_filters)} '
          f'need one entry per level {backbone_max_level}..{min_level}')
    if output_num_filters < 0:
      raise ValueError(
          f'output_num_filters must be >= 0, got {output_num_filters}')
    if max_level < backbone_max_level:
      raise ValueError(f'max_level ({max_level}) must be >= '
                       f'backbone_max_level ({backbone_max_level})')
    missing = [l for l in range(min_level, backbone_max_level + 1)
               if str(l) not in input_specs]
    if missing:
      raise ValueError(f'backbone has no level(s) {missing}; it has '
                       f'{sorted(input_specs)}')
    self._config_dict = {
        'input_specs': input_specs,
        'min_level': min_level,
        'backbone_max_level': backbone_max_level,
        'max_level': max_level,
        'num_blocks': list(num_blocks),
        'num_filters': list(num_filters),
        'kernel_size': kernel_size,
        'se_ratio': se_ratio,
        'layer_scale_init_value': layer_scale_init_value,
        'drop_path_rate': drop_path_rate,
        'output_num_filters': output_num_filters,
    }
    inputs = {
        str(l): tf_keras.Input(shape=input_specs[str(l)][1:], name=f'l{l}')
        for l in range(min_level, backbone_max_level + 1)
    }
    total_blocks = max(sum(num_blocks), 1)
    block_index = 0
    outputs = {}
    x = None
    levels = range(backbone_max_level, min_level - 1, -1)
    for level, repeats, filters in zip(levels, num_blocks, num_filters):
      lateral = tf_keras.layers.Conv2D(
          filters, 1, use_bias=False, kernel_initializer=initializers.truncated_normal(),
          name=f'lateral_l{level}')(inputs[str(level)])
      lateral = _layer_norm(f'lateral_norm_l{level}')(lateral)
      if x is None:
        x = lateral
      else:
        x = tf_keras.layers.Conv2D(
            filters, 1, use_bias=False, kernel_initializer=initializers.truncated_normal(),
            name=f'top_down_l{level}')(x)
        x = _layer_norm(f'top_down_norm_l{level}')(x)
        x = ResizeNearestLike(name=f'upsample_l{level}')(x, lateral)
        x = tf_keras.layers.Add(name=f'merge_l{level}')([x, lateral])
      for i in range(repeats):
        x = convnext_block.ConvNeXtBlock(
            filters, kernel_size=kernel_size, se_ratio=se_ratio,
            layer_scale_init_value=layer_scale_init_value,
            drop_path_rate=drop_path_rate * block_index / total_blocks,
            name=f'block_l{level}_{i}')(x)
        block_index += 1
      outputs[str(level)] = x

    if output_num_filters:
      for level in levels:
        x = tf_keras.layers.Conv2D(
            output_num_filters, 1, use_bias=False,
            kernel_initializer=initializers.truncated_normal(),
            name=f'output_l{level}')(outputs[str(level)])
        outputs[str(level)] = _layer_norm(f'output_norm_l{level}')(x)
    x = outputs[str(backbone_max_level)]
    for level in range(backbone_max_level + 1, max_level + 1):
      x = tf_keras.layers.DepthwiseConv2D(
          kernel_size, strides=2, padding='same', depthwise_initializer=initializers.truncated_normal(),
          name=f'extra_l{level}')(x)
      x = _layer_norm(f'extra_norm_l{level}')(x)
      outputs[str(level)] = x

    self._output_specs = {l: t.get_shape() for l, t in outputs.items()}
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)

  def get_config(self) -> Dict[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)

  @property
  def output_specs(self) -> Dict[str, tf.TensorShape]:
    """{str(level): TensorShape} of the outputs."""
    return self._output_specs

