"""The MaskConver model: composes backbone, decoder, heads and generator."""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from maskconver import keys
from maskconver.modeling.heads import center_embedding_head
from maskconver.modeling.heads import center_heatmap_head
from maskconver.modeling.heads import mask_feature_head
from maskconver.modeling.layers import center_selector
from maskconver.modeling.layers import mask_embedding_generator
from maskconver.modeling.layers import mask_projection
from maskconver.modeling.layers import score_activation
from maskconver.modeling.layers import stuff_regions


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskConverModel(tf_keras.Model):
  """MaskConver panoptic segmentation network.

  backbone -> decoder -> {center heatmap head, center embedding head} on levels
  min_level..max_level, and the mask feature head at stride 4. Masks come from
  centers: with `center_indices` and `classes` given (training, teacher
  forcing on ground-truth centers), the masks of those centers; without them
  (inference), the masks of the top-K centers picked by `center_selector`.
  Both paths trace without ground truth, so the model saves as a SavedModel in
  either mode.

  With a `stuff_region_head` (stuff as regions, the paper's Table 7), the
  center heads cover the thing classes only, and each of the S stuff classes
  gets one mask from the center embeddings of min_level averaged over its
  region (`stuff_regions`): at inference over its predicted region map, the
  S stuff masks following the K thing masks (K + S in all); in training over
  each stuff target's ground-truth mask (`is_thing`, `target_masks`), in the
  targets' order.
  """

  def __init__(self,
               backbone: tf_keras.Model,
               decoder: Optional[tf_keras.Model],
               heatmap_head: center_heatmap_head.CenterHeatmapHead,
               embedding_head: center_embedding_head.CenterEmbeddingHead,
               mask_head: mask_feature_head.MaskFeatureHead,
               generator: mask_embedding_generator.MaskEmbeddingGenerator,
               selector: center_selector.CenterSelector,
               postprocessor: Optional[tf_keras.layers.Layer] = None,
               stuff_region_head: Optional[
                   center_heatmap_head.CenterHeatmapHead] = None,
               num_thing_classes: int = 0,
               **kwargs):
    """Initializes the model.

    Args:
      backbone: maps images to {str(level): features}.
      decoder: maps backbone features to {str(level): features}, or None to
        use the backbone features directly.
      heatmap_head: center heatmap head.
      embedding_head: center embedding head (same levels as heatmap_head).
      mask_head: mask feature head.
      generator: center embeddings + classes -> mask embeddings.
      selector: top-K center selection for inference.
      postprocessor: optional layer turning inference outputs into panoptic
        maps; called as postprocessor(outputs, image_shape).
      stuff_region_head: region logits of the stuff classes on min_level, for
        stuff as regions; None: stuff classes have centers.
      num_thing_classes: id of the first stuff class (with a
        stuff_region_head).
      **kwargs: passed to the Model.
    """
    super().__init__(**kwargs)
    self.backbone = backbone
    self.decoder = decoder
    self.heatmap_head = heatmap_head
    self.embedding_head = embedding_head
    self.mask_head = mask_head
    self.generator = generator
    self.selector = selector
    self.postprocessor = postprocessor
    self.stuff_region_head = stuff_region_head
    self.num_thing_classes = num_thing_classes
    self._projection = mask_projection.MaskProjection(name='mask_projection')
    self._stuff_pooling = stuff_regions.StuffRegionPooling(
        name='stuff_region_pooling')

  def call(self,
           images: tf.Tensor,
           center_indices: Optional[tf.Tensor] = None,
           classes: Optional[tf.Tensor] = None,
           training: Optional[bool] = None,
           is_thing: Optional[tf.Tensor] = None,
           target_masks: Optional[tf.Tensor] = None) -> Dict[str, Any]:
    """Runs the network.

    Args:
      images: float [batch, height, width, 3], normalized.
      center_indices: int32 [batch, N] flat center indices (keys.py) of the
        masks to produce; None selects the top-K centers (inference).
      classes: int32 [batch, N] class of each given center; required with
        center_indices.
      training: Keras training flag.
      is_thing: bool [batch, N], with center_indices when stuff is regions.
      target_masks: [batch, N, H/4, W/4] 0 / 1 masks of the given targets,
        with center_indices when stuff is regions (the stuff targets' masks
        are their regions).

    Returns:
      {CLASS_HEATMAP_LOGITS, CENTER_EMBEDDINGS: {str(level): ...},
       MASK_FEATURES, MASK_LOGITS [batch, H/4, W/4, N or K]}, plus
      DETECTED_CLASSES, DETECTED_SCORES, DETECTED_CENTER_INDICES when
      selecting centers (K + S of them with stuff regions, stuff centers -1),
      STUFF_REGION_LOGITS with stuff regions, plus the postprocessor's
      outputs if it has one.
    """
    features = self.backbone(images, training=training)
    if self.decoder is not None:
      features = self.decoder(
          {k: v for k, v in features.items() if k in self.decoder.input},
          training=training)
    outputs = {
        keys.CLASS_HEATMAP_LOGITS: self.heatmap_head(features),
        keys.CENTER_EMBEDDINGS: self.embedding_head(features),
        keys.MASK_FEATURES: self.mask_head(features),
    }
    if self.stuff_region_head is not None:
      level = str(self.stuff_region_head.min_level)
      outputs[keys.STUFF_REGION_LOGITS] = self.stuff_region_head(
          features)[level]
    if center_indices is None:
      if classes is not None:
        raise ValueError('classes given without center_indices')
      selected = self.selector(outputs[keys.CLASS_HEATMAP_LOGITS])
      outputs[keys.DETECTED_CLASSES] = selected['classes']
      outputs[keys.DETECTED_SCORES] = selected['scores']
      outputs[keys.DETECTED_CENTER_INDICES] = selected['center_indices']
      outputs[keys.MASK_LOGITS] = self._projection(
          outputs[keys.MASK_FEATURES],
          self.generator(outputs[keys.CENTER_EMBEDDINGS],
                         selected['center_indices'], selected['classes']))
      if self.stuff_region_head is not None:
        self._append_stuff_detections(outputs)
    else:
      if classes is None:
        raise ValueError('center_indices given without classes')
      outputs[keys.MASK_LOGITS] = self.masks_for_centers(
          outputs, center_indices, classes, is_thing=is_thing,
          target_masks=target_masks)
    if self.postprocessor is not None and keys.DETECTED_SCORES in outputs:
      outputs.update(self.postprocessor(outputs, tf.shape(images)[1:3]))
    return outputs

  def masks_for_centers(self, outputs: Mapping[str, Any],
                        center_indices: tf.Tensor,
                        classes: tf.Tensor,
                        is_thing: Optional[tf.Tensor] = None,
                        target_masks: Optional[tf.Tensor] = None
                        ) -> tf.Tensor:
    """Mask logits of given targets from the outputs of a forward pass.

    Args:
      outputs: the model's outputs (CENTER_EMBEDDINGS and MASK_FEATURES).
      center_indices: int32 [batch, N] flat center indices (keys.py).
      classes: int32 [batch, N] class of each center.
      is_thing: bool [batch, N]; needed when stuff is regions, where the
        stuff targets' embeddings come from their regions.
      target_masks: [batch, N, H/4, W/4] 0 / 1 target masks; needed when
        stuff is regions.

    Returns:
      float [batch, H/4, W/4, N] mask logits.

    Raises:
      ValueError: stuff as regions without is_thing and target_masks.
    """
    embeddings = self.generator(outputs[keys.CENTER_EMBEDDINGS],
                                center_indices, classes)
    if self.stuff_region_head is not None:
      if is_thing is None or target_masks is None:
        raise ValueError(
            'stuff as regions (stuff_representation: region) needs is_thing '
            'and target_masks with the targets: the stuff targets\' '
            'embeddings come from their masks')
      level = self.stuff_region_head.min_level
      regions = stuff_regions.masks_to_level(
          target_masks, 2**level // self.mask_head.output_stride)
      pooled = self._stuff_pooling(
          regions, outputs[keys.CENTER_EMBEDDINGS][str(level)])
      stuff = self.generator.embed(pooled, classes)
      embeddings = tf.where(tf.cast(is_thing, tf.bool)[..., tf.newaxis],
                            embeddings, tf.cast(stuff, embeddings.dtype))
    return self._projection(outputs[keys.MASK_FEATURES], embeddings)

  def _append_stuff_detections(self, outputs: Dict[str, Any]) -> None:
    """Adds one detection per stuff class after the K thing detections.

    Its region map is the activated region logits; its embedding the
    region-weighted average of the min_level center embeddings; its score the
    largest region probability in the image.
    """
    logits = tf.cast(outputs[keys.STUFF_REGION_LOGITS], tf.float32)
    regions = score_activation.score_activation(logits,
                                                self.selector.activation)
    level = str(self.stuff_region_head.min_level)
    pooled = self._stuff_pooling(regions,
                                 outputs[keys.CENTER_EMBEDDINGS][level])
    batch = tf.shape(logits)[0]
    num_stuff = logits.shape[-1]
    classes = tf.broadcast_to(
        tf.range(self.num_thing_classes,
                 self.num_thing_classes + num_stuff, dtype=tf.int32),
        [batch, num_stuff])
    stuff_masks = self._projection(outputs[keys.MASK_FEATURES],
                                   self.generator.embed(pooled, classes))
    outputs[keys.MASK_LOGITS] = tf.concat(
        [outputs[keys.MASK_LOGITS],
         tf.cast(stuff_masks, outputs[keys.MASK_LOGITS].dtype)], axis=-1)
    outputs[keys.DETECTED_CLASSES] = tf.concat(
        [outputs[keys.DETECTED_CLASSES], classes], axis=1)
    outputs[keys.DETECTED_SCORES] = tf.concat(
        [outputs[keys.DETECTED_SCORES],
         tf.reduce_max(regions, axis=[1, 2])], axis=1)
    outputs[keys.DETECTED_CENTER_INDICES] = tf.concat(
        [outputs[keys.DETECTED_CENTER_INDICES],
         tf.fill([batch, num_stuff], -1)], axis=1)

  @property
  def projection(self) -> mask_projection.MaskProjection:
    """The mask einsum (its fully connected form: export_module)."""
    return self._projection

  @property
  def checkpoint_items(self) -> Mapping[str, tf.Module]:
    """Sub-modules that can be restored on their own (e.g. the backbone)."""
    items = {'backbone': self.backbone}
    if self.decoder is not None:
      items['decoder'] = self.decoder
    return items

  def get_config(self) -> Dict[str, Any]:
    return {
        'backbone': self.backbone,
        'decoder': self.decoder,
        'heatmap_head': self.heatmap_head,
        'embedding_head': self.embedding_head,
        'mask_head': self.mask_head,
        'generator': self.generator,
        'selector': self.selector,
        'postprocessor': self.postprocessor,
        'stuff_region_head': self.stuff_region_head,
        'num_thing_classes': self.num_thing_classes,
    }

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)
