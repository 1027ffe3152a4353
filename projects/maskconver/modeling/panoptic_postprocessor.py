"""MaskFormer-style merge of MaskConver's K masks into a panoptic map.

Pure TF with static-shaped outputs and only TFLite builtin ops (resize,
activation, argmax, top_k, one_hot, gather, reduce, cumsum, segment sum, and
for the fast merge matmul, scatter_nd, depth_to_space), so the layer runs in
training-time evaluation (under XLA too), in a SavedModel and in a TFLite
model.
"""

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf
import tf_keras

from maskconver import keys
from maskconver.modeling.layers import score_activation
from maskconver.ops import fast_merge_ops
from maskconver.ops import lookup_ops

MASK_ACTIVATIONS = score_activation.ACTIVATIONS
MERGE_METHODS = ('exact', 'fast')

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

  `merge_method='exact'` does the above at the output size: all K masks are
  upsampled, which costs O(height * width * K) and dominates the merge.
  `merge_method='fast'` (maskconver.ops.fast_merge_ops), when the output
  size is a static integer multiple of the mask size (the network input
  size: 4x), ranks the masks at mask resolution, keeps the
  nearest-neighbour labels of the output cells whose winner provably does
  not change in between, and refines only the others (boundaries and mask
  contours, at most `fast_refine_share` of the cells) exactly among at most
  5 candidates per cell (`fast_merge_ops.REFINE_CANDIDATES` distinct ones of
  the two best detections of each of its 4 corners); areas are counted the
  same way. Other output sizes use the exact merge.
  """

  def __init__(self,
               num_classes: int,
               num_thing_classes: int,
               score_threshold: float = 0.2,
               overlap_threshold: float = 0.75,
               mask_threshold: float = 0.5,
               output_size: Optional[Sequence[int]] = None,
               mask_activation: str = 'sigmoid',
               merge_method: str = 'exact',
               fast_refine_share: float = 0.25,
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
      merge_method: 'exact' (upsample all masks, merge at the output size)
        or 'fast' (decide at mask resolution, refine only the boundary
        cells); see the class doc.
      fast_refine_share: the share of output cells the fast merge may
        refine, in (0, 1]; boundary cells beyond it keep nearest-neighbour
        labels.
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
    if merge_method not in MERGE_METHODS:
      raise ValueError(f'merge_method must be one of {MERGE_METHODS}, got '
                       f'{merge_method!r}')
    if not 0.0 < fast_refine_share <= 1.0:
      raise ValueError(f'fast_refine_share must lie in (0, 1], got '
                       f'{fast_refine_share}')
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
    self.merge_method = merge_method
    self.fast_refine_share = fast_refine_share

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

    size = self._target_size(image_size)
    factor = self._upsampling_factor(size, mask_logits.shape[1:3])
    if factor == 1:
      outputs = self._merge(self._activation(mask_logits), classes, scores,
                            valid)
    elif factor is not None and self.merge_method == 'fast':
      outputs = self._fast_merge(mask_logits, classes, scores, valid, factor)
    else:
      mask_logits = tf.image.resize(mask_logits, size, method='bilinear')
      outputs = self._merge(self._activation(mask_logits), classes, scores,
                            valid)
    return outputs

  def _activation(self, logits: tf.Tensor) -> tf.Tensor:
    return score_activation.score_activation(logits, self.mask_activation)

  @staticmethod
  def _upsampling_factor(size: Any, mask_size: Sequence[Optional[int]]
                         ) -> Optional[int]:
    """f when size = f * mask_size (static, integer f >= 1), else None."""
    if not isinstance(size, tuple) or None in tuple(mask_size):
      return None
    height, width = size
    mask_height, mask_width = (int(v) for v in mask_size)
    if height % mask_height or height // mask_height != width / mask_width:
      return None
    return height // mask_height

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
    winner, winner_prob = self._winners(probs, scores, valid)
    won_area, mask_area = self._areas(probs, winner, winner_prob, valid)
    segments = self._segments(won_area, mask_area, classes, scores, valid)
    return self._paint(winner, winner_prob, classes, scores, segments)

  def _fast_merge(self, mask_logits: tf.Tensor, classes: tf.Tensor,
                  scores: tf.Tensor, valid: tf.Tensor,
                  factor: int) -> Dict[str, tf.Tensor]:
    """The `fast` merge (class doc) to `factor` times the mask size.

    Args:
      mask_logits: float32 [batch, mask_height, mask_width, N].
      classes: int32 [batch, N], training class ids.
      scores: float32 [batch, N], detection scores.
      valid: bool [batch, N], detections passing the score threshold.
      factor: output size / mask size, an integer >= 2.

    Returns:
      The outputs of `call` at factor * (mask_height, mask_width), with
      segments indexed by 0 .. N - 1.
    """
    activation, scale = score_activation.unscaled(self.mask_activation)
    paint, won_area, mask_area = fast_merge_ops.fast_merge(
        mask_logits, scores, valid, factor, self.mask_threshold, activation,
        self.fast_refine_share, activation_scale=scale)
    segments = self._segments(won_area, mask_area, classes, scores, valid)
    kept = segments['kept']
    num_masks = mask_logits.shape[-1]

    def table(values, void_value):
      # Per-detection values, void_value for dropped ones and for index N.
      return tf.pad(tf.where(kept, values, void_value), [[0, 0], [0, 1]],
                    constant_values=void_value)

    # Painted together (lookup_ops.lookup_tables).
    category_mask, instance_mask, segment_map = lookup_ops.lookup_tables(
        [table(classes, keys.VOID_CLASS), table(segments['instance_ids'], 0),
         table(segments['representative'] + 1, 0)],
        [(min(keys.VOID_CLASS, 0), self.num_classes), (0, num_masks + 1),
         (0, num_masks + 1)], paint)
    return self._outputs(category_mask, instance_mask, segment_map, classes,
                         scores, segments)

  @staticmethod
  def _winners(probs: tf.Tensor, scores: tf.Tensor,
               valid: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Per pixel, the detection maximising score * probability.

    Returns:
      (int32 [batch, height, width] winner index (ties: the lower),
       float32 [batch, height, width] its probability).
    """
    ranking = probs * tf.where(valid, scores, 0.0)[:, None, None, :]
    winner = tf.argmax(ranking, axis=-1, output_type=tf.int32)
    winner_prob = tf.gather(probs, winner[..., None], batch_dims=3)[..., 0]
    return winner, winner_prob

  def _areas(self, probs: tf.Tensor, winner: tf.Tensor,
             winner_prob: tf.Tensor,
             valid: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Pixels each detection wins, and pixels of its thresholded mask.

    Args:
      probs: float32 [batch, height, width, N], mask probabilities.
      winner: int32 [batch, height, width], from `_winners`.
      winner_prob: float32 [batch, height, width], from `_winners`.
      valid: bool [batch, N].

    Returns:
      (float32 [batch, N] won area, float32 [batch, N] mask area).
    """
    num_masks = probs.shape[-1]
    winner_valid = tf.gather(valid, winner, batch_dims=1)
    foreground = winner_valid & (winner_prob >= self.mask_threshold)
    # Index N (one_hot gives zeros) for background.
    won_index = tf.where(foreground, winner, num_masks)
    won_area = tf.reduce_sum(
        tf.one_hot(won_index, num_masks, dtype=tf.float32), axis=[1, 2])
    mask_area = tf.reduce_sum(
        tf.cast(probs >= self.mask_threshold, tf.float32), axis=[1, 2])
    return won_area, mask_area

  def _segments(self, won_area: tf.Tensor, mask_area: tf.Tensor,
                classes: tf.Tensor, scores: tf.Tensor,
                valid: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Steps 4-5 of the class doc: kept detections and their segments.

    Args:
      won_area: float32 [batch, N], pixels each detection wins.
      mask_area: float32 [batch, N], pixels of its thresholded mask.
      classes: int32 [batch, N].
      scores: float32 [batch, N].
      valid: bool [batch, N].

    Returns:
      {'kept': bool [batch, N], 'representative': int32 [batch, N] segment
       index of each detection, 'is_segment': bool [batch, N],
       'instance_ids': int32 [batch, N], 'is_thing': bool [batch, N]}.
    """
    num_masks = won_area.shape[-1]
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
    return {
        'kept': kept,
        'representative': representative,
        'is_segment': kept & tf.equal(representative, slots),
        'instance_ids': tf.where(
            kept_thing, tf.cumsum(tf.cast(kept_thing, tf.int32), axis=1), 0),
        'is_thing': is_thing,
    }

  def _paint(self, winner: tf.Tensor, winner_prob: tf.Tensor,
             classes: tf.Tensor, scores: tf.Tensor,
             segments: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The outputs of `call` from per-pixel winners and `_segments`."""
    # A kept detection is valid, so its pixels need only the mask threshold.
    in_segment = (tf.gather(segments['kept'], winner, batch_dims=1) &
                  (winner_prob >= self.mask_threshold))
    segment_map = tf.where(
        in_segment,
        tf.gather(segments['representative'], winner, batch_dims=1) + 1, 0)
    category_mask = tf.where(in_segment,
                             tf.gather(classes, winner, batch_dims=1),
                             keys.VOID_CLASS)
    instance_mask = tf.where(
        in_segment, tf.gather(segments['instance_ids'], winner, batch_dims=1),
        0)
    return self._outputs(category_mask, instance_mask, segment_map, classes,
                         scores, segments)

  @staticmethod
  def _outputs(category_mask: tf.Tensor, instance_mask: tf.Tensor,
               segment_map: tf.Tensor, classes: tf.Tensor, scores: tf.Tensor,
               segments: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The outputs of `call`: the painted maps and the per-segment values."""
    is_segment = segments['is_segment']
    return {
        keys.CATEGORY_MASK: category_mask,
        keys.INSTANCE_MASK: instance_mask,
        keys.PANOPTIC_SEGMENT_MAP: segment_map,
        keys.SEGMENT_CLASSES_OUT: tf.where(is_segment, classes,
                                           keys.VOID_CLASS),
        keys.SEGMENT_SCORES_OUT: tf.where(is_segment, scores, 0.0),
        keys.SEGMENT_IS_THING_OUT: is_segment & segments['is_thing'],
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
        'merge_method': self.merge_method,
        'fast_refine_share': self.fast_refine_share,
    })
    return config

