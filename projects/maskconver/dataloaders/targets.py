"""Host-side ops: a segment map -> the compact description of its targets.

The input pipeline sends, per example, a few small tensors that describe the
MaskConver targets; the train and validation steps expand them into dense
heatmaps, masks and weights on the device (`maskconver.ops.target_ops`).
Per example at 1280x1280 with K = 256 this is 0.23 MB instead of the 45 MB of
dense float32 heatmaps and K masks.

Conventions used by every function here:

* A pixel `(i, j)` covers the continuous square `[i, i + 1) x [j, j + 1)`, so
  its centre is `(i + 0.5, j + 0.5)`. Centers are in these continuous
  output-image coordinates; a horizontal flip maps `x` to `width - x`.
* The cell of a center at a level with stride `s` is `floor(center / s)`,
  clipped to the level's grid.
* Targets: one per non-crowd thing segment, and one per stuff CLASS present
  (all non-crowd segments of that class merged). Void pixels (segment id 0,
  ids missing from the segment list, or segments with class `VOID_CLASS`) and
  crowd pixels are never part of a target and are ignored by the losses.
  Padding pixels (`keys.PADDING_SEGMENT_ID`, the canvas around a scaled
  image) are background: negatives for the heatmaps and the masks.
* Drop policy, when an image has more candidates than `max_instances` (K):
  every stuff class is kept (there are at most `num_classes -
  num_thing_classes` of them, fewer than K in every recipe), then things by
  decreasing area; ties keep list order. Pixels of dropped things are ignored
  by the heatmap loss (their centers are not negatives) but count as
  background for the kept masks.
* Slot order: kept things by decreasing area, then kept stuff by decreasing
  area.
"""

import math
from typing import Dict, List, Optional, Sequence

import tensorflow as tf

from maskconver import keys
from maskconver.dataloaders import resampling

CENTER_TYPES = ('mask', 'box')
LEVEL_SIZE_MEASURES = ('sqrt_area', 'box_side')


def _distinct_segment_index(segment_map: tf.Tensor, segment_ids: tf.Tensor):
  """Looks up each distinct id of the map once (an image has few of them).

  Returns:
    distinct_index: int32 [num_distinct], list position of each distinct id
      of the map, -1 for void and unlisted ids.
    pixel_distinct: int32 [height * width], which distinct id each pixel has.
  """
  segment_ids = tf.cast(segment_ids, tf.int32)
  distinct, pixel_distinct = tf.unique(
      tf.reshape(tf.cast(segment_map, tf.int32), [-1]))
  order = tf.argsort(segment_ids, stable=True)
  # A sentinel past every real id keeps the lookup valid for empty lists.
  sorted_ids = tf.concat(
      [tf.gather(segment_ids, order), [tf.int32.max]], axis=0)
  order = tf.concat([order, [-1]], axis=0)
  position = tf.searchsorted(sorted_ids, distinct, side='left')
  found = tf.logical_and(
      tf.equal(tf.gather(sorted_ids, position), distinct),
      tf.not_equal(distinct, keys.VOID_SEGMENT_ID))
  return tf.where(found, tf.gather(order, position), -1), pixel_distinct


def segment_index_map(segment_map: tf.Tensor,
                      segment_ids: tf.Tensor) -> tf.Tensor:
  """Maps every pixel to the position of its segment in `segment_ids`.

  Args:
    segment_map: int32 [height, width], COCO segment ids (0 = void).
    segment_ids: int32 [num_segments], ids of the listed segments (unique).

  Returns:
    int32 [height, width], index into `segment_ids`, or -1 for void pixels and
    pixels whose id is not listed.
  """
  distinct_index, pixel_distinct = _distinct_segment_index(segment_map,
                                                           segment_ids)
  return tf.reshape(tf.gather(distinct_index, pixel_distinct),
                    tf.shape(segment_map))


def gaussian_radius(height: tf.Tensor, width: tf.Tensor,
                    min_overlap: float) -> tf.Tensor:
  """CenterNet's Gaussian radius for a box.

  The smallest of the three radii of CornerNet/CenterNet's `gaussian_radius`
  (with their quadratic solutions exactly as CenterNet computes them), i.e. the
  corner displacement at which a box of that size still has IoU
  `min_overlap` with the true box.

  Args:
    height: float32 [...], box heights in cells.
    width: float32 [...], box widths in cells.
    min_overlap: minimum IoU, e.g. 0.7.

  Returns:
    float32 [...], the radius in cells (not rounded).
  """
  h = tf.cast(height, tf.float32)
  w = tf.cast(width, tf.float32)
  o = min_overlap
  b1 = h + w
  c1 = w * h * (1.0 - o) / (1.0 + o)
  r1 = (b1 + tf.sqrt(b1 * b1 - 4.0 * c1)) / 2.0
  b2 = 2.0 * (h + w)
  c2 = (1.0 - o) * w * h
  r2 = (b2 + tf.sqrt(b2 * b2 - 16.0 * c2)) / 2.0
  b3 = -2.0 * o * (h + w)
  c3 = (o - 1.0) * w * h
  r3 = (b3 + tf.sqrt(b3 * b3 - 16.0 * o * c3)) / 2.0
  return tf.minimum(tf.minimum(r1, r2), r3)


def level_boundaries(num_levels: int, base_size: float, reference_size: float,
                     output_size: Sequence[int]) -> List[float]:
  """Instance-size boundaries between consecutive head levels.

  Boundary `i` is `base_size * 2**i`, defined for an image whose longer side
  is `reference_size` and scaled to the longer side of `output_size`: with the
  defaults (64, 1024) a 1024-pixel output uses [0, 64), [64, 128), [128, 256),
  [256, 512), [512, inf) for levels 3..7.

  Args:
    num_levels: number of head levels.
    base_size: upper size bound of the finest level at `reference_size`.
    reference_size: longer image side at which `base_size` is defined.
    output_size: [height, width] of the training images.

  Returns:
    `num_levels - 1` increasing boundaries in output-image pixels.
  """
  scale = max(output_size) / float(reference_size)
  return [base_size * (2.0**i) * scale for i in range(num_levels - 1)]


def _candidate_map(segment_map, segment_ids, segment_classes,
                   segment_is_crowd, num_classes, num_thing_classes):
  """Per-pixel candidate target, see `describe_targets`.

  Candidates `0 .. n - 1` are the thing segments, `n .. n + num_stuff - 1` the
  stuff classes; bucket `n + num_stuff` collects void and crowd pixels and
  bucket `n + num_stuff + 1` padding pixels.
  """
  segment_classes = tf.cast(segment_classes, tf.int32)
  tf.debugging.assert_less(
      segment_classes, num_classes,
      message=f'segment class ids must be < num_classes={num_classes} '
      '(task.model.num_classes): the records were converted with a label map '
      'of more classes than the model has')
  num_segments = tf.shape(segment_ids)[0]
  num_candidates = num_segments + (num_classes - num_thing_classes)
  is_thing = segment_classes < num_thing_classes
  usable = tf.logical_and(segment_classes >= 0,
                          tf.logical_not(tf.cast(segment_is_crowd, tf.bool)))
  candidate = tf.where(
      is_thing, tf.range(num_segments),
      num_segments + segment_classes - num_thing_classes)
  candidate = tf.where(usable, candidate, num_candidates)
  distinct_index, pixel_distinct = _distinct_segment_index(segment_map,
                                                           segment_ids)
  candidate = tf.concat([candidate, [num_candidates]], axis=0)
  distinct_candidate = tf.gather(
      candidate, tf.where(distinct_index >= 0, distinct_index, num_segments))
  pixel_candidate = tf.reshape(tf.gather(distinct_candidate, pixel_distinct),
                               tf.shape(segment_map))
  pixel_candidate = tf.where(
      tf.equal(tf.cast(segment_map, tf.int32), keys.PADDING_SEGMENT_ID),
      num_candidates + 1, pixel_candidate)
  # One entry per candidate plus the void/crowd and padding buckets.
  candidate_class = tf.concat([
      tf.where(is_thing, segment_classes, 0),
      tf.range(num_thing_classes, num_classes), [0, 0]
  ], axis=0)
  candidate_is_thing = tf.range(num_candidates + 2) < num_segments
  return pixel_candidate, num_candidates, candidate_class, candidate_is_thing


def _band(values: tf.Tensor, window: resampling.Window):
  """The rows and columns of `values` that `window` reads, and the window's
  indices relative to them."""
  row_first = tf.reduce_min(window.rows)
  col_first = tf.reduce_min(window.cols)
  band = values[row_first:tf.reduce_max(window.rows) + 1,
                col_first:tf.reduce_max(window.cols) + 1]
  return band, window.rows - row_first, window.cols - col_first


def _line_counts(band, lines, line_valid, across, across_valid, buckets,
                 pad_bucket):
  """Bucket counts of every output line (row of the output when `band` is
  in source layout, column when it is transposed).

  An output line is a source line read at `across`, so it counts each
  source pixel as often as `across` repeats its position: one weighted
  count per source line, gathered by `lines`. The output map is never
  built. Padding lines and padding positions count in `pad_bucket`.
  """
  repeats = tf.math.unsorted_segment_sum(tf.cast(across_valid, tf.int32),
                                         across, tf.shape(band)[1])
  counts = tf.math.bincount(band, weights=tf.broadcast_to(repeats,
                                                          tf.shape(band)),
                            minlength=buckets, maxlength=buckets, axis=-1)
  padding = tf.one_hot(pad_bucket, buckets, dtype=tf.int32)
  counts += padding * (across.shape[0] - tf.reduce_sum(repeats))
  counts = tf.gather(counts, lines)
  return tf.where(line_valid[:, tf.newaxis], counts,
                  padding[tf.newaxis] * across.shape[0])


def _candidate_statistics(row_counts: tf.Tensor, col_counts: tf.Tensor):
  """Pixel count, coordinate sums and bounding box of every candidate.

  Args:
    row_counts: int32 [height, buckets], pixels of each candidate per output
      row.
    col_counts: int32 [width, buckets], the same per output column.

  Returns:
    area int32, y_sum int64, x_sum int64, y_min, y_max, x_min, x_max int32,
    each [buckets] (the box of an empty candidate is meaningless).
  """
  def extent(counts):
    position = tf.range(tf.shape(counts)[0])
    present = counts > 0
    first = tf.argmax(present, axis=0, output_type=tf.int32)
    last = (tf.shape(counts)[0] - 1 -
            tf.argmax(present[::-1], axis=0, output_type=tf.int32))
    coordinate_sum = tf.reduce_sum(
        tf.cast(counts, tf.int64) * tf.cast(position, tf.int64)[:, tf.newaxis],
        axis=0)
    return coordinate_sum, first, last

  y_sum, y_min, y_max = extent(row_counts)
  x_sum, x_min, x_max = extent(col_counts)
  return (tf.reduce_sum(row_counts, axis=0), y_sum, x_sum, y_min, y_max,
          x_min, x_max)


def _cell_sums(values, rows, cols, window, cell):
  """Sums of the resampled `values` over `cell` x `cell` output cells.

  `values` (int32, 0 on padding) is read through `rows`, `cols` and the
  window's validity; columns are summed per cell before the rows are
  gathered, so only one output-width band is built.
  """
  width = cols.shape[0]
  across = tf.gather(values, cols, axis=1)
  across = tf.where(window.col_valid[tf.newaxis], across, 0)
  across = tf.reduce_sum(
      tf.reshape(across, [-1, width // cell, cell]), axis=2)
  lines = tf.where(window.row_valid[:, tf.newaxis], tf.gather(across, rows),
                   0)
  return tf.reduce_sum(
      tf.reshape(lines, [rows.shape[0] // cell, cell, width // cell]), axis=1)


def slot_map_dtype(max_instances: int) -> tf.DType:
  """Smallest dtype of a slot map holding 0 .. max_instances + 1."""
  return tf.uint8 if max_instances + 1 <= 255 else tf.int16


def ignore_count_dtype(min_level: int) -> tf.DType:
  """Smallest dtype of a count of up to `4**min_level` pixels."""
  return tf.uint8 if 4**min_level <= 255 else tf.int16


def describe_targets(segment_map: tf.Tensor,
                     segment_ids: tf.Tensor,
                     segment_classes: tf.Tensor,
                     segment_is_crowd: tf.Tensor,
                     *,
                     num_classes: int,
                     num_thing_classes: int,
                     max_instances: int,
                     min_level: int,
                     max_level: int,
                     mask_stride: int = 4,
                     center_type: str = 'mask',
                     gaussian_min_overlap: float = 0.7,
                     gaussian_min_radius: int = 0,
                     level_size_measure: str = 'sqrt_area',
                     level_size_boundaries: Sequence[float] = (),
                     window: Optional[resampling.Window] = None
                     ) -> Dict[str, tf.Tensor]:
  """The compact description of an image's MaskConver targets.

  Centers: `center_type='mask'` is the centroid of the target's pixel centres
  (things and stuff alike); `'box'` the center of its pixel bounding box.
  Levels: the size (`'sqrt_area'`: square root of the pixel count,
  `'box_side'`: longer bounding-box side) is compared with
  `level_size_boundaries` (`max_level - min_level` increasing values, see
  `level_boundaries`); level = `min_level + number of boundaries <= size`.
  Gaussian radius: `max(gaussian_min_radius, floor(gaussian_radius(box_h / s,
  box_w / s)))` on the target's bounding box in cells of its level (stride
  `s`). The slot map samples the segment map at pixel `(s * i + s // 2,
  s * j + s // 2)` for mask cell `(i, j)` with `s = mask_stride`.
  `maskconver.ops.target_ops.dense_targets` expands this into heatmaps,
  heatmap weights, masks and mask weights.

  With a `window`, the targets are those of the output map
  `resampling.resample(segment_map, window, keys.PADDING_SEGMENT_ID)`
  (identical values), computed from `segment_map` at its own resolution
  without building the output map.

  Args:
    segment_map: int32 [height, width], COCO segment ids (0 = void,
      `keys.PADDING_SEGMENT_ID` = padding); height and width must be
      multiples of `2**max_level` and of `mask_stride`. With a `window`:
      the source map, of any size.
    segment_ids: int32 [n], ids of the listed segments (unique).
    segment_classes: int32 [n], training class ids (things first).
    segment_is_crowd: bool [n].
    num_classes: number of training classes.
    num_thing_classes: classes `0 .. num_thing_classes - 1` are things.
    max_instances: number of target slots K.
    min_level: finest head level.
    max_level: coarsest head level.
    mask_stride: stride of the mask targets.
    center_type: 'mask' or 'box'.
    gaussian_min_overlap: IoU used by `gaussian_radius`.
    gaussian_min_radius: smallest Gaussian radius in cells.
    level_size_measure: 'sqrt_area' or 'box_side'.
    level_size_boundaries: `max_level - min_level` sizes in pixels.
    window: optional `resampling.Window` from `segment_map` to the output
      map; its lengths (static) are the output height and width.

  Returns:
    A dict with, per example:
      SLOT_MAP: `slot_map_dtype(K)` [height / mask_stride, width /
        mask_stride]: `k + 1` on pixels of target slot k, 0 on background
        (padding, dropped targets), K + 1 on void and crowd.
      HEATMAP_IGNORE_COUNT: `ignore_count_dtype(min_level)` [height /
        2**min_level, width / 2**min_level], pixels of each min_level cell
        that the heatmap loss ignores (void, crowd, dropped targets).
      CLASSES, LEVELS, GAUSSIAN_RADII: int32 [K]; CENTERS: float32 [K, 2];
      NUM_INSTANCES: int32 []. Padded slots have class 0, center (0, 0),
      level `min_level`, radius 0.
  """
  if center_type not in CENTER_TYPES:
    raise ValueError(f'center_type must be one of {CENTER_TYPES}, got '
                     f'{center_type!r}')
  if level_size_measure not in LEVEL_SIZE_MEASURES:
    raise ValueError(f'level_size_measure must be one of '
                     f'{LEVEL_SIZE_MEASURES}, got {level_size_measure!r}')
  if len(level_size_boundaries) != max_level - min_level:
    raise ValueError(
        f'level_size_boundaries needs {max_level - min_level} values for '
        f'levels {min_level}..{max_level}, got {list(level_size_boundaries)}')
  whole_map = window is None
  if whole_map:
    height, width = segment_map.shape.as_list()
    if height is None or width is None:
      raise ValueError('segment_map needs a static [height, width] shape, '
                       f'got {segment_map.shape}')
    window = resampling.identity_window(height, width)
  height = window.rows.shape[0]
  width = window.cols.shape[0]
  if height is None or width is None:
    raise ValueError('the window needs static lengths, got '
                     f'{window.rows.shape} and {window.cols.shape}')
  segment_map = tf.convert_to_tensor(segment_map)
  output_area = height * width
  whole_window = resampling.identity_window(height, width)

  def through(source, view):
    k = max_instances

    pixel_candidate, num_candidates, candidate_class, candidate_is_thing = (
        _candidate_map(source, segment_ids, segment_classes,
                       segment_is_crowd, num_classes, num_thing_classes))
    buckets = num_candidates + 2
    pad_bucket = num_candidates + 1
    band, band_rows, band_cols = _band(pixel_candidate, view)
    row_counts = _line_counts(band, band_rows, view.row_valid, band_cols,
                              view.col_valid, buckets, pad_bucket)
    col_counts = _line_counts(tf.transpose(band), band_cols, view.col_valid,
                              band_rows, view.row_valid, buckets, pad_bucket)
    stats = _candidate_statistics(row_counts, col_counts)
    area, y_sum, x_sum, y_min, y_max, x_min, x_max = stats
    valid_candidate = tf.logical_and(area > 0,
                                     tf.range(buckets) < num_candidates)
    area64 = tf.cast(area, tf.int64)
    big = height * width + 1

    # Which candidates are kept: stuff first, then the largest things.
    keep_tier = tf.where(valid_candidate, tf.where(candidate_is_thing, 1, 2), 0)
    keep_order = tf.argsort(tf.cast(keep_tier, tf.int64) * big + area64,
                            direction='DESCENDING', stable=True)
    num_instances = tf.minimum(
        tf.reduce_sum(tf.cast(valid_candidate, tf.int32)), k)
    kept = tf.scatter_nd(keep_order[:num_instances, tf.newaxis],
                         tf.ones([num_instances], tf.bool), [buckets])
    # Slot order of the kept ones: things first, then larger masks.
    slot_tier = tf.where(kept, tf.where(candidate_is_thing, 2, 1), 0)
    order = tf.argsort(tf.cast(slot_tier, tf.int64) * big + area64,
                       direction='DESCENDING', stable=True)
    order = tf.pad(order[:num_instances], [[0, k - num_instances]])
    valid = tf.range(k) < num_instances
    slot_of_candidate = tf.tensor_scatter_nd_update(
        tf.fill([buckets], -1), order[:num_instances, tf.newaxis],
        tf.range(num_instances))

    def take(values):
      return tf.gather(values, order)

    area_k = tf.cast(take(area), tf.float64)
    safe_area = tf.maximum(area_k, 1.0)
    box_y0, box_y1 = take(y_min), take(y_max) + 1
    box_x0, box_x1 = take(x_min), take(x_max) + 1
    if center_type == 'mask':
      center_y = tf.cast(take(y_sum), tf.float64) / safe_area + 0.5
      center_x = tf.cast(take(x_sum), tf.float64) / safe_area + 0.5
    else:
      center_y = tf.cast(box_y0 + box_y1, tf.float64) / 2.0
      center_x = tf.cast(box_x0 + box_x1, tf.float64) / 2.0
    centers = tf.cast(tf.stack([center_y, center_x], axis=-1), tf.float32)
    centers = tf.where(valid[:, tf.newaxis], centers, 0.0)
    box_h = tf.cast(box_y1 - box_y0, tf.float32)
    box_w = tf.cast(box_x1 - box_x0, tf.float32)

    if level_size_measure == 'sqrt_area':
      size = tf.sqrt(tf.cast(area_k, tf.float32))
    else:
      size = tf.maximum(box_h, box_w)
    level_index = tf.zeros([k], tf.int32)
    for boundary in level_size_boundaries:
      level_index += tf.cast(size >= boundary, tf.int32)
    level_index = tf.where(valid, level_index, 0)
    levels = min_level + level_index
    stride = tf.cast(2**levels, tf.float32)
    radius = tf.floor(gaussian_radius(box_h / stride, box_w / stride,
                                      gaussian_min_overlap))
    radius = tf.maximum(tf.cast(radius, tf.int32), gaussian_min_radius)
    radius = tf.where(valid, radius, 0)
    classes = tf.where(valid, take(candidate_class), 0)

    # Pixels the heatmap loss ignores: void, crowd and dropped candidates.
    ignored_bucket = tf.logical_or(
        tf.logical_and(valid_candidate, slot_of_candidate < 0),
        tf.equal(tf.range(buckets), num_candidates))
    cell = 2**min_level
    ignore_count = _cell_sums(
        tf.gather(tf.cast(ignored_bucket, tf.int32), band), band_rows,
        band_cols, view, cell)

    half = mask_stride // 2
    sampled = resampling.resample(
        band, resampling.Window(band_rows[half::mask_stride],
                                view.row_valid[half::mask_stride],
                                band_cols[half::mask_stride],
                                view.col_valid[half::mask_stride]),
        pad_bucket)
    slot_map = tf.where(tf.equal(sampled, num_candidates), k + 1,
                        tf.gather(slot_of_candidate, sampled) + 1)

    return {
        keys.SLOT_MAP: tf.cast(slot_map, slot_map_dtype(k)),
        keys.HEATMAP_IGNORE_COUNT: tf.cast(ignore_count,
                                           ignore_count_dtype(min_level)),
        keys.CLASSES: classes,
        keys.CENTERS: centers,
        keys.LEVELS: levels,
        keys.GAUSSIAN_RADII: radius,
        keys.NUM_INSTANCES: num_instances,
    }

  if whole_map:
    return through(segment_map, window)
  # Counting through the window reads the source lines it spans; when they
  # hold more pixels than the output (a downscale), resampling first is
  # cheaper. Both give the same targets.
  band_area = ((tf.reduce_max(window.rows) - tf.reduce_min(window.rows) + 1) *
               (tf.reduce_max(window.cols) - tf.reduce_min(window.cols) + 1))
  return tf.cond(
      band_area > output_area,
      lambda: through(resampling.resample(tf.cast(segment_map, tf.int32),
                                          window, keys.PADDING_SEGMENT_ID),
                      whole_window),
      lambda: through(segment_map, window))


def label_bytes(output_size: Sequence[int], min_level: int,
                max_instances: int, mask_stride: int = 4) -> int:
  """Bytes of one example's training labels as `describe_targets` makes them.

  Args:
    output_size: [height, width] of the network input.
    min_level: finest head level.
    max_instances: target slots K.
    mask_stride: stride of the mask targets.

  Returns:
    Slot map + ignore counts + per-slot vectors (class, level, radius: int32;
    center: 2 float32) + the instance count.
  """
  height, width = output_size
  slot_map = ((height // mask_stride) * (width // mask_stride) *
              slot_map_dtype(max_instances).size)
  cell = 2**min_level
  ignore = ((height // cell) * (width // cell) *
            ignore_count_dtype(min_level).size)
  per_instance = 4 + 4 + 4 + 8
  return slot_map + ignore + max_instances * per_instance + 4


def validate_level_grid(output_size: Sequence[int], max_level: int,
                        mask_stride: int) -> None:
  """Raises ValueError unless `output_size` divides into every grid."""
  stride = math.lcm(2**max_level, mask_stride)
  if any(s % stride for s in output_size):
    raise ValueError(
        f'output_size {list(output_size)} must be a multiple of {stride} '
        f'(2**max_level={2**max_level}, mask_stride={mask_stride})')
