"""MaskConver model, data, loss and task configs."""

import dataclasses
from typing import List, Optional

from official.core import config_definitions as cfg
from official.modeling import hyperparams
from official.vision.configs import backbones
from official.vision.configs import common

from maskconver.configs import decoders


@dataclasses.dataclass
class Head(hyperparams.Config):
  """A prediction head.

  Attributes:
    block_type: 'light' (7x7 depthwise + 1x1, LayerNorm, GELU: the paper's
      light head), 'conv' (3x3 conv, LayerNorm, GELU: the ablation) or
      'separable_bn' (3x3 depthwise + 1x1, each with BatchNorm and ReLU,
      folded into the convs at export: the mobile recipes' phone head).
    num_blocks: blocks before the output 1x1 conv.
    num_filters: channels of the blocks.
    kernel_size: spatial kernel of the blocks; None (the default) picks the
      block type's: 7 for light, 3 for conv (the paper's 3x3 ablation) and
      separable_bn.
  """
  block_type: str = 'light'
  num_blocks: int = 2
  num_filters: int = 256
  kernel_size: Optional[int] = None


@dataclasses.dataclass
class PanopticPostprocessor(hyperparams.Config):
  """MaskFormer-style merge of the K masks into a panoptic map.

  Attributes:
    score_threshold: drop centers scoring below it (paper: 0.2).
    overlap_threshold: drop a mask when less than this share of it survives
      the merge (paper: 0.75).
    mask_threshold: probability above which a pixel belongs to a mask.
    merge_method: 'exact' (upsample all K masks to the output size, then
      merge) or 'fast' (rank at mask resolution, refine only the output
      cells on boundaries and mask contours: nearly the same maps at a
      fraction of the cost; see maskconver.ops.fast_merge_ops).
    fast_refine_share: the share of output cells (f x f pixels between 2 x 2
      mask pixels) that the fast merge may refine; boundary cells beyond it
      keep nearest-neighbour labels (how to choose it: docs/fast_merge.md).
  """
  score_threshold: float = 0.2
  overlap_threshold: float = 0.75
  mask_threshold: float = 0.5
  merge_method: str = 'exact'
  fast_refine_share: float = 0.25


@dataclasses.dataclass
class MaskConverModel(hyperparams.Config):
  """The MaskConver network.

  Attributes:
    num_classes: classes, things and stuff (training ids are contiguous,
      things first; see maskconver.keys).
    num_thing_classes: how many of the classes are things.
    input_size: [height, width, 3] of the network input.
    min_level: finest level of the center heads (3, stride 8).
    max_level: coarsest level of the center heads (7 for R50, 3 for mobile).
    mask_feature_levels: decoder levels fused into the stride-4 mask features.
    embedding_size: C_embd, size of center, class and mask embeddings.
    num_instances: K, centers selected at inference.
    use_class_embedding: add a class embedding to each center embedding.
    mlp_hidden_size: hidden width of the mask-embedding MLP (0: embedding_size).
    score_activation: 'sigmoid', or 'hard_sigmoid' for mobile deployment.
    nms_kernel_size: max-pool NMS window over the heatmaps.
    stuff_representation: 'center' (the paper: stuff classes have centers
      like things) or 'region' (Table 7's alternative, Panoptic FCN's way:
      the center heads predict things only; a region head predicts a stuff
      map on min_level, and each stuff class's embedding is the center
      embeddings averaged over its region).
    backbone: any Model Garden backbone.
    decoder: pixel decoder one-of.
    center_head: config of the center heatmap and center embedding heads.
    mask_head: config of the mask feature head.
    norm_activation: Model Garden norm/activation config of the backbone and
      the DeepLabv3+ decoder.
    postprocessor: panoptic merge config.
  """
  num_classes: int = 133
  num_thing_classes: int = 80
  input_size: List[int] = dataclasses.field(
      default_factory=lambda: [640, 640, 3])
  min_level: int = 3
  max_level: int = 7
  mask_feature_levels: List[int] = dataclasses.field(
      default_factory=lambda: [3, 4, 5])
  embedding_size: int = 256
  num_instances: int = 256
  use_class_embedding: bool = True
  mlp_hidden_size: int = 0
  score_activation: str = 'sigmoid'
  nms_kernel_size: int = 3
  stuff_representation: str = 'center'
  backbone: backbones.Backbone = dataclasses.field(
      default_factory=lambda: backbones.Backbone(
          type='resnet', resnet=backbones.ResNet(model_id=50)))
  decoder: decoders.Decoder = dataclasses.field(
      default_factory=decoders.Decoder)
  center_head: Head = dataclasses.field(default_factory=Head)
  mask_head: Head = dataclasses.field(
      default_factory=lambda: Head(num_blocks=1))
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: common.NormActivation(
          activation='relu', norm_momentum=0.99, norm_epsilon=0.001))
  postprocessor: PanopticPostprocessor = dataclasses.field(
      default_factory=PanopticPostprocessor)


@dataclasses.dataclass
class Parser(hyperparams.Config):
  """Augmentation and target building.

  Attributes:
    aug_rand_hflip: random horizontal flip.
    aug_scale_min: smallest random scale (paper: 0.05).
    aug_scale_max: largest random scale (paper: 2.9).
    center_type: 'mask' (centroid of the mask) or 'box' (box center).
    gaussian_min_overlap: IoU of CenterNet's Gaussian radius rule.
    gaussian_min_radius: smallest Gaussian radius, in cells.
    heatmap_ignore_fraction: heatmap cells with a larger share of void or
      crowd pixels are ignored by the focal loss.
    level_size_measure: 'sqrt_area' or 'box_side': the instance size that
      picks its head level.
    level_base_size: size boundary between the two finest head levels at
      `level_reference_size` (doubling per level above).
    level_reference_size: image side the level boundaries refer to; they
      scale with the actual output size.
    max_instances: target slots per image (things + one per stuff class);
      0 (the default) uses the model's K (`model.num_instances`). With more
      candidates, every stuff class is kept, then the largest things.
    mask_stride: stride of the target masks (that of the mask features).
    copy_paste_prob: probability of panoptic copy-paste; 0 disables it.
    copy_paste_scale_min: smallest scale of the pasted source image.
    copy_paste_scale_max: largest scale of the pasted source image.
    max_segments: ground-truth segments kept per image for evaluation.
    eval_groundtruth_padded_size: [h, w] the original-resolution eval ground
      truth is padded to (at least the largest image).
    source_padded_size: [h, w] (at least the largest image) to send source
      images at, padded, and resize them to `model.input_size` in the step on
      the device, the same pixels as the host resize; empty: resize on the
      host. Worth it where sources are smaller than the input (COCO's 640 px
      at the R50 recipe's 1280: 4x fewer image bytes, and the host skips the
      resize, see docs/data_pipeline.md).
  """
  aug_rand_hflip: bool = True
  aug_scale_min: float = 1.0
  aug_scale_max: float = 1.0
  center_type: str = 'mask'
  gaussian_min_overlap: float = 0.7
  gaussian_min_radius: int = 0
  heatmap_ignore_fraction: float = 0.5
  level_size_measure: str = 'sqrt_area'
  level_base_size: float = 64.0
  level_reference_size: float = 1024.0
  max_instances: int = 0
  mask_stride: int = 4
  copy_paste_prob: float = 0.0
  copy_paste_scale_min: float = 0.1
  copy_paste_scale_max: float = 2.0
  max_segments: int = 256
  eval_groundtruth_padded_size: List[int] = dataclasses.field(
      default_factory=lambda: [640, 640])
  source_padded_size: List[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
  """Input config.

  Attributes:
    parser: augmentation and target config.
    label_map_path: the converter's label map JSON (class names and dataset
      category ids); empty to derive nothing from it. At start-up its class
      count and thing/stuff split must equal the model's (when empty, the
      converter's `<prefix>_label_map.json` beside the shards is checked).
    dtype: dtype of the normalized images the steps feed the model
      ('float32', 'bfloat16', 'float16'); images travel as uint8 and are
      normalized on the device.
    skip_corrupt_records: on a corrupted or truncated record, log a warning
      naming the file, record and byte offset and skip the rest of that file
      (TensorFlow's reader cannot resume inside a file) instead of stopping
      with that error. Off by default; `python -m
      maskconver.dataloaders.check_records` lists the bad files.
  """
  parser: Parser = dataclasses.field(default_factory=Parser)
  dtype: str = 'float32'
  label_map_path: str = ''
  shuffle_buffer_size: int = 1000
  skip_corrupt_records: bool = False


@dataclasses.dataclass
class Losses(hyperparams.Config):
  """Loss weights and focal-loss shape.

  Attributes:
    heatmap_weight: weight of the center-heatmap focal loss (paper: 1).
    stuff_region_weight: weight of the stuff-region BCE when
      `model.stuff_representation` is 'region' (Table 7); unused otherwise.
    bce_weight: weight of the mask binary cross-entropy (paper: 10).
    dice_weight: weight of the mask Dice loss (paper: 10).
    focal_alpha: focal loss exponent alpha (CenterNet: 2).
    focal_beta: focal loss penalty-reduction exponent beta (CenterNet: 4).
    l2_weight_decay: L2 regularization of the backbone (0 with AdamW).
  """
  heatmap_weight: float = 1.0
  stuff_region_weight: float = 1.0
  bce_weight: float = 10.0
  dice_weight: float = 10.0
  focal_alpha: float = 2.0
  focal_beta: float = 4.0
  l2_weight_decay: float = 0.0


@dataclasses.dataclass
class MaskConverTask(cfg.TaskConfig):
  """The MaskConver training / evaluation task.

  Attributes:
    model: network config.
    train_data: training input.
    validation_data: evaluation input.
    losses: loss config.
    init_checkpoint: checkpoint to initialize from (e.g. ImageNet backbone).
    init_checkpoint_modules: 'all' or a list of model.checkpoint_items keys.
    predictions_dir: if set, every evaluation also writes its predictions in
      the COCO panoptic format (`panoptic/*.png` + `panoptic.json`, with the
      dataset's category ids from validation_data.label_map_path) there, for
      the official evaluator or `maskconver.tools.evaluate_pq`.
  """
  model: MaskConverModel = dataclasses.field(default_factory=MaskConverModel)
  train_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=True))
  validation_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=False,
                                         drop_remainder=False))
  losses: Losses = dataclasses.field(default_factory=Losses)
  init_checkpoint: Optional[str] = None
  init_checkpoint_modules: List[str] = dataclasses.field(
      default_factory=lambda: ['backbone'])
  predictions_dir: str = ''
