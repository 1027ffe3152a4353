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
    self._projection = mask_projection.MaskProjection(name='mask_projection')

  def call(self,
           images: tf.Tensor,
           center_indices: Optional[tf.Tensor] = None,
           classes: Optional[tf.Tensor] = None,
           training: Optional[bool] = None) -> Dict[str, Any]:
    """Runs the network.

    Args:
      images: float [batch, height, width, 3], normalized.
      center_indices: int32 [batch, N] flat center indices (keys.py) of the
        masks to produce; None selects the top-K centers (inference).
      classes: int32 [batch, N] class of each given center; required with
        center_indices.
      training: Keras training flag.

    Returns:
      {CLASS_HEATMAP_LOGITS, CENTER_EMBEDDINGS: {str(level): ...},
       MASK_FEATURES, MASK_LOGITS [batch, H/4, W/4, N or K]}, plus
      DETECTED_CLASSES, DETECTED_SCORES, DETECTED_CENTER_INDICES when
      selecting centers, plus the postprocessor's outputs if it has one.
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
    if center_indices is None:
      if classes is not None:
        raise ValueError('classes given without center_indices')
      selected = self.selector(outputs[keys.CLASS_HEATMAP_LOGITS])
      center_indices = selected['center_indices']
      classes = selected['classes']
      outputs[keys.DETECTED_CLASSES] = classes
      outputs[keys.DETECTED_SCORES] = selected['scores']
      outputs[keys.DETECTED_CENTER_INDICES] = center_indices
    elif classes is None:
      raise ValueError('center_indices given without classes')
    outputs[keys.MASK_LOGITS] = self.masks_for_centers(outputs,
                                                      center_indices, classes)
    if self.postprocessor is not None and keys.DETECTED_SCORES in outputs:
      outputs.update(self.postprocessor(outputs, tf.shape(images)[1:3]))
    return outputs

  def masks_for_centers(self, outputs: Mapping[str, Any],
                        center_indices: tf.Tensor,
                        classes: tf.Tensor) -> tf.Tensor:
    """Mask logits of given centers from the outputs of a forward pass.

    Args:
      outputs: the model's outputs (CENTER_EMBEDDINGS and MASK_FEATURES).
      center_indices: int32 [batch, N] flat center indices (keys.py).
      classes: int32 [batch, N] class of each center.

    Returns:
      float [batch, H/4, W/4, N] mask logits.
    """
    embeddings = self.generator(outputs[keys.CENTER_EMBEDDINGS],
                                center_indices, classes)
    return self._projection(outputs[keys.MASK_FEATURES], embeddings)

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
    }

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)
