"""Registered MaskConver experiments, one per recipe of the paper.

Each returns a complete ExperimentConfig; the YAML files in
configs/experiments/ override only what differs for a run.
"""

from typing import Sequence

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import optimization
from official.vision.configs import backbones

from maskconver.configs import decoders
from maskconver.configs import maskconver as maskconver_cfg

COCO_NUM_CLASSES = 133
COCO_NUM_THING_CLASSES = 80
COCO_TRAIN_EXAMPLES = 118287
COCO_VAL_EXAMPLES = 5000
# Paper's COCO schedule: AdamW, lr 1e-3, weight decay 0.05, EMA 0.99996,
# 270k steps at batch 128.
COCO_TRAIN_STEPS = 270_000
COCO_BATCH_SIZE = 128
# Validation batch: divisible by the 8, 16 or 32 replicas of the hardware the
# COCO YAMLs name (8 GPUs, TPU v3-16 / v3-32 / v4-32 slices); the last partial
# batch of the 5000 images is padded and its padding ignored by PQ.
COCO_EVAL_BATCH_SIZE = 32


def adamw_cosine(learning_rate: float, weight_decay: float, train_steps: int,
                 warmup_steps: int,
                 ema_decay: float = 0.0) -> optimization.OptimizationConfig:
  """AdamW with linear warm-up, cosine decay and optional weight EMA."""
  config = {
      'optimizer': {
          'type': 'adamw',
          'adamw': {
              'weight_decay_rate': weight_decay,
              # Kernels only, as upstream MaskConver: no decay on norms
              # (gamma, beta: also those of layers named *_bn), biases, layer
              # scales, the class-embedding table (an embedding, not a
              # kernel; decay would pull the class codes that break center
              # ties toward each other) nor the BiFPN fusion weights.
              'exclude_from_weight_decay': ['LayerNorm', 'layer_norm', 'norm',
                                            'gamma', 'beta', 'bias',
                                            'batch_normalization',
                                            'layer_scale', 'class_embedding',
                                            'fusion_weights'],
              'gradient_clip_norm': 0.0,
          },
      },
      'learning_rate': {
          'type': 'cosine',
          'cosine': {'initial_learning_rate': learning_rate,
                     'decay_steps': train_steps},
      },
      'warmup': {
          'type': 'linear',
          'linear': {'warmup_steps': warmup_steps},
      },
  }
  if ema_decay:
    config['ema'] = {'average_decay': ema_decay, 'trainable_weights_only': False}
  return optimization.OptimizationConfig(config)


def _coco_experiment(model: maskconver_cfg.MaskConverModel,
                     scale_min: float, scale_max: float,
                     source_padded_size: Sequence[int] = ()
                     ) -> cfg.ExperimentConfig:
  """The paper's COCO panoptic training setup around a model.

  `source_padded_size` (parser): resize on the device, for inputs larger
  than COCO's images (their longer side is at most 640).

  Batch norm is synchronized across replicas (`use_sync_bn`): the batch of
  128 over the 32 replicas of a TPU v3-32 slice is 4 images per replica, too
  few for per-replica batch statistics (8 GPUs: 16 per replica, where sync is
  cheap and harmless). Training slots equal the model's K (0 below).
  """
  model.norm_activation.use_sync_bn = True
  return cfg.ExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      task=maskconver_cfg.MaskConverTask(
          model=model,
          train_data=maskconver_cfg.DataConfig(
              input_path='coco/tfrecords/train-*',
              label_map_path='coco/tfrecords/train_label_map.json',
              is_training=True,
              global_batch_size=COCO_BATCH_SIZE,
              parser=maskconver_cfg.Parser(
                  aug_scale_min=scale_min, aug_scale_max=scale_max,
                  copy_paste_prob=0.5,
                  source_padded_size=list(source_padded_size))),
          validation_data=maskconver_cfg.DataConfig(
              input_path='coco/tfrecords/val-*',
              label_map_path='coco/tfrecords/val_label_map.json',
              is_training=False,
              drop_remainder=False,
              global_batch_size=COCO_EVAL_BATCH_SIZE,
              parser=maskconver_cfg.Parser(
                  aug_rand_hflip=False,
                  eval_groundtruth_padded_size=[640, 640],
                  source_padded_size=list(source_padded_size)))),
      trainer=cfg.TrainerConfig(
          train_steps=COCO_TRAIN_STEPS,
          validation_steps=-(-COCO_VAL_EXAMPLES // COCO_EVAL_BATCH_SIZE),
          validation_interval=5000,
          steps_per_loop=1000,
          summary_interval=1000,
          checkpoint_interval=5000,
          optimizer_config=adamw_cosine(1e-3, 0.05, COCO_TRAIN_STEPS, 5000,
                                        ema_decay=0.99996)),
      restrictions=['task.train_data.is_training != None',
                    'task.validation_data.is_training != None'])


@exp_factory.register_config_factory('maskconver_r50_coco')
def maskconver_r50_coco() -> cfg.ExperimentConfig:
  """ResNet-50 + ConvNeXt-UNet (N=[18,1,1], D=384, SE), heads on L3-L7.

  Paper, COCO val: 53.6 PQ at 1280x1280 training; 57M params, 171B FLOPs at
  800x1200.
  """
  model = maskconver_cfg.MaskConverModel(
      num_classes=COCO_NUM_CLASSES,
      num_thing_classes=COCO_NUM_THING_CLASSES,
      input_size=[1280, 1280, 3],
      min_level=3, max_level=7,
      mask_feature_levels=[3, 4, 5],
      embedding_size=512,
      num_instances=256,
      score_activation='sigmoid',
      backbone=backbones.Backbone(type='resnet',
                                  resnet=backbones.ResNet(model_id=50)),
      decoder=decoders.Decoder(
          type='convnext_unet',
          convnext_unet=decoders.ConvNeXtUNet(
              num_blocks=[18, 1, 1], num_filters=[384, 384, 384],
              use_se=True)),
      center_head=maskconver_cfg.Head(num_blocks=4, num_filters=256),
      mask_head=maskconver_cfg.Head(num_blocks=1, num_filters=256))
  return _coco_experiment(model, scale_min=0.05, scale_max=2.9,
                          source_padded_size=[640, 640])


def _mnmh_model(size: int) -> maskconver_cfg.MaskConverModel:
  """MobileNet-MH + DeepLabv3+, heads on L3 only, hard-sigmoid, K=50.

  The phone recipe: ASPP with depthwise atrous branches at rates 6, 12, 18
  (DeepLabv3+'s and upstream MaskConver's mobile recipe), phone heads
  (`separable_bn`: 3x3 depthwise + 1x1 with BatchNorm and ReLU, folded into
  the convs at export; the paper does not name the mobile heads' norm) and
  the fast panoptic merge at mask resolution. ASPP has 128 filters (Model
  Garden's DeepLabv3+ default): with 256, the three atrous branches would
  put the recipe at 3.86M params and 10.4B FLOPs at 640 (Table 1: 3.4M,
  9.5B); with 128 it measures 3.29M, 9.30B at 640 and 1.50B at 256.
  """
  return maskconver_cfg.MaskConverModel(
      num_classes=COCO_NUM_CLASSES,
      num_thing_classes=COCO_NUM_THING_CLASSES,
      input_size=[size, size, 3],
      min_level=3, max_level=3,
      mask_feature_levels=[3],
      embedding_size=256,
      num_instances=50,
      score_activation='hard_sigmoid',
      backbone=backbones.Backbone(
          type='mobilenet',
          mobilenet=backbones.MobileNet(model_id='MobileNetMultiAVGSeg',
                                        output_stride=16)),
      decoder=decoders.Decoder(
          type='deeplabv3plus',
          deeplabv3plus=decoders.DeepLabV3Plus(
              aspp_level=4, dilation_rates=[6, 12, 18],
              aspp_num_filters=128, aspp_use_depthwise_convolution=True,
              low_level=3, low_level_num_filters=48, num_filters=256)),
      center_head=maskconver_cfg.Head(block_type='separable_bn',
                                      num_blocks=2, num_filters=256),
      mask_head=maskconver_cfg.Head(block_type='separable_bn',
                                    num_blocks=1, num_filters=128),
      postprocessor=maskconver_cfg.PanopticPostprocessor(merge_method='fast'))


@exp_factory.register_config_factory('maskconver_mnmh_coco_640')
def maskconver_mnmh_coco_640() -> cfg.ExperimentConfig:
  """MobileNet-MH at 640x640. Paper: 37.2 PQ, 3.4M params, 9.5B FLOPs."""
  return _coco_experiment(_mnmh_model(640), scale_min=0.05, scale_max=2.9)


@exp_factory.register_config_factory('maskconver_mnmh_coco_256')
def maskconver_mnmh_coco_256() -> cfg.ExperimentConfig:
  """MobileNet-MH at 256x256. Paper: 29.7 PQ, 1.5B FLOPs."""
  config = _coco_experiment(_mnmh_model(256), scale_min=0.05, scale_max=2.9)
  config.task.validation_data.parser.eval_groundtruth_padded_size = [640, 640]
  return config


# The embedded synthetic dataset (maskconver.data.synthetic): 4 thing and 3
# stuff classes on 128x128 images.
SYNTHETIC_NUM_CLASSES = 7
SYNTHETIC_NUM_THING_CLASSES = 4


@exp_factory.register_config_factory('maskconver_synthetic')
def maskconver_synthetic() -> cfg.ExperimentConfig:
  """A small MaskConver for the synthetic dataset, trainable on a CPU.

  The R50 recipe's structure (ConvNeXt-UNet, shared heads on L3-L5, light
  heads, class embedding) at a width a laptop trains in minutes: ResNet-18 at
  half width from scratch. Input paths come from the YAML or overrides.
  """
  train_steps = 2000
  model = maskconver_cfg.MaskConverModel(
      num_classes=SYNTHETIC_NUM_CLASSES,
      num_thing_classes=SYNTHETIC_NUM_THING_CLASSES,
      input_size=[128, 128, 3],
      min_level=3, max_level=5,
      mask_feature_levels=[3, 4, 5],
      embedding_size=64,
      num_instances=20,
      backbone=backbones.Backbone(
          type='resnet',
          resnet=backbones.ResNet(model_id=18, depth_multiplier=0.5)),
      decoder=decoders.Decoder(
          type='convnext_unet',
          convnext_unet=decoders.ConvNeXtUNet(
              num_blocks=[1, 1, 1], num_filters=[64, 64, 64], use_se=True,
              layer_scale_init_value=1.0)),
      center_head=maskconver_cfg.Head(num_blocks=1, num_filters=64),
      mask_head=maskconver_cfg.Head(num_blocks=1, num_filters=64))
  return cfg.ExperimentConfig(
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='float32'),
      task=maskconver_cfg.MaskConverTask(
          model=model,
          init_checkpoint_modules=[],
          allow_image_summary=True,
          train_data=maskconver_cfg.DataConfig(
              is_training=True,
              global_batch_size=16,
              shuffle_buffer_size=500,
              parser=maskconver_cfg.Parser(
                  aug_scale_min=0.75, aug_scale_max=1.25, max_instances=24,
                  level_reference_size=128.0, level_base_size=24.0,
                  eval_groundtruth_padded_size=[128, 128])),
          validation_data=maskconver_cfg.DataConfig(
              is_training=False,
              drop_remainder=False,
              global_batch_size=16,
              parser=maskconver_cfg.Parser(
                  aug_rand_hflip=False, max_instances=24,
                  level_reference_size=128.0, level_base_size=24.0,
                  eval_groundtruth_padded_size=[128, 128]))),
      trainer=cfg.TrainerConfig(
          train_steps=train_steps,
          validation_steps=-1,
          validation_interval=train_steps,
          steps_per_loop=50,
          summary_interval=50,
          checkpoint_interval=250,
          max_to_keep=3,
          optimizer_config=adamw_cosine(2e-3, 0.05, train_steps, 100)),
      restrictions=['task.train_data.is_training != None',
                    'task.validation_data.is_training != None'])


@exp_factory.register_config_factory('maskconver_mnmh_synthetic')
def maskconver_mnmh_synthetic() -> cfg.ExperimentConfig:
  """The mobile recipe's structure on the synthetic dataset, on a CPU.

  MobileNet-MH (MobileNetMultiAVGSeg, output stride 16) + DeepLabv3+ with
  depthwise atrous ASPP, phone heads (`separable_bn`) on L3 only,
  hard-sigmoid scores and the fast merge, at the widths of
  `maskconver_synthetic` (64) and trained like it from scratch. The ASPP
  rates are the COCO recipe's [6, 12, 18] scaled from its 40x40 level-4 map
  at 640 px to the 8x8 one at 128 px. Measures the head variants and the
  exported models' PQ (README, "Export" and "On a phone").
  """
  config = maskconver_synthetic()
  model = _mnmh_model(128)
  model.num_classes = SYNTHETIC_NUM_CLASSES
  model.num_thing_classes = SYNTHETIC_NUM_THING_CLASSES
  model.embedding_size = 64
  model.num_instances = 20
  model.decoder.deeplabv3plus.dilation_rates = [1, 2, 4]
  model.decoder.deeplabv3plus.aspp_num_filters = 64
  model.decoder.deeplabv3plus.low_level_num_filters = 24
  model.decoder.deeplabv3plus.num_filters = 64
  model.center_head.num_blocks = 1
  model.center_head.num_filters = 64
  model.mask_head.num_filters = 64
  config.task.model = model
  return config
