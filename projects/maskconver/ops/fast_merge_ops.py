"""The `fast` panoptic merge: decide at mask resolution, refine boundaries.

The exact merge (`PanopticPostprocessor`, merge_method='exact') upsamples
all N mask logits to the output size (bilinear, half-pixel centers) and
gives each output pixel to the detection maximising score * probability.
When the output is an integer multiple f of the mask size, most of that work
is redundant:

* Output pixels fall into cells (`cell_ops`): the f x f pixels whose
  bilinear interpolation reads the same 2 x 2 mask pixels (the corners).
  Interpolation is a convex combination of the corners, so a cell whose four
  corners have the same best-ranked detection w, with w's lowest corner rank
  above every other detection's highest one (each corner's runner-up), and
  the same foreground state (w's probability against `mask_threshold`, a
  linear test on its logit), is won by w everywhere (or void everywhere):
  its labels are the corners' (nearest-neighbour upsampling of the
  mask-resolution labels).
* Only the other cells -- boundaries between detections, mask contours,
  and contours of the runner-up (an occluded mask's edge) -- are refined:
  for each of their f * f pixels the candidates -- the two best-ranked
  detections of each corner, at most REFINE_CANDIDATES = 5 distinct ones
  (every corner's best first, then the runners-up) -- are interpolated
  bilinearly and ranked as the exact merge does (ties: the lower index).

Areas for the overlap test: won pixels and mask pixels (probability at
least `mask_threshold`) are counted at mask resolution (f * f output pixels
per mask pixel) and corrected by the exact counts on the refined cells, for
the painted labels and for every candidate's mask.

Static shapes throughout: at most `ceil(refine_share * cells)` cells are
refined (first those where the painted label may change, then those where
only the runner-up's mask area may, each in raster order); boundary cells
beyond that budget keep their nearest-neighbour labels. Apart from those,
results differ from the exact merge only where the exact winner is none of a
refined pixel's candidates; where the contour of a mask that is no
candidate of a cell (ranked third or lower at its corners, or a runner-up
beyond the 5 distinct candidates) changes its area (nearest-neighbour
estimate there); by float32 rounding (the refinement interpolates with a
matmul; at mask resolution foreground is tested as rank >= threshold *
score, for the labels and the mask areas, and a constant factor of the
activation, hard_sigmoid's 1/6, multiplies the scores rather than every
pixel; refined pixels test the probability, as the exact merge does); by
matmul rounding where matmuls round their inputs (TPUs at default
precision, GPUs with TF32: the interpolation, and the distinct candidates
of more than 256 masks, pass through matmuls); and for detections of score
exactly 0, which the exact merge may paint where every rank is 0 and this
one treats as no detection. Scores must lie in [0, 1].

Output maps: `fast_merge` returns a painter of per-detection values
(nearest-neighbour blocks of the mask-resolution values plus the refined
cells' differences; no matmul touches the values), and
`lookup_ops.lookup_tables` paints the class, instance and segment maps as
one packed float32 value.

Costs: O(mask pixels * N) for the ranking, O(refined cells * 5 * f * f) for
the refinement, and a few float32 passes per output pixel for the painting
and unpacking, all in ops that TFLite's XNNPACK delegate runs.

The stages are pure tensor functions, each in its own name scope, which
names its ops in a converted model: `rank_pixels` ('rank'), `label_pixels`
('labels'), `classify_cells` ('uniform'), `select_cells` ('cells'),
`refine_cells` ('refine'), `correct_areas` ('areas'), `paint_values`
('paint'), and `lookup_ops.lookup_tables`' 'unpack'. `fast_merge` chains
them.
"""

from typing import Callable, NamedTuple, Tuple

import numpy as np
import tensorflow as tf

from maskconver.ops import cell_ops
from maskconver.ops import lookup_ops
from maskconver.ops import selection_ops

# The best-ranked detections of each mask pixel that a refined cell takes
# from each of its 4 corners.
CANDIDATES_PER_CORNER = 2
# The distinct detections a refined cell ranks, of the (up to) 8 best of its
# corners: every corner's best first, then runners-up (module doc).
REFINE_CANDIDATES = 5

Activation = Callable[[tf.Tensor], tf.Tensor]


class PixelRanking(NamedTuple):
  """What `rank_pixels` gives.

  Attributes:
    valid: bool [batch, N], detections that may win pixels (valid, with a
      positive score).
    scores: float32 [batch, N], the scores of valid detections, 0 for the
      others.
    ranking: float32 [batch, h, w, N], each mask pixel's rank of each
      detection: score * probability, divided by `activation_scale`.
    best_indices: int32 [batch, h, w, k], the k = min(2, N) best-ranked
      detections of each mask pixel, best first.
    best_values: float32 [batch, h, w, k], their ranks.
  """
  valid: tf.Tensor
  scores: tf.Tensor
  ranking: tf.Tensor
  best_indices: tf.Tensor
  best_values: tf.Tensor


class PixelLabels(NamedTuple):
  """What `label_pixels` gives, per mask pixel [batch, h, w] or detection.

  Attributes:
    first: int32, the best-ranked detection.
    first_rank: float32, its rank.
    label: int32, the best-ranked detection where it is foreground, else N.
    second_rank: float32, the runner-up's rank (0 with one detection).
    second_label: int32, the runner-up where it is foreground, else N (0
      with one detection).
    won_area: float32 [batch, N], output pixels each detection wins under
      nearest-neighbour upsampling of `label`.
    mask_area: float32 [batch, N], output pixels of each detection's mask
      under nearest-neighbour upsampling.
  """
  first: tf.Tensor
  first_rank: tf.Tensor
  label: tf.Tensor
  second_rank: tf.Tensor
  second_label: tf.Tensor
  won_area: tf.Tensor
  mask_area: tf.Tensor


class CellSelection(NamedTuple):
  """What `select_cells` gives, for the B refined cells of each image.

  Attributes:
    refined: int32 [batch, B], the refined cells (row * (w + 1) + column).
    corner_pixel: int32 [batch, B, 4], the mask pixel of each corner.
    candidates: int32 [batch, B, C], the distinct candidate detections.
    first_of_slot: float32 [batch, B, C], 1 for a candidate's first copy, 0
      for fillers (`selection_ops.distinct_candidates`).
  """
  refined: tf.Tensor
  corner_pixel: tf.Tensor
  candidates: tf.Tensor
  first_of_slot: tf.Tensor


class Refinement(NamedTuple):
  """What `refine_cells` gives, for the B refined cells of each image.

  Attributes:
    refined_label: int32 [batch, B, f * f], each pixel's winning detection,
      N where it is void.
    candidate_foreground: float32 [batch, B, C, f * f], 1 where a
      candidate's probability is at least the mask threshold.
    corner_logits: float32 [batch * B * C, 4], each candidate's logit at
      each corner.
  """
  refined_label: tf.Tensor
  candidate_foreground: tf.Tensor
  corner_logits: tf.Tensor


def rank_pixels(mask_logits: tf.Tensor, scores: tf.Tensor, valid: tf.Tensor,
                activation: Activation, activation_scale: float
                ) -> PixelRanking:
  """Ranks the detections at each mask pixel (name scope 'rank').

  Args:
    mask_logits: float32 [batch, h, w, N], static N.
    scores: float32 [batch, N], detection scores, in [0, 1].
    valid: bool [batch, N], detections that may win pixels.
    activation: float32 logits -> float32 probabilities divided by
      `activation_scale`, monotone.
    activation_scale: probabilities are activation(logits) times this.

  Returns:
    The ranking; a zero score ranks like no detection (module doc).
  """
  num_masks = mask_logits.shape[-1]
  with tf.name_scope('rank'):
    valid &= scores > 0.0
    ranking_scores = tf.where(valid, scores, 0.0)
    ranking = activation(mask_logits) * tf.reshape(
        ranking_scores * activation_scale, [-1, 1, 1, num_masks])
    best = tf.math.top_k(ranking, k=min(CANDIDATES_PER_CORNER, num_masks))
    return PixelRanking(valid, ranking_scores, ranking, best.indices,
                        best.values)


def label_pixels(ranking: PixelRanking, mask_threshold: float,
                 factor: int) -> PixelLabels:
  """Mask-resolution labels and nearest-neighbour areas (scope 'labels').

  Args:
    ranking: from `rank_pixels`.
    mask_threshold: probability from which a pixel belongs to a mask.
    factor: the upsampling factor f to the output size.

  Returns:
    The labels of the best and second-best detection of each mask pixel,
    and the areas they give at the output size.
  """
  height, width, num_masks = ranking.ranking.shape[1:]
  pixels = height * width
  subpixels = factor * factor
  with tf.name_scope('labels'):
    # Foreground: rank >= threshold * score, i.e. probability >= threshold;
    # never for an invalid detection in the label maps.
    score_thresholds = mask_threshold * ranking.scores
    rank_thresholds = tf.where(ranking.valid, score_thresholds, np.inf)

    def labels(index, rank):
      return tf.where(
          rank >= tf.gather(rank_thresholds, index, batch_dims=1), index,
          num_masks)

    # Not sliced: TFLite copies strided slices of a last axis (and
    # `[..., None]` axes) element by element, where it runs unstacks, the
    # matmuls of `selection_ops.columns` and tf.expand_dims as whole
    # tensors.
    ranked_indices = tf.unstack(ranking.best_indices, axis=-1)
    ranked_values = selection_ops.columns(ranking.best_values)
    first, first_rank = ranked_indices[0], ranked_values[0]
    label = labels(first, first_rank)
    if num_masks > 1:
      second_rank = ranked_values[1]
      second_label = labels(ranked_indices[1], second_rank)
    else:
      second_rank = tf.zeros_like(first_rank)
      second_label = tf.zeros_like(label)
    won_area = float(subpixels) * selection_ops.slot_sums(
        tf.ones_like(first_rank), label, num_masks)
    # Mask pixels: rank >= threshold * score, i.e. probability >= threshold
    # (where the score is positive; invalid detections are never kept):
    # the others have ceil(relu(threshold * score - rank)) = 1 (exact: the
    # difference has the sign of the comparison and lies below 1 for scores
    # in [0, 1]). Counted as a spatial mean (ops XNNPACK runs, unlike
    # TFLite's comparison, cast and sum), rounded back to an integer count.
    mask_area = float(subpixels) * (float(pixels) - tf.round(
        float(pixels) * tf.reduce_mean(tf.math.ceil(tf.nn.relu(
            tf.reshape(score_thresholds, [-1, 1, 1, num_masks]) -
            ranking.ranking)), axis=[1, 2])))
    return PixelLabels(first, first_rank, label, second_rank, second_label,
                       won_area, mask_area)


def classify_cells(labels: PixelLabels) -> tf.Tensor:
  """Which output cells need refining (name scope 'uniform').

  Args:
    labels: from `label_pixels`, of [batch, h, w] mask pixels.

  Returns:
    float32 [batch, (h + 1) * (w + 1)] per cell: 2 where the painted label
    may change inside the cell; 1 where only the runner-up's mask area may
    (its contour under the winner); 0 where the cell is uniform (module
    doc).
  """
  height, width = labels.first.shape[1:]
  cells = (height + 1) * (width + 1)
  with tf.name_scope('uniform'):
    # On float maps (XNNPACK slices them). The three label maps are stacked
    # on axis 1, so that each step is one op for all of them; their corners
    # agree where the lowest is the highest. (Not the ranks too: the int8
    # converter quantizes an UNPACK of float maps.)
    label_views = cell_ops.corner_views(tf.stack(
        [tf.cast(labels.first, tf.float32), tf.cast(labels.label, tf.float32),
         tf.cast(labels.second_label, tf.float32)], axis=1))
    same_first, same_label, same_second = tf.unstack(tf.equal(
        cell_ops.corner_reduce(tf.minimum, label_views),
        cell_ops.corner_reduce(tf.maximum, label_views)), axis=1)
    same_winner = same_first & same_label
    corner_rank1 = cell_ops.corner_views(labels.first_rank)
    lowest_first = cell_ops.corner_reduce(tf.minimum, corner_rank1)
    highest_first = cell_ops.corner_reduce(tf.maximum, corner_rank1)
    highest_second = cell_ops.corner_reduce(
        tf.maximum, cell_ops.corner_views(labels.second_rank))
    winner_fixed = same_winner & ((lowest_first > highest_second) |
                                  (highest_first <= 0.0))
    return tf.reshape(
        2.0 - tf.cast(winner_fixed, tf.float32) -
        tf.cast(winner_fixed & same_second, tf.float32), [-1, cells])


def select_cells(boundary: tf.Tensor, best_indices: tf.Tensor,
                 refine_share: float) -> CellSelection:
  """The cells to refine and their candidates (name scope 'cells').

  Args:
    boundary: float32 [batch, cells], from `classify_cells`.
    best_indices: int32 [batch, h, w, k], from `rank_pixels`.
    refine_share: the share of cells that may be refined, in (0, 1].

  Returns:
    The B = max(1, ceil(refine_share * cells)) cells first in `boundary`'s
    tiers (label boundaries, then runner-up contours, each in raster order),
    and their distinct candidates.
  """
  height, width, per_corner = best_indices.shape[1:]
  pixels = height * width
  cells = (height + 1) * (width + 1)
  with tf.name_scope('cells'):
    # (The epsilon keeps float rounding, e.g. 0.07 * 100, from adding a cell.)
    budget = max(1, min(cells, int(np.ceil(refine_share * cells - 1e-9))))
    refined = selection_ops.first_cells(boundary, budget)
    # [batch, B, 4] mask pixel of each corner, from a table (one gather of
    # rows, where TFLite's integer arithmetic would be slower).
    corner_pixel = tf.gather(
        tf.constant(cell_ops.corner_pixels(height, width)), refined)
    candidates = tf.reshape(tf.gather(
        tf.reshape(best_indices, [-1, pixels, per_corner]), corner_pixel,
        batch_dims=1), [-1, budget, 4 * per_corner])
    num_candidates = min(REFINE_CANDIDATES, 4 * per_corner)
    candidates, first_of_slot = selection_ops.distinct_candidates(
        candidates, num_candidates)
    return CellSelection(refined, corner_pixel, candidates, first_of_slot)


def refine_cells(mask_logits: tf.Tensor, selection: CellSelection,
                 scores: tf.Tensor, activation: Activation,
                 mask_threshold: float, activation_scale: float,
                 factor: int) -> Refinement:
  """The exact winners of the refined cells' pixels (name scope 'refine').

  Args:
    mask_logits: float32 [batch, h, w, N].
    selection: from `select_cells`.
    scores: float32 [batch, N], `PixelRanking.scores`.
    activation: as for `rank_pixels`.
    mask_threshold: probability from which a pixel belongs to a mask.
    activation_scale: as for `rank_pixels`.
    factor: the upsampling factor f.

  Returns:
    Each refined pixel's winner among its cell's candidates, as the exact
    merge ranks them (score * bilinearly interpolated probability; ties:
    the lower index).
  """
  height, width, num_masks = mask_logits.shape[1:]
  pixels = height * width
  subpixels = factor * factor
  corner_pixel, candidates = selection.corner_pixel, selection.candidates
  budget, num_candidates = candidates.shape[1:]
  # The threshold on activation(logits).
  threshold = mask_threshold / activation_scale
  with tf.name_scope('refine'):
    # [batch * B * C, 4] each candidate's logit at each corner.
    # The maximum is no-op arithmetic (finite logits): a reshape of the logits
    # themselves would make the TFLite converter compute the mask einsum twice
    # (once more with the reshape folded in).
    flat_logits = tf.reshape(tf.maximum(mask_logits, -3.0e38),
                             [-1, pixels * num_masks])
    if pixels * num_masks <= 2 ** lookup_ops.FLOAT_INTEGER_BITS:
      # In float arithmetic, which XNNPACK runs (exact below 2**24).
      logit_index = tf.cast(
          tf.expand_dims(tf.cast(corner_pixel * num_masks, tf.float32), 2) +
          tf.expand_dims(tf.cast(candidates, tf.float32), -1), tf.int32)
    else:
      logit_index = (tf.expand_dims(corner_pixel, 2) * num_masks +
                     tf.expand_dims(candidates, -1))
    corner_logits = tf.reshape(
        tf.gather(flat_logits, logit_index, batch_dims=1), [-1, 4])
    _, weights, _ = cell_ops.subpixel_constants(factor)
    # [batch, B, C, f * f] interpolated bilinearly (as tf.image.resize does, up
    # to float32 rounding).
    candidate_probs = activation(tf.reshape(
        tf.matmul(corner_logits, tf.constant(weights)),
        [-1, budget, num_candidates, subpixels]))
    slots = tf.expand_dims(candidates, -1)
    slot_scores = tf.gather(scores, slots, batch_dims=1)
    candidate_ranking = candidate_probs * (slot_scores * activation_scale)
    candidate_foreground = tf.cast(candidate_probs >= threshold, tf.float32)
    # The winner and its foreground state in float arithmetic, which XNNPACK
    # runs (in place of TFLite's own SELECT / REDUCE_MIN). (Not is_best =
    # 1 - ceil(best - rank): under XLA that differs from eager execution in
    # some pixels.)
    is_best = tf.cast(tf.equal(
        tf.reduce_max(candidate_ranking, axis=2, keepdims=True),
        candidate_ranking), tf.float32)
    # Among the best, the lowest detection (largest 2 (N - slot)), plus 1 if
    # it is foreground: probability >= threshold (as the exact merge tests it)
    # and a positive score, whose ceil is 1 (an invalid detection ranks 0 and
    # is no winner).
    key = is_best * (
        2.0 * (float(num_masks) - tf.cast(slots, tf.float32)) +
        candidate_foreground * tf.minimum(tf.math.ceil(slot_scores), 1.0))
    # Keys are finite: where NaN logits (a diverged checkpoint) leave no best
    # candidate, every key is 0 and the pixel is void, never out of range.
    best_key = tf.reduce_max(key, axis=2)
    lowest = tf.floor(best_key * 0.5)  # N - winner
    # N - (N - winner) on the foreground, N on void.
    refined_label = tf.cast(
        float(num_masks) - (best_key - 2.0 * lowest) * lowest, tf.int32)
    return Refinement(refined_label, candidate_foreground, corner_logits)


def correct_areas(labels: PixelLabels, selection: CellSelection,
                  refinement: Refinement, activation: Activation,
                  mask_threshold: float, activation_scale: float,
                  factor: int) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Exact areas on the refined cells (name scope 'areas').

  The exact counts of the refined cells' pixels replace the
  nearest-neighbour ones (the pixels nearest each corner inside the image
  carry its label).

  Args:
    labels: from `label_pixels`.
    selection: from `select_cells`.
    refinement: from `refine_cells`.
    activation: as for `rank_pixels`.
    mask_threshold: probability from which a pixel belongs to a mask.
    activation_scale: as for `rank_pixels`.
    factor: the upsampling factor f.

  Returns:
    (float32 [batch, N] output pixels each detection wins,
     float32 [batch, N] output pixels of each detection's mask,
     int32 [batch, B, 4] the mask-resolution label of each refined cell's
       corners).
  """
  height, width = labels.label.shape[1:]
  num_masks = labels.won_area.shape[-1]
  pixels = height * width
  subpixels = factor * factor
  refined, corner_pixel = selection.refined, selection.corner_pixel
  budget, num_candidates = selection.candidates.shape[1:]
  threshold = mask_threshold / activation_scale
  offset, _, nearest = cell_ops.subpixel_constants(factor)
  with tf.name_scope('areas'):
    inside = tf.gather(
        tf.constant(cell_ops.inside_pixels(height, width, factor, offset)),
        refined)
    nearest_inside = tf.reshape(
        tf.matmul(tf.reshape(inside, [-1, subpixels]), tf.constant(nearest.T)),
        [-1, budget, 4])
    corner_label = tf.gather(tf.reshape(labels.label, [-1, pixels]),
                             corner_pixel, batch_dims=1)
    won_area = labels.won_area + (
        selection_ops.slot_sums(inside, refinement.refined_label, num_masks) -
        selection_ops.slot_sums(nearest_inside, corner_label, num_masks))
    # A candidate's mask pixels in the cell: exact, minus the nearest-neighbour
    # count (where the corner's own probability decides).
    corner_foreground = tf.reshape(
        tf.cast(activation(refinement.corner_logits) >= threshold,
                tf.float32),
        [-1, budget, num_candidates, 4])
    mask_change = (
        tf.reduce_sum(refinement.candidate_foreground *
                      tf.expand_dims(inside, 2), axis=3) -
        tf.reduce_sum(corner_foreground * tf.expand_dims(nearest_inside, 2),
                      axis=3))
    mask_area = labels.mask_area + selection_ops.slot_sums(
        mask_change * selection.first_of_slot, selection.candidates,
        num_masks)
    return won_area, mask_area, corner_label


def paint_values(values: tf.Tensor, label: tf.Tensor,
                 corner_label: tf.Tensor, refined_label: tf.Tensor,
                 flat_cells: tf.Tensor, batch: tf.Tensor,
                 factor: int) -> tf.Tensor:
  """Paints per-label values at the output size (name scope 'paint').

  Nearest-neighbour upsampling of the mask-resolution values (a product
  with ones and depth_to_space, which XNNPACK runs), plus on the refined
  cells the difference to their exact labels' values. No matmul touches
  the values: integers below 2**24 paint exactly on any device.

  Args:
    values: float32 [batch, N + 1], the value of each label (index N: void).
    label: int32 [batch, h, w], `PixelLabels.label`.
    corner_label: int32 [batch, B, 4], from `correct_areas`.
    refined_label: int32 [batch, B, f * f], `Refinement.refined_label`.
    flat_cells: int32 [batch * B, 1], each refined cell's index in the
      batch's cells (image * cells + cell).
    batch: int32 [], the batch size.
    factor: the upsampling factor f.

  Returns:
    float32 [batch, f * h, f * w].
  """
  height, width = label.shape[1:]
  cells = (height + 1) * (width + 1)
  subpixels = factor * factor
  offset, _, nearest = cell_ops.subpixel_constants(factor)
  with tf.name_scope('paint'):
    image = tf.reshape(tf.nn.depth_to_space(
        tf.expand_dims(tf.gather(values, label, batch_dims=1), -1) *
        tf.ones([subpixels]), factor), [-1, factor * height, factor * width])
    # [batch, B, f * f] the refined pixels' nearest-neighbour values.
    nearest_values = tf.reduce_sum(
        tf.expand_dims(tf.gather(values, corner_label, batch_dims=1), -1) *
        tf.constant(nearest), axis=2)
    difference = tf.scatter_nd(
        flat_cells,
        tf.reshape(tf.gather(values, refined_label, batch_dims=1) -
                   nearest_values, [-1, subpixels]),
        tf.stack([batch * cells, subpixels]))
    # Sliced as rows of a 3-D map: TFLite copies a 4-D slice with one channel
    # element by element.
    difference = tf.reshape(
        tf.nn.depth_to_space(
            tf.reshape(difference, [-1, height + 1, width + 1, subpixels]),
            factor),
        [-1, factor * (height + 1), factor * (width + 1)])
    return image + tf.slice(difference, [0, offset, offset],
                            [-1, factor * height, factor * width])


def fast_merge(
    mask_logits: tf.Tensor, scores: tf.Tensor, valid: tf.Tensor,
    factor: int, mask_threshold: float, activation: Activation,
    refine_share: float, activation_scale: float = 1.0
) -> Tuple[Callable[[tf.Tensor], tf.Tensor], tf.Tensor, tf.Tensor]:
  """A painter of per-detection values at the output size, and the areas.

  Args:
    mask_logits: float32 [batch, h, w, N], static h, w, N.
    scores: float32 [batch, N], detection scores, in [0, 1].
    valid: bool [batch, N], detections that may win pixels.
    factor: the integer upsampling factor f >= 2 to the output size.
    mask_threshold: probability from which a pixel belongs to a mask.
    activation: float32 logits -> float32 probabilities (divided by
      `activation_scale`) of the same shape, monotone (score_activation).
    refine_share: the share of cells that may be refined, in (0, 1].
    activation_scale: probabilities are activation(logits) times this
      (score_activation.unscaled): folded into the scores and the threshold
      rather than multiplied into every mask pixel.

  Returns:
    (paint: float32 [batch, N + 1] values -> float32 [batch, f * h, f * w],
       each output pixel's value of its winning detection, index N where
       the pixel is void (no valid winner, or a winner below
       mask_threshold); exact for integers below 2**24,
     float32 [batch, N] output pixels each detection wins,
     float32 [batch, N] output pixels of each valid detection's mask; not
       meaningful for an invalid one, which is never kept).
  """
  height, width = mask_logits.shape[1:3]
  cells = (height + 1) * (width + 1)
  ranking = rank_pixels(mask_logits, scores, valid, activation,
                        activation_scale)
  labels = label_pixels(ranking, mask_threshold, factor)
  boundary = classify_cells(labels)
  selection = select_cells(boundary, ranking.best_indices, refine_share)
  refinement = refine_cells(mask_logits, selection, ranking.scores,
                            activation, mask_threshold, activation_scale,
                            factor)
  won_area, mask_area, corner_label = correct_areas(
      labels, selection, refinement, activation, mask_threshold,
      activation_scale, factor)
  refined = selection.refined
  batch = tf.shape(refined)[0]
  flat_cells = tf.reshape(
      refined + tf.range(batch)[:, None] * cells, [-1, 1])

  def paint(values: tf.Tensor) -> tf.Tensor:
    return paint_values(values, labels.label, corner_label,
                        refinement.refined_label, flat_cells, batch, factor)

  return paint, won_area, mask_area
