"""The `fast` panoptic merge: decide at mask resolution, refine boundaries.

The exact merge (`panoptic_postprocessor`) upsamples all N mask logits to the
output size (bilinear, half-pixel centers) and gives each output pixel to the
detection maximising score * probability. When the output is an integer
multiple f of the mask size, most of that work is redundant:

* Output pixels fall into cells: the f x f pixels whose bilinear
  interpolation reads the same 2 x 2 mask pixels (the corners; on the edges a
  corner repeats, as the resize clamps). Interpolation is a convex
  combination of the corners, so a cell whose four corners have the same
  best-ranked detection w, with w's lowest corner rank above every other
  detection's highest one (each corner's runner-up), and the same foreground
  state (w's probability against `mask_threshold`, a linear test on its
  logit), is won by w everywhere (or void everywhere): its labels are the
  corners' (nearest-neighbour upsampling of the mask-resolution labels).
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
cells' differences; no matmul touches the values), and `lookup_tables`
paints the class, instance and segment maps as one packed float32 value.

Costs: O(mask pixels * N) for the ranking, O(refined cells * 5 * f * f) for
the refinement, and a few float32 passes per output pixel for the painting
and unpacking, which TFLite's XNNPACK delegate runs (its per-pixel GATHER
copies element by element). Each stage has its name scope (rank, labels,
uniform, cells, refine, areas, paint, unpack), by which
`tools.tflite_stage_profile` times a converted model.
"""

from typing import Callable, Sequence, Tuple

import numpy as np
import tensorflow as tf

# The best-ranked detections of each mask pixel that a refined cell takes
# from each of its 4 corners.
CANDIDATES_PER_CORNER = 2
# The distinct detections a refined cell ranks, of the (up to) 8 best of its
# corners: every corner's best first, then runners-up (module doc). On the
# synthetic val split 2.9% of the refined cells have 5 distinct candidates
# and 0.3% more; 5 gives the labels and PQ of all 8, 4 loses 0.09 PQ.
REFINE_CANDIDATES = 5
# Corner order of a cell: (row, column) offsets on the edge-padded mask grid.
_CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def slot_sums(values: tf.Tensor, slots: tf.Tensor, num_slots: int
              ) -> tf.Tensor:
  """float32 [batch, N]: per image, the sum of `values` of each slot.

  Args:
    values: float32 [batch, ...].
    slots: int32 [batch, ...], same shape, in [0, N]; slot N is dropped.
    num_slots: N.

  Returns:
    float32 [batch, N].
  """
  batch = values.shape[0]
  if batch is None:
    return tf.reduce_sum(
        tf.one_hot(slots, num_slots, dtype=tf.float32) * values[..., None],
        axis=list(range(1, len(values.shape))))
  # Segment b * (N + 1) + n sums image b's values of slot n.
  offsets = tf.reshape(tf.range(batch, dtype=tf.int32) * (num_slots + 1),
                       [batch] + [1] * (len(values.shape) - 1))
  sums = tf.math.unsorted_segment_sum(values, slots + offsets,
                                      batch * (num_slots + 1))
  return tf.reshape(sums, [batch, num_slots + 1])[:, :num_slots]


# float32 represents every integer below 2**24 exactly.
_FLOAT_INTEGER_BITS = 24


def lookup_tables(tables: Sequence[tf.Tensor],
                  ranges: Sequence[Tuple[int, int]],
                  lookup: Callable[[tf.Tensor], tf.Tensor]
                  ) -> Tuple[tf.Tensor, ...]:
  """Looks up several per-detection tables with one (big) lookup.

  Output maps cost a per-pixel lookup each (a TFLite GATHER copies element
  by element: ~1.8 ms per 640 x 640 map on an AMD EPYC core). When the
  tables' values fit together in 24 bits, they are packed into one float32
  table (bit fields, the first table highest), looked up once, and unpacked
  with exact float arithmetic (products with powers of two, floor,
  differences of integers below 2**24), which XNNPACK runs.

  Args:
    tables: int32 [batch, M] each.
    ranges: per table, Python ints (low, high): its values lie in
      [low, high).
    lookup: float32 [batch, M] -> float32 [batch, ...], each output the
      value of some index of the table, exact for integers below 2**24 (a
      gather, or `fast_merge`'s paint).

  Returns:
    int32 [batch, ...] per table, as lookup(table) would give.
  """
  bits = [max(1, int(np.ceil(np.log2(high - low)))) for low, high in ranges]
  if max(max(abs(low), abs(high)) for low, high in ranges) > (
      2 ** _FLOAT_INTEGER_BITS):
    raise ValueError(f'table values must lie within +-2**24, got {ranges}')
  if sum(bits) > _FLOAT_INTEGER_BITS:
    # Too wide to pack: one lookup per table.
    return tuple(tf.cast(lookup(tf.cast(table, tf.float32)), tf.int32)
                 for table in tables)
  packed = tf.zeros_like(tables[0], tf.float32)
  for table, (low, _), field in zip(tables, ranges, bits):
    packed = packed * float(2 ** field) + tf.cast(table - low, tf.float32)
  value = lookup(packed)
  with tf.name_scope('unpack'):
    fields = []
    for field in reversed(bits[1:]):
      high = tf.floor(value * (1.0 / 2 ** field))
      fields.append(value - high * float(2 ** field))
      value = high
    fields.append(value)
    return tuple(tf.cast(field + float(low) if low else field, tf.int32)
                 for field, (low, _) in zip(reversed(fields), ranges))


def _subpixel_constants(factor: int) -> Tuple[int, np.ndarray, np.ndarray]:
  """Where the f * f pixels of a cell sit between its corners.

  With half-pixel centers, output row y samples mask row
  (y + 0.5) / f - 0.5. The first cell starts `offset` pixels before the
  image; its pixel a (0 .. f - 1) lies at fraction (a - offset + 0.5) / f +
  0.5 between the cell's two corner rows, and its nearest corner row is the
  second one when a >= offset.

  Returns:
    (offset,
     float32 [4, f * f] bilinear weight of each corner at each pixel
       (pixel index a_y * f + a_x, the depth_to_space order),
     float32 [4, f * f] 1 where the corner is the pixel's nearest).
  """
  offset = (factor + 1) // 2
  fractions = [(a - offset + 0.5) / factor + 0.5 for a in range(factor)]
  weights = np.zeros([4, factor * factor], np.float32)
  nearest = np.zeros([4, factor * factor], np.float32)
  for corner, (dy, dx) in enumerate(_CORNERS):
    for a_y in range(factor):
      for a_x in range(factor):
        weight_y = fractions[a_y] if dy else 1.0 - fractions[a_y]
        weight_x = fractions[a_x] if dx else 1.0 - fractions[a_x]
        weights[corner, a_y * factor + a_x] = weight_y * weight_x
        nearest[corner, a_y * factor + a_x] = float(
            (a_y >= offset) == bool(dy) and (a_x >= offset) == bool(dx))
  return offset, weights, nearest


def _inside(height: int, width: int, factor: int, offset: int) -> np.ndarray:
  """float32 [cells, f * f], 1 for the pixels of each cell inside the image."""
  rows = np.arange((height + 1) * factor) - offset
  cols = np.arange((width + 1) * factor) - offset
  ok_rows = ((rows >= 0) & (rows < factor * height)).reshape(height + 1,
                                                             factor)
  ok_cols = ((cols >= 0) & (cols < factor * width)).reshape(width + 1, factor)
  inside = ok_rows[:, None, :, None] & ok_cols[None, :, None, :]
  return inside.reshape((height + 1) * (width + 1),
                        factor * factor).astype(np.float32)


def _columns(values: tf.Tensor) -> Tuple[tf.Tensor, ...]:
  """float32 [..., k] -> k float32 [...], each a matmul with a unit vector.

  Exact for finite values (x * 1 + y * 0) where matmuls run in float32 (CPU,
  TFLite); TPUs and TF32 GPUs round matmul inputs (module doc). Not an
  unstack: the int8 converter quantizes an UNPACK of the quantized top-K
  values together with what reads it, where export_tflite.float_top_k can
  only make slices and reshapes float again; a matmul reads them through a
  DEQUANTIZE, which it bypasses.
  """
  size = values.shape[-1]
  flat = tf.reshape(values, [-1, size])
  shape = tf.shape(values)[:-1]
  return tuple(
      tf.reshape(tf.matmul(flat, tf.constant(np.eye(size, dtype=np.float32)
                                             [:, column:column + 1])), shape)
      for column in range(size))


def _distinct_candidates(candidates: tf.Tensor, count: int
                         ) -> Tuple[tf.Tensor, tf.Tensor]:
  """The first `count` distinct corner candidates of each cell, by priority.

  Without sorting (two top_k over ~1000 rows of 8 took longer in TFLite):
  pairwise differences flag first copies, their count before each position
  numbers them, and one-hot products move the first `count` to their
  slots; every step is a matmul with a 0 / +-1 matrix or elementwise
  arithmetic on integers (exact, also where matmuls round their inputs to
  bfloat16, TPUs, as long as N <= 256).

  Args:
    candidates: int32 [batch, B, 4 * k], the k best detections of each
      corner, corner by corner, best first (indices below 2**24; below 257
      where matmuls round to bfloat16).
    count: how many to keep, <= 4 * k.

  Returns:
    (int32 [batch, B, count] detections: every corner's best, then the
       second best of each corner, ..., each once; when a cell has fewer
       distinct ones, its first corner's best fills the rest,
     float32 [batch, B, count] 1 for a detection's first copy, 0 for the
       fillers).
  """
  size = candidates.shape[-1]
  cells = candidates.shape[1]
  per_corner = size // 4
  # Priority of position (corner, rank): rank-major, so that every corner's
  # best comes before any runner-up.
  priority = [rank * 4 + corner for corner in range(4)
              for rank in range(per_corner)]
  pairs = [(i, j) for j in range(size) for i in range(size)
           if priority[i] < priority[j]]
  differences = np.zeros([size, len(pairs)], np.float32)
  later = np.zeros([len(pairs), size], np.float32)
  for column, (i, j) in enumerate(pairs):
    differences[j, column], differences[i, column] = 1.0, -1.0
    later[column, j] = 1.0
  earlier = np.array([[float(priority[i] < priority[j]) for j in range(size)]
                      for i in range(size)], np.float32)
  # Position j repeated for each slot p (column j * count + p).
  spread = np.kron(np.eye(size, dtype=np.float32),
                   np.ones([1, count], np.float32))
  slot_of = np.tile(np.arange(count, dtype=np.float32), size)
  gather_slots = np.tile(np.eye(count, dtype=np.float32), [size, 1])
  first_best = np.zeros([size, count], np.float32)
  first_best[0] = 1.0

  def times(values, matrix):
    return tf.matmul(values, tf.constant(matrix))

  def nonzero(values):  # 1 where an integer-valued float is not 0.
    return tf.minimum(tf.abs(values), 1.0)

  detections = tf.reshape(tf.cast(candidates, tf.float32), [-1, size])
  first = 1.0 - nonzero(times(1.0 - nonzero(times(detections, differences)),
                              later))
  # [rows, size * count]: 1 where position j is the p-th first copy.
  moves = times(first, spread) * (
      1.0 - nonzero(times(times(first, earlier), spread) - slot_of))
  chosen_first = times(moves, gather_slots)
  chosen = (times(moves * times(detections, spread), gather_slots) +
            (1.0 - chosen_first) * times(detections, first_best))
  return (tf.reshape(tf.cast(chosen, tf.int32), [-1, cells, count]),
          tf.reshape(chosen_first, [-1, cells, count]))


def _first_cells(boundary: tf.Tensor, count: int) -> tf.Tensor:
  """int32 [batch, count]: the cells of tier 2, then 1, then 0, raster order.

  What top_k(boundary, count) returns, as a permutation built from prefix
  sums and one scatter (a top_k keeping the order of ~1000 equal values of
  ~4000 took 5x longer in TFLite). Float arithmetic on integers below 2**24:
  exact.

  Args:
    boundary: float32 [batch, cells], values in {0, 1, 2}.
    count: how many cells, <= cells.
  """
  cells = boundary.shape[-1]
  tier2 = tf.nn.relu(boundary - 1.0)
  tier1 = boundary - 2.0 * tier2
  # Cells of tier 2 / tier 1 before each cell.
  before2 = tf.math.cumsum(tier2, axis=-1, exclusive=True)
  before1 = tf.math.cumsum(tier1, axis=-1, exclusive=True)
  count2 = tf.reduce_sum(tier2, axis=-1, keepdims=True)
  count1 = tf.reduce_sum(tier1, axis=-1, keepdims=True)
  index = tf.range(cells, dtype=tf.float32)
  position = (tier2 * before2 + tier1 * (count2 + before1) +
              (1.0 - tier1 - tier2) * (count2 + count1 + index - before1 -
                                       before2))
  batch = tf.shape(boundary)[0]
  offsets = tf.cast(tf.range(batch) * cells, tf.float32)[:, None]
  order = tf.scatter_nd(
      tf.reshape(tf.cast(position + offsets, tf.int32), [-1, 1]),
      tf.reshape(tf.zeros_like(boundary, tf.int32) + tf.range(cells), [-1]),
      tf.reshape(batch * cells, [1]))
  return tf.reshape(order, [-1, cells])[:, :count]


def _corner_pixels(height: int, width: int) -> np.ndarray:
  """int32 [cells, 4]: the mask pixel (row * width + column) of each corner.

  Cell (r, c) has corners at mask rows r - 1, r and columns c - 1, c,
  clamped to the mask as the resize clamps.
  """
  rows = np.arange(height + 1)[:, None, None]
  cols = np.arange(width + 1)[None, :, None]
  corner_rows = np.clip(rows + np.array([dy - 1 for dy, _ in _CORNERS]), 0,
                        height - 1)
  corner_cols = np.clip(cols + np.array([dx - 1 for _, dx in _CORNERS]), 0,
                        width - 1)
  return (corner_rows * width + corner_cols).reshape(
      (height + 1) * (width + 1), 4).astype(np.int32)


def _corner_views(values: tf.Tensor) -> Tuple[tf.Tensor, ...]:
  """[batch, ..., h, w] -> the 4 corners of each cell, 4 x [..., h+1, w+1].

  Edge-padded, as the resize clamps: a border cell's outer corners repeat
  its inner ones. (Concatenated slices: XNNPACK runs them, where TFLite's
  own MIRROR_PAD took 7x longer.)
  """
  height, width = values.shape[-2:]
  row = values.shape.rank - 2
  padded = tf.concat([values[..., :1, :], values, values[..., -1:, :]],
                     axis=row)
  padded = tf.concat([padded[..., :1], padded, padded[..., -1:]],
                     axis=row + 1)
  return tuple(padded[..., dy:dy + height + 1, dx:dx + width + 1]
               for dy, dx in _CORNERS)


def _pairwise(reduce: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
              views: Tuple[tf.Tensor, ...]) -> tf.Tensor:
  """Min or max of the 4 corner views, elementwise (XNNPACK runs these)."""
  return reduce(reduce(views[0], views[1]), reduce(views[2], views[3]))


def fast_merge(
    mask_logits: tf.Tensor, scores: tf.Tensor, valid: tf.Tensor,
    factor: int, mask_threshold: float,
    activation: Callable[[tf.Tensor], tf.Tensor],
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
  height, width, num_masks = mask_logits.shape[1:]
  pixels = height * width
  cells = (height + 1) * (width + 1)
  subpixels = factor * factor
  with tf.name_scope('rank'):
    # A zero score ranks like no detection (module doc).
    valid &= scores > 0.0
    ranking_scores = tf.where(valid, scores, 0.0)
    ranking = activation(mask_logits) * tf.reshape(
        ranking_scores * activation_scale, [-1, 1, 1, num_masks])
    best = tf.math.top_k(ranking, k=min(CANDIDATES_PER_CORNER, num_masks))
  with tf.name_scope('labels'):
    # Foreground: rank >= threshold * score, i.e. probability >= threshold;
    # never for an invalid detection in the label maps.
    score_thresholds = mask_threshold * ranking_scores
    rank_thresholds = tf.where(valid, score_thresholds, np.inf)
    # The threshold on activation(logits).
    threshold = mask_threshold / activation_scale

    def labels(index, rank):
      return tf.where(
          rank >= tf.gather(rank_thresholds, index, batch_dims=1), index,
          num_masks)

    # Not sliced: TFLite's strided slices of a last axis copy element-wise
    # (4x slower than an unstack, 9x slower than the matmuls of _columns; so are
    # `[..., None]` axes, 80x slower than tf.expand_dims).
    ranked_indices = tf.unstack(best.indices, axis=-1)
    ranked_values = _columns(best.values)
    first, first_rank = ranked_indices[0], ranked_values[0]
    label = labels(first, first_rank)
    if num_masks > 1:
      second_rank = ranked_values[1]
      second_label = labels(ranked_indices[1], second_rank)
    else:
      second_rank = tf.zeros_like(first_rank)
      second_label = tf.zeros_like(label)
    won_area = float(subpixels) * slot_sums(tf.ones_like(first_rank), label,
                                            num_masks)
    # Mask pixels: rank >= threshold * score, i.e. probability >= threshold
    # (where the score is positive; invalid detections are never kept):
    # the others have ceil(relu(threshold * score - rank)) = 1 (exact: the
    # difference has the sign of the comparison and lies below 1 for scores
    # in [0, 1]). Counted as a spatial mean (XNNPACK runs all three; TFLite's
    # own comparison, cast and sum took 2.5x longer), rounded back to an
    # integer count.
    mask_area = float(subpixels) * (float(pixels) - tf.round(
        float(pixels) * tf.reduce_mean(tf.math.ceil(tf.nn.relu(
            tf.reshape(score_thresholds, [-1, 1, 1, num_masks]) - ranking)),
        axis=[1, 2])))

  with tf.name_scope('uniform'):
    # Uniform cells (module doc), on float maps (XNNPACK slices them). The
    # three label maps are stacked on axis 1, so that each step is one op for
    # all of them; their corners agree where the lowest is the highest. (Not
    # the ranks too: the int8 converter quantizes an UNPACK of float maps.)
    label_views = _corner_views(tf.stack(
        [tf.cast(first, tf.float32), tf.cast(label, tf.float32),
         tf.cast(second_label, tf.float32)], axis=1))
    same_first, same_label, same_second = tf.unstack(tf.equal(
        _pairwise(tf.minimum, label_views), _pairwise(tf.maximum, label_views)),
        axis=1)
    same_winner = same_first & same_label
    corner_rank1 = _corner_views(first_rank)
    lowest_first = _pairwise(tf.minimum, corner_rank1)
    highest_first = _pairwise(tf.maximum, corner_rank1)
    highest_second = _pairwise(tf.maximum, _corner_views(second_rank))
    winner_fixed = same_winner & ((lowest_first > highest_second) |
                                  (highest_first <= 0.0))
    # 2: the painted label may change inside the cell; 1: only the runner-up's
    # mask area may (its contour under the winner); 0: uniform.
    boundary = tf.reshape(
        2.0 - tf.cast(winner_fixed, tf.float32) -
        tf.cast(winner_fixed & same_second, tf.float32), [-1, cells])

  with tf.name_scope('cells'):
    # The refined cells: label boundaries first, then runner-up contours.
    # (The epsilon keeps float rounding, e.g. 0.07 * 100, from adding a cell.)
    budget = max(1, min(cells, int(np.ceil(refine_share * cells - 1e-9))))
    refined = _first_cells(boundary, budget)
    # [batch, B, 4] mask pixel of each corner, from a table (TFLite's integer
    # arithmetic is slower than one gather of rows).
    corner_pixel = tf.gather(tf.constant(_corner_pixels(height, width)),
                             refined)
    per_corner = best.indices.shape[-1]
    candidates = tf.reshape(tf.gather(
        tf.reshape(best.indices, [-1, pixels, per_corner]), corner_pixel,
        batch_dims=1), [-1, budget, 4 * per_corner])
    num_candidates = min(REFINE_CANDIDATES, 4 * per_corner)
    candidates, first_of_slot = _distinct_candidates(candidates,
                                                     num_candidates)
  with tf.name_scope('refine'):
    # [batch * B * C, 4] each candidate's logit at each corner.
    # The maximum is no-op arithmetic (finite logits): a reshape of the logits
    # themselves would make the TFLite converter compute the mask einsum twice
    # (once more with the reshape folded in).
    flat_logits = tf.reshape(tf.maximum(mask_logits, -3.0e38),
                             [-1, pixels * num_masks])
    if pixels * num_masks <= 2 ** _FLOAT_INTEGER_BITS:
      # In float arithmetic, which XNNPACK runs (exact below 2**24).
      logit_index = tf.cast(
          tf.expand_dims(tf.cast(corner_pixel * num_masks, tf.float32), 2) +
          tf.expand_dims(tf.cast(candidates, tf.float32), -1), tf.int32)
    else:
      logit_index = (tf.expand_dims(corner_pixel, 2) * num_masks +
                     tf.expand_dims(candidates, -1))
    corner_logits = tf.reshape(
        tf.gather(flat_logits, logit_index, batch_dims=1), [-1, 4])
    offset, weights, nearest = _subpixel_constants(factor)
    # [batch, B, C, f * f] interpolated bilinearly (as tf.image.resize does, up
    # to float32 rounding).
    candidate_probs = activation(tf.reshape(
        tf.matmul(corner_logits, tf.constant(weights)),
        [-1, budget, num_candidates, subpixels]))
    slots = tf.expand_dims(candidates, -1)
    slot_scores = tf.gather(ranking_scores, slots, batch_dims=1)
    candidate_ranking = candidate_probs * (slot_scores * activation_scale)
    candidate_foreground = tf.cast(candidate_probs >= threshold, tf.float32)
    # The winner and its foreground state in float arithmetic, which XNNPACK
    # runs (TFLite's own SELECT / REDUCE_MIN took 3x longer than its
    # multiplications and REDUCE_MAX). (Not is_best = 1 - ceil(best - rank):
    # under XLA that differed from eager execution in some pixels.)
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
  with tf.name_scope('areas'):
    # Exact counts on the refined cells replace the nearest-neighbour ones
    # (the pixels nearest each corner inside the image carry its label).
    inside = tf.gather(
        tf.constant(_inside(height, width, factor, offset)), refined)
    nearest_inside = tf.reshape(
        tf.matmul(tf.reshape(inside, [-1, subpixels]), tf.constant(nearest.T)),
        [-1, budget, 4])
    corner_label = tf.gather(tf.reshape(label, [-1, pixels]), corner_pixel,
                             batch_dims=1)
    won_area += (slot_sums(inside, refined_label, num_masks) -
                 slot_sums(nearest_inside, corner_label, num_masks))
    # A candidate's mask pixels in the cell: exact, minus the nearest-neighbour
    # count (where the corner's own probability decides).
    corner_foreground = tf.reshape(
        tf.cast(activation(corner_logits) >= threshold, tf.float32),
        [-1, budget, num_candidates, 4])
    mask_change = (
        tf.reduce_sum(candidate_foreground * tf.expand_dims(inside, 2),
                      axis=3) -
        tf.reduce_sum(corner_foreground * tf.expand_dims(nearest_inside, 2),
                      axis=3))
    mask_area += slot_sums(mask_change * first_of_slot, candidates, num_masks)

  batch = tf.shape(refined)[0]
  flat_cells = tf.reshape(
      refined + tf.range(batch)[:, None] * cells, [-1, 1])

  def paint(values: tf.Tensor) -> tf.Tensor:
    """float32 [batch, N + 1] per-label values -> [batch, f * h, f * w].

    Nearest-neighbour upsampling of the mask-resolution values (a product
    with ones and depth_to_space, which XNNPACK runs), plus on the refined
    cells the difference to their exact labels' values. No matmul touches
    the values: integers below 2**24 paint exactly on any device.
    """
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
      # element by element (15x slower).
      difference = tf.reshape(
          tf.nn.depth_to_space(
              tf.reshape(difference, [-1, height + 1, width + 1, subpixels]),
              factor),
          [-1, factor * (height + 1), factor * (width + 1)])
      return image + tf.slice(difference, [0, offset, offset],
                              [-1, factor * height, factor * width])

  return paint, won_area, mask_area


def fast_merge_labels(
    mask_logits: tf.Tensor, scores: tf.Tensor, valid: tf.Tensor,
    factor: int, mask_threshold: float,
    activation: Callable[[tf.Tensor], tf.Tensor],
    refine_share: float, activation_scale: float = 1.0
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """`fast_merge` with the winners painted: int32 [batch, f * h, f * w].

  Each output pixel's winning detection, N where it is void; then the won
  and mask areas, as `fast_merge` returns them.
  """
  paint, won_area, mask_area = fast_merge(
      mask_logits, scores, valid, factor, mask_threshold, activation,
      refine_share, activation_scale)
  num_masks = mask_logits.shape[-1]
  identity = tf.zeros_like(scores[:, :1]) + tf.range(num_masks + 1,
                                                     dtype=tf.float32)
  return tf.cast(paint(identity), tf.int32), won_area, mask_area
