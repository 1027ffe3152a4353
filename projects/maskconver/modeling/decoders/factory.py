"""Builds pixel decoders from the model config, by registered name.

The builders are registered in Model Garden's decoder registry
(`official.vision.modeling.decoders.factory`), beside its own `fpn`, `aspp`,
`nasfpn` and `identity`, so `build_decoder` looks every `decoder.type` up in
one place; an unknown type raises the registry's LookupError. A new decoder
registers its builder the same way:

```
@factory.register_decoder_builder('my_decoder')
def build_my_decoder(input_specs, model_config, l2_regularizer=None):
  return MyDecoder(...)
```
"""

from typing import Mapping, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling.decoders import factory as vision_decoder_factory

from maskconver.configs import maskconver as maskconver_cfg
from maskconver.modeling.decoders import bifpn
from maskconver.modeling.decoders import convnext_unet
from maskconver.modeling.decoders import deeplabv3plus

register_decoder_builder = vision_decoder_factory.register_decoder_builder


@register_decoder_builder('convnext_unet')
def build_convnext_unet(
    input_specs: Mapping[str, tf.TensorShape],
    model_config: maskconver_cfg.MaskConverModel,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> convnext_unet.ConvNeXtUNet:
  """The ConvNeXt-UNet of `model_config.decoder.convnext_unet`.

  Its output levels are projected to the center heads' width when the
  levels' widths differ and `output_num_filters` is 0 (configs/decoders.py).
  """
  del l2_regularizer  # ConvNeXt blocks take no regularizer.
  decoder_cfg = model_config.decoder.convnext_unet
  output_num_filters = decoder_cfg.output_num_filters
  if output_num_filters == 0 and len(set(decoder_cfg.num_filters)) > 1:
    output_num_filters = model_config.center_head.num_filters
  return convnext_unet.ConvNeXtUNet(
      input_specs=input_specs,
      min_level=decoder_cfg.min_level,
      backbone_max_level=decoder_cfg.backbone_max_level,
      # Heads may read fewer levels (e.g. L3 only); the UNet still runs its
      # top-down path from the backbone's coarsest level.
      max_level=max(model_config.max_level, decoder_cfg.backbone_max_level),
      num_blocks=decoder_cfg.num_blocks,
      num_filters=decoder_cfg.num_filters,
      kernel_size=decoder_cfg.kernel_size,
      se_ratio=decoder_cfg.se_ratio if decoder_cfg.use_se else 0.0,
      layer_scale_init_value=decoder_cfg.layer_scale_init_value,
      drop_path_rate=decoder_cfg.drop_path_rate,
      output_num_filters=max(output_num_filters, 0))


@register_decoder_builder('bifpn')
def build_bifpn(
    input_specs: Mapping[str, tf.TensorShape],
    model_config: maskconver_cfg.MaskConverModel,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> bifpn.BiFPN:
  """The BiFPN of `model_config.decoder.bifpn` over the heads' levels."""
  decoder_cfg = model_config.decoder.bifpn
  norm_activation = model_config.norm_activation
  return bifpn.BiFPN(
      input_specs=input_specs,
      min_level=model_config.min_level,
      max_level=model_config.max_level,
      backbone_max_level=decoder_cfg.backbone_max_level,
      num_filters=decoder_cfg.num_filters,
      num_repeats=decoder_cfg.num_repeats,
      use_separable_conv=decoder_cfg.use_separable_conv,
      activation=decoder_cfg.activation,
      use_sync_bn=norm_activation.use_sync_bn,
      norm_momentum=norm_activation.norm_momentum,
      norm_epsilon=norm_activation.norm_epsilon,
      kernel_regularizer=l2_regularizer)


@register_decoder_builder('deeplabv3plus')
def build_deeplabv3plus(
    input_specs: Mapping[str, tf.TensorShape],
    model_config: maskconver_cfg.MaskConverModel,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> deeplabv3plus.DeepLabV3Plus:
  """The DeepLabv3+ of `model_config.decoder.deeplabv3plus`."""
  decoder_cfg = model_config.decoder.deeplabv3plus
  norm_activation = model_config.norm_activation
  return deeplabv3plus.DeepLabV3Plus(
      input_specs=input_specs,
      aspp_level=decoder_cfg.aspp_level,
      dilation_rates=decoder_cfg.dilation_rates,
      aspp_num_filters=decoder_cfg.aspp_num_filters,
      aspp_use_depthwise_convolution=(
          decoder_cfg.aspp_use_depthwise_convolution),
      pool_kernel_size=decoder_cfg.pool_kernel_size,
      low_level=decoder_cfg.low_level,
      low_level_num_filters=decoder_cfg.low_level_num_filters,
      num_filters=decoder_cfg.num_filters,
      use_depthwise_convolution=decoder_cfg.use_depthwise_convolution,
      activation=norm_activation.activation,
      use_sync_bn=norm_activation.use_sync_bn,
      norm_momentum=norm_activation.norm_momentum,
      norm_epsilon=norm_activation.norm_epsilon,
      kernel_regularizer=l2_regularizer)


def build_decoder(
    input_specs: Mapping[str, tf.TensorShape],
    model_config: maskconver_cfg.MaskConverModel,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> Optional[tf_keras.Model]:
  """Builds the pixel decoder named by `model_config.decoder.type`.

  Args:
    input_specs: {str(level): TensorShape} of the backbone endpoints.
    model_config: the model config.
    l2_regularizer: regularizer for decoders that take one.

  Returns:
    The decoder, or None for the identity decoder.

  Raises:
    LookupError: if no builder is registered under the type.
  """
  return vision_decoder_factory.build_decoder(
      input_specs=input_specs, model_config=model_config,
      l2_regularizer=l2_regularizer)
