"""Builds MaskConver models from configs (decoders: decoders/factory.py).

With `modeling.decoders.factory`, the only modules that read the model config.
"""

from typing import Mapping, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling.backbones import factory as backbone_factory

from maskconver.configs import maskconver as maskconver_cfg
from maskconver.modeling import maskconver_model
from maskconver.modeling import panoptic_postprocessor
from maskconver.modeling.decoders import factory as decoder_factory
from maskconver.modeling.heads import center_embedding_head
from maskconver.modeling.heads import center_heatmap_head
from maskconver.modeling.heads import mask_feature_head
from maskconver.modeling.layers import center_selector
from maskconver.modeling.layers import mask_embedding_generator


STUFF_REPRESENTATIONS = ('center', 'region')


def _stuff_region_head(model_config: maskconver_cfg.MaskConverModel,
                       head_kwargs: Mapping[str, object]):
  """(stuff region head or None, classes of the center heatmap head).

  Stuff as regions (Table 7): the center heads cover the thing classes; a
  head like them on min_level predicts the stuff classes' region logits.
  """
  representation = model_config.stuff_representation
  if representation not in STUFF_REPRESENTATIONS:
    raise ValueError(f'stuff_representation must be one of '
                     f'{STUFF_REPRESENTATIONS}, got {representation!r}')
  if representation == 'center':
    return None, model_config.num_classes
  num_stuff = model_config.num_classes - model_config.num_thing_classes
  if num_stuff < 1:
    raise ValueError('stuff_representation: region needs stuff classes '
                     f'(num_classes {model_config.num_classes} = '
                     f'num_thing_classes {model_config.num_thing_classes})')
  kwargs = dict(head_kwargs, max_level=model_config.min_level)
  return (center_heatmap_head.CenterHeatmapHead(
      num_classes=num_stuff, name='stuff_region_head', **kwargs),
          model_config.num_thing_classes)


def build_maskconver_model(
    input_specs: tf_keras.layers.InputSpec,
    model_config: maskconver_cfg.MaskConverModel,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> maskconver_model.MaskConverModel:
  """Builds a MaskConver model.

  Args:
    input_specs: input spec, [batch, height, width, 3].
    model_config: the model config.
    l2_regularizer: L2 regularizer of the backbone (and DeepLabv3+ decoder).

  Returns:
    The model, built (its variables exist).
  """
  if not 0 < model_config.num_thing_classes <= model_config.num_classes:
    raise ValueError(
        f'num_thing_classes ({model_config.num_thing_classes}) must lie in '
        f'(0, num_classes = {model_config.num_classes}]')
  backbone = backbone_factory.build_backbone(
      input_specs=input_specs,
      backbone_config=model_config.backbone,
      norm_activation_config=model_config.norm_activation,
      l2_regularizer=l2_regularizer)
  decoder = decoder_factory.build_decoder(backbone.output_specs, model_config,
                                         l2_regularizer)
  feature_specs = decoder.output_specs if decoder else backbone.output_specs
  head_levels = [str(l) for l in range(model_config.min_level,
                                       model_config.max_level + 1)]
  needed = set(head_levels) | {str(l) for l in model_config.mask_feature_levels}
  missing = sorted(needed - set(feature_specs))
  if missing:
    raise ValueError(
        f'decoder {model_config.decoder.type!r} outputs levels '
        f'{sorted(feature_specs)}, but the heads need {missing} '
        '(check min_level, max_level and mask_feature_levels)')
  shared_levels = sorted(needed, key=int)
  channels = {feature_specs[l][-1] for l in shared_levels}
  if len(channels) != 1:
    raise ValueError(
        f'shared heads need equal channels on levels {shared_levels}, got '
        f'{sorted(channels)} from decoder {model_config.decoder.type!r} '
        '(convnext_unet projects them when decoder.convnext_unet.'
        'output_num_filters >= 0)')

  head = model_config.center_head
  head_kwargs = dict(
      min_level=model_config.min_level, max_level=model_config.max_level,
      num_blocks=head.num_blocks, num_filters=head.num_filters,
      block_type=head.block_type, kernel_size=head.kernel_size)
  mask_head = model_config.mask_head
  stuff_region_head, num_center_classes = _stuff_region_head(model_config,
                                                             head_kwargs)
  model = maskconver_model.MaskConverModel(
      backbone=backbone,
      decoder=decoder,
      heatmap_head=center_heatmap_head.CenterHeatmapHead(
          num_classes=num_center_classes, name='center_heatmap_head',
          **head_kwargs),
      embedding_head=center_embedding_head.CenterEmbeddingHead(
          embedding_size=model_config.embedding_size,
          name='center_embedding_head', **head_kwargs),
      mask_head=mask_feature_head.MaskFeatureHead(
          levels=model_config.mask_feature_levels,
          embedding_size=model_config.embedding_size,
          num_blocks=mask_head.num_blocks,
          num_filters=mask_head.num_filters,
          block_type=mask_head.block_type,
          kernel_size=mask_head.kernel_size,
          name='mask_feature_head'),
      generator=mask_embedding_generator.MaskEmbeddingGenerator(
          num_classes=model_config.num_classes,
          embedding_size=model_config.embedding_size,
          min_level=model_config.min_level,
          max_level=model_config.max_level,
          use_class_embedding=model_config.use_class_embedding,
          mlp_hidden_size=model_config.mlp_hidden_size,
          name='mask_embedding_generator'),
      selector=center_selector.CenterSelector(
          num_instances=model_config.num_instances,
          min_level=model_config.min_level,
          max_level=model_config.max_level,
          activation=model_config.score_activation,
          nms_kernel_size=model_config.nms_kernel_size,
          name='center_selector'),
      stuff_region_head=stuff_region_head,
      num_thing_classes=model_config.num_thing_classes,
      name='maskconver')
  height, width = input_specs.shape[1:3]
  model(tf.zeros([1, height or 256, width or 256, 3]), training=False)
  return model


def build_panoptic_postprocessor(
    model_config: maskconver_cfg.MaskConverModel
) -> panoptic_postprocessor.PanopticPostprocessor:
  """Builds the panoptic merge layer of `model_config.postprocessor`.

  Masks are activated like the center scores (`score_activation`).
  """
  config = model_config.postprocessor
  return panoptic_postprocessor.PanopticPostprocessor(
      num_classes=model_config.num_classes,
      num_thing_classes=model_config.num_thing_classes,
      score_threshold=config.score_threshold,
      overlap_threshold=config.overlap_threshold,
      mask_threshold=config.mask_threshold,
      mask_activation=model_config.score_activation,
      merge_method=config.merge_method,
      fast_refine_share=config.fast_refine_share,
      name='panoptic_postprocessor')
