"""Decoder configs: Model Garden's (FPN, ASPP, ...) plus MaskConver's."""

import dataclasses
from typing import List, Optional

from official.modeling import hyperparams
from official.vision.configs import decoders


@dataclasses.dataclass
class ConvNeXtUNet(hyperparams.Config):
  """ConvNeXt-UNet pixel decoder.

  Attributes:
    min_level: finest output level (3, stride 8).
    backbone_max_level: coarsest backbone level it reads (5, stride 32).
    num_blocks: N, ConvNeXt blocks per level from backbone_max_level down to
      min_level (R50 recipe: [18, 1, 1]).
    num_filters: D, channels per level, same order (R50: [384, 384, 384]).
    kernel_size: depthwise kernel of the blocks and of the extra levels.
    use_se: ConvNeXt-SE blocks (squeeze-and-excitation between the 1x1 convs).
    se_ratio: SE squeeze ratio relative to the expanded channels.
    layer_scale_init_value: initial ConvNeXt layer scale.
    drop_path_rate: final stochastic depth rate (linear over the blocks).
    output_num_filters: channels every output level is projected to (1x1
      conv + LayerNorm). 0: none when all D are equal, else the width of the
      center heads (`center_head.num_filters`), since heads shared across
      levels need one input width. -1: never project.
  """
  min_level: int = 3
  backbone_max_level: int = 5
  num_blocks: List[int] = dataclasses.field(
      default_factory=lambda: [18, 1, 1])
  num_filters: List[int] = dataclasses.field(
      default_factory=lambda: [384, 384, 384])
  kernel_size: int = 7
  use_se: bool = True
  se_ratio: float = 0.0625
  layer_scale_init_value: float = 1e-6
  drop_path_rate: float = 0.0
  output_num_filters: int = 0


@dataclasses.dataclass
class BiFPN(hyperparams.Config):
  """EfficientDet's BiFPN over levels model.min_level..model.max_level.

  Attributes:
    backbone_max_level: coarsest backbone level read; coarser levels are
      max-pooled from it.
    num_filters: width of every level.
    num_repeats: BiFPN layers (the paper's Table 2 row: 6).
    use_separable_conv: depthwise-separable 3x3 node convs (EfficientDet's).
    activation: activation before each node conv (EfficientDet: swish).
  """
  backbone_max_level: int = 5
  num_filters: int = 160
  num_repeats: int = 6
  use_separable_conv: bool = True
  activation: str = 'swish'


@dataclasses.dataclass
class DeepLabV3Plus(hyperparams.Config):
  """DeepLabv3+ decoder of the mobile recipe (ASPP fused with a fine level).

  Attributes:
    aspp_level: backbone level ASPP runs on.
    dilation_rates: ASPP atrous rates (empty: 1x1 branch + pooling only).
    aspp_num_filters: ASPP channels.
    aspp_use_depthwise_convolution: depthwise-separable atrous convs.
    pool_kernel_size: ASPP pooling window in input pixels; None = global.
    low_level: backbone level fused with ASPP; the single output level.
    low_level_num_filters: channels of the low-level projection.
    num_filters: output channels.
    use_depthwise_convolution: depthwise-separable fusion conv.
  """
  aspp_level: int = 4
  dilation_rates: List[int] = dataclasses.field(default_factory=list)
  aspp_num_filters: int = 128
  aspp_use_depthwise_convolution: bool = True
  pool_kernel_size: Optional[List[int]] = None
  low_level: int = 3
  low_level_num_filters: int = 48
  num_filters: int = 128
  use_depthwise_convolution: bool = True


@dataclasses.dataclass
class Decoder(decoders.Decoder):
  """Decoder one-of: `convnext_unet`, `bifpn`, `deeplabv3plus`, or Model
  Garden's `fpn`, `aspp`, `nasfpn`, `identity`.

  Attributes:
    convnext_unet: ConvNeXt-UNet config.
    bifpn: BiFPN config.
    deeplabv3plus: DeepLabv3+ config.
  """
  type: Optional[str] = 'convnext_unet'
  convnext_unet: ConvNeXtUNet = dataclasses.field(default_factory=ConvNeXtUNet)
  bifpn: BiFPN = dataclasses.field(default_factory=BiFPN)
  deeplabv3plus: DeepLabV3Plus = dataclasses.field(
      default_factory=DeepLabV3Plus)
