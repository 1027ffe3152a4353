"""MaskFormer-style merge of MaskConver's K masks into a panoptic map.

Pure TF with static-shaped outputs and only TFLite builtin ops (resize,
activation, argmax, top_k, one_hot, gather, reduce, cumsum), so the layer runs
in training-time evaluation, in a SavedModel and in a TFLite model.
"""

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import tensorflow as tf
import tf_keras

from maskconver import keys
from maskconver.modeling.layers import score_activation

MASK_ACTIVATIONS = score_activation.ACTIVATIONS

SizeLike = Union[Sequence[int], tf.Tensor]


@tf_keras.utils.register_keras_serializable(package='maskconver')
class PanopticPostprocessor(tf_keras.layers.Layer):
  """Merges K scored, classified masks into one panoptic segmentation.

  For each image:

  1. Detections scoring below `score_threshold` (or with a class outside
     `[0, num_classes)`) are dropped.
  2. Mask logits are resized (bilinear) to the target size and turned into
     probabilities with `mask_activation`.
  3. Each pixel goes to the kept detection maximising score * probability
     (ties: the lower index).
  4. Detection k keeps the pixels it wins where its probability is at least
     `mask_threshold`; it is kept as a segment if that area is positive and at
     least `overlap_threshold` of the pixels where its probability is at
     least `mask_threshold`. Pixels of dropped detections, and pixels whose
     winner has a probability below `mask_threshold`, are void.
  5. All kept detections of one stuff class form one segment, indexed by the
     highest-scoring of them (ties: the lower index); each kept thing
     detection is its own segment, with instance ids 1 .. n in detection
     order.

  Segments are indexed by detection slot: segment index s in 0 .. K - 1 is
  the segment whose representative is detection s; unused slots have class
  VOID_CLASS.
  """

  def __init__(self,
               num_classes: int,
               num_thing_classes: int,
               score_threshold: float = 0.2,
               overlap_threshold: float = 0.75,
               mask_threshold: float = 0.5,
               output_size: Optional[Sequence[int]] = None,
               mask_activation: str = 'sigmoid',
               max_candidates: Optional[int] = None,
               **kwargs):
    """Initializes the layer.

    Args:
      num_classes: training classes, things first (see maskconver.keys).
      num_thing_classes: how many of the classes are things.
      score_threshold: minimum detection score kept (paper: 0.2).
      overlap_threshold: minimum share of a mask that must survive the merge
        (paper: 0.75).
      mask_threshold: probability from which a pixel belongs to a mask.
      output_size: (height, width) of the outputs; None resizes to the
        `image_size` given to `call`.
      mask_activation: 'sigmoid', or 'hard_sigmoid' (relu6(x + 3) / 6) for
        mobile targets.
      max_candidates: if set and smaller than K, only the `max_candidates`
        best-scoring valid detections are upsampled and merged, which makes
        the cost independent of K; the result is the same whenever at most
        `max_candidates` detections pass the score threshold. None merges
        all K.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    if not 0 <= num_thing_classes <= num_classes or num_classes <= 0:
      raise ValueError(
          f'need 0 <= num_thing_classes ({num_thing_classes}) <= num_classes '
          f'({num_classes}) and num_classes > 0')
    for name, value in (('score_threshold', score_threshold),
                        ('overlap_threshold', overlap_threshold),
                        ('mask_threshold', mask_threshold)):
      if not 0.0 <= value <= 1.0:
        raise ValueError(f'{name} must lie in [0, 1], got {value}')
    if mask_activation not in MASK_ACTIVATIONS:
      raise ValueError(f'mask_activation must be one of {MASK_ACTIVATIONS}, '
                       f'got {mask_activation!r}')
    if max_candidates is not None and max_candidates <= 0:
      raise ValueError(f'max_candidates must be positive, got '
                       f'{max_candidates}')
    if output_size is not None:
      output_size = [int(v) for v in output_size]
      if len(output_size) != 2 or min(output_size) <= 0:
        raise ValueError(f'output_size must be (height, width) > 0, got '
                         f'{output_size}')
    self.num_classes = num_classes
    self.num_thing_classes = num_thing_classes
    self.score_threshold = score_threshold
    self.overlap_threshold = overlap_threshold
    self.mask_threshold = mask_threshold
    self.output_size = output_size
    self.mask_activation = mask_activation
    self.max_candidates = max_candidates

  def _target_size(self, image_size: Optional[SizeLike]) -> Any:
    """Returns the output (height, width), as Python ints when static."""
    if self.output_size is not None:
      return tuple(self.output_size)
    if image_size is None:
      raise ValueError('PanopticPostprocessor needs output_size or an '
                       'image_size argument')
    static = tf.get_static_value(image_size)
    if static is not None:
      return tuple(int(v) for v in static)
    return tf.cast(image_size, tf.int32)

  def call(self,
           inputs: Mapping[str, tf.Tensor],
           image_size: Optional[SizeLike] = None) -> Dict[str, tf.Tensor]:
    """Merges the masks.

    Args:
      inputs: a dict with
        keys.MASK_LOGITS: float [batch, mask_h, mask_w, K], mask logits;
        keys.DETECTED_CLASSES: int32 [batch, K], training class ids;
        keys.DETECTED_SCORES: float [batch, K], scores in [0, 1].
      image_size: int [2], (height, width) of the outputs, typically the
        model's input size; ignored when the layer has an `output_size`.

    Returns:
      A dict with
        keys.CATEGORY_MASK: int32 [batch, height, width], training class per
          pixel, VOID_CLASS on void;
        keys.INSTANCE_MASK: int32 [batch, height, width], 1 .. n per thing
          segment, 0 on stuff and void;
        keys.PANOPTIC_SEGMENT_MAP: int32 [batch, height, width], segment index
          + 1, 0 on void;
        keys.SEGMENT_CLASSES_OUT: int32 [batch, K], class of segment index s,
          VOID_CLASS for slots that are not a segment;
        keys.SEGMENT_SCORES_OUT: float32 [batch, K], score of each segment (a
          merged stuff segment has its best score), 0 for unused slots;
        keys.SEGMENT_IS_THING_OUT: bool [batch, K], True for thing segments,
          False for stuff segments and unused slots.
    """
    mask_logits = tf.cast(inputs[keys.MASK_LOGITS], tf.float32)
    classes = tf.cast(inputs[keys.DETECTED_CLASSES], tf.int32)
    scores = tf.cast(inputs[keys.DETECTED_SCORES], tf.float32)
    num_instances = mask_logits.shape[-1]
    if num_instances is None:
      raise ValueError('the number of masks (last dim of MASK_LOGITS) must be '
                       'static')
    valid = ((classes >= 0) & (classes < self.num_classes) &
             (scores >= self.score_threshold))

    candidates = None
    if self.max_candidates and self.max_candidates < num_instances:
      # The best-scoring valid detections, kept in slot order so that ties
      # resolve as without the selection.
      candidates = tf.sort(tf.math.top_k(
          tf.where(valid, scores, -1.0), k=self.max_candidates).indices)
      mask_logits = tf.gather(mask_logits, candidates, axis=3, batch_dims=1)
      classes, scores, valid = (tf.gather(t, candidates, batch_dims=1)
                                for t in (classes, scores, valid))

    size = self._target_size(image_size)
    if not (isinstance(size, tuple) and
            size == tuple(mask_logits.shape[1:3])):
      mask_logits = tf.image.resize(mask_logits, size, method='bilinear')
    probs = score_activation.score_activation(mask_logits,
                                              self.mask_activation)
    outputs = self._merge(probs, classes, scores, valid)
    if candidates is None:
      return outputs

    # Back from candidate index to detection slot.
    segment_map = outputs[keys.PANOPTIC_SEGMENT_MAP]
    slot_plus_one = tf.concat(
        [tf.zeros_like(candidates[:, :1]), candidates + 1], axis=1)
    outputs[keys.PANOPTIC_SEGMENT_MAP] = tf.gather(
        slot_plus_one, segment_map, batch_dims=1)
    # [batch, max_candidates, K], 1 where candidate c is slot k.
    to_slot = tf.one_hot(candidates, num_instances, dtype=tf.float32)
    is_segment = tf.reduce_max(to_slot * tf.cast(
        outputs[keys.SEGMENT_CLASSES_OUT] != keys.VOID_CLASS,
        tf.float32)[..., None], axis=1) > 0.0
    all_classes = tf.cast(inputs[keys.DETECTED_CLASSES], tf.int32)
    outputs[keys.SEGMENT_CLASSES_OUT] = tf.where(is_segment, all_classes,
                                                 keys.VOID_CLASS)
    outputs[keys.SEGMENT_SCORES_OUT] = tf.where(
        is_segment, tf.cast(inputs[keys.DETECTED_SCORES], tf.float32), 0.0)
    outputs[keys.SEGMENT_IS_THING_OUT] = (
        is_segment & (all_classes < self.num_thing_classes))
    return outputs

  def _merge(self, probs: tf.Tensor, classes: tf.Tensor, scores: tf.Tensor,
             valid: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Merges N masks at the output size; see `call` for the outputs.

    Args:
      probs: float32 [batch, height, width, N], mask probabilities.
      classes: int32 [batch, N], training class ids.
      scores: float32 [batch, N], detection scores.
      valid: bool [batch, N], detections passing the score threshold.

    Returns:
      The outputs of `call`, with segments indexed by 0 .. N - 1.
    """
    num_masks = probs.shape[-1]
    ranking = probs * tf.where(valid, scores, 0.0)[:, None, None, :]
    winner = tf.argmax(ranking, axis=-1, output_type=tf.int32)
    winner_prob = tf.gather(probs, winner[..., None], batch_dims=3)[..., 0]
    winner_valid = tf.gather(valid, winner, batch_dims=1)
    foreground = winner_valid & (winner_prob >= self.mask_threshold)

    # Area each detection wins; index N (one_hot gives zeros) for background.
    won_index = tf.where(foreground, winner, num_masks)
    won_area = tf.reduce_sum(
        tf.one_hot(won_index, num_masks, dtype=tf.float32), axis=[1, 2])
    mask_area = tf.reduce_sum(
        tf.cast(probs >= self.mask_threshold, tf.float32), axis=[1, 2])
    kept = (valid & (won_area > 0.0) & (tf.math.divide_no_nan(
        won_area, mask_area) >= self.overlap_threshold))

    is_thing = classes < self.num_thing_classes
    kept_thing = kept & is_thing
    kept_stuff = kept & tf.logical_not(is_thing)
    # For each kept stuff detection, its best-scoring kept detection of the
    # same class (argmax returns the lower index on ties).
    same_stuff = (kept_stuff[:, :, None] & kept_stuff[:, None, :] &
                  tf.equal(classes[:, :, None], classes[:, None, :]))
    candidate_scores = tf.where(same_stuff, scores[:, None, :], -1.0)
    slots = tf.range(num_masks, dtype=tf.int32)[None, :]
    representative = tf.where(
        kept_stuff, tf.argmax(candidate_scores, axis=-1, output_type=tf.int32),
        slots)
    is_segment = kept & tf.equal(representative, slots)
    instance_ids = tf.where(
        kept_thing, tf.cumsum(tf.cast(kept_thing, tf.int32), axis=1), 0)

    in_segment = foreground & tf.gather(kept, winner, batch_dims=1)
    segment_map = tf.where(
        in_segment, tf.gather(representative, winner, batch_dims=1) + 1, 0)
    category_mask = tf.where(in_segment,
                             tf.gather(classes, winner, batch_dims=1),
                             keys.VOID_CLASS)
    instance_mask = tf.where(in_segment,
                             tf.gather(instance_ids, winner, batch_dims=1), 0)
    return {
        keys.CATEGORY_MASK: category_mask,
        keys.INSTANCE_MASK: instance_mask,
        keys.PANOPTIC_SEGMENT_MAP: segment_map,
        keys.SEGMENT_CLASSES_OUT: tf.where(is_segment, classes,
                                           keys.VOID_CLASS),
        keys.SEGMENT_SCORES_OUT: tf.where(is_segment, scores, 0.0),
        keys.SEGMENT_IS_THING_OUT: is_segment & is_thing,
    }

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update({
        'num_classes': self.num_classes,
        'num_thing_classes': self.num_thing_classes,
        'score_threshold': self.score_threshold,
        'overlap_threshold': self.overlap_threshold,
        'mask_threshold': self.mask_threshold,
        'output_size': self.output_size,
        'mask_activation': self.mask_activation,
        'max_candidates': self.max_candidates,
    })
    return config

