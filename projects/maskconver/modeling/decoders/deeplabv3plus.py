"""DeepLabv3+ decoder: ASPP fused with a finer backbone level."""

from typing import Any, Dict, List, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import tf_utils
from official.vision.modeling.decoders import aspp

from maskconver.ops import resize_ops


@tf_keras.utils.register_keras_serializable(package='maskconver')
class ResizeBilinearLike(tf_keras.layers.Layer):
  """Bilinear resize of `inputs` to the spatial size of `reference`.

  A 2x upsampling when the sizes are even, which also handles odd ones
  (e.g. a 600 px input: level 4 is 38 wide, level 3 is 75 wide).
  """

  def call(self, inputs: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
    size = reference.shape[1:3].as_list()
    if None in size:
      size = tf.shape(reference)[1:3]
    return resize_ops.bilinear_resize(inputs, size)


@tf_keras.utils.register_keras_serializable(package='maskconver')
class DeepLabV3Plus(tf_keras.Model):
  """ASPP on a coarse level, upsampled and fused with a fine backbone level.

  MaskConver's mobile recipe: Model Garden's ASPP runs on backbone level
  `aspp_level`; its output is upsampled (bilinear) to `low_level`, concatenated
  with a 1x1 projection (`low_level_num_filters`) of the backbone's
  `low_level` features, and fused by a 3x3 (depthwise-separable by default)
  conv + BN + activation. The single output level is `low_level` (L3), which
  all MaskConver heads of the mobile recipe read.
  """

  def __init__(self,
               input_specs: Mapping[str, tf.TensorShape],
               aspp_level: int = 4,
               dilation_rates: Optional[List[int]] = None,
               aspp_num_filters: int = 128,
               aspp_use_depthwise_convolution: bool = True,
               pool_kernel_size: Optional[List[int]] = None,
               low_level: int = 3,
               low_level_num_filters: int = 48,
               num_filters: int = 128,
               use_depthwise_convolution: bool = True,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the decoder.

    Args:
      input_specs: {str(level): TensorShape} of the backbone endpoints.
      aspp_level: backbone level ASPP runs on.
      dilation_rates: ASPP atrous rates; empty for 1x1 + pooling only.
      aspp_num_filters: ASPP output channels.
      aspp_use_depthwise_convolution: depthwise-separable atrous convs.
      pool_kernel_size: ASPP pooling window [h, w] in input pixels, or None
        for global average pooling.
      low_level: backbone level to fuse with; the output level.
      low_level_num_filters: channels of the low-level projection.
      num_filters: output channels.
      use_depthwise_convolution: depthwise-separable fusion conv.
      activation: activation name.
      use_sync_bn: synchronized batch norm.
      norm_momentum: batch norm momentum.
      norm_epsilon: batch norm epsilon.
      kernel_regularizer: regularizer of the conv kernels.
      **kwargs: passed to the Model.
    """
    for level in (aspp_level, low_level):
      if str(level) not in input_specs:
        raise ValueError(f'backbone has no level {level}; it has '
                         f'{sorted(input_specs)}')
    self._config_dict = {
        'input_specs': input_specs,
        'aspp_level': aspp_level,
        'dilation_rates': list(dilation_rates or []),
        'aspp_num_filters': aspp_num_filters,
        'aspp_use_depthwise_convolution': aspp_use_depthwise_convolution,
        'pool_kernel_size': pool_kernel_size,
        'low_level': low_level,
        'low_level_num_filters': low_level_num_filters,
        'num_filters': num_filters,
        'use_depthwise_convolution': use_depthwise_convolution,
        'activation': activation,
        'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum,
        'norm_epsilon': norm_epsilon,
        'kernel_regularizer': kernel_regularizer,
    }
    bn = (tf_keras.layers.experimental.SyncBatchNormalization
          if use_sync_bn else tf_keras.layers.BatchNormalization)

    def norm_act(x, name):
      x = bn(momentum=norm_momentum, epsilon=norm_epsilon,
             name=f'{name}_bn')(x)
      return tf_utils.get_activation(activation, use_keras_layer=True)(x)

    inputs = {
        str(l): tf_keras.Input(shape=input_specs[str(l)][1:], name=f'l{l}')
        for l in sorted({aspp_level, low_level})
    }
    context = aspp.ASPP(
        level=aspp_level,
        dilation_rates=list(dilation_rates or []),
        num_filters=aspp_num_filters,
        pool_kernel_size=pool_kernel_size,
        use_sync_bn=use_sync_bn,
        norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon,
        activation=activation,
        kernel_regularizer=kernel_regularizer,
        use_depthwise_convolution=aspp_use_depthwise_convolution,
        name='aspp')({str(aspp_level): inputs[str(aspp_level)]})
    context = context[str(aspp_level)]

    low = tf_keras.layers.Conv2D(
        low_level_num_filters, 1, use_bias=False,
        kernel_regularizer=kernel_regularizer,
        name='low_level_projection')(inputs[str(low_level)])
    low = norm_act(low, 'low_level_projection')
    if aspp_level != low_level:
      context = ResizeBilinearLike(name='upsample')(context, low)
    x = tf_keras.layers.Concatenate(name='concat')([context, low])
    if use_depthwise_convolution:
      x = tf_keras.layers.DepthwiseConv2D(
          3, padding='same', use_bias=False,
          depthwise_regularizer=kernel_regularizer, name='fuse_depthwise')(x)
      x = norm_act(x, 'fuse_depthwise')
      x = tf_keras.layers.Conv2D(
          num_filters, 1, use_bias=False,
          kernel_regularizer=kernel_regularizer, name='fuse_pointwise')(x)
    else:
      x = tf_keras.layers.Conv2D(
          num_filters, 3, padding='same', use_bias=False,
          kernel_regularizer=kernel_regularizer, name='fuse_conv')(x)
    x = norm_act(x, 'fuse')
    outputs = {str(low_level): x}
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
