"""Panoptic copy-paste on decoded examples (pure TF).

Segments of a source example are rescaled, optionally flipped, placed at a
random position of the destination canvas and pasted over it. Pasted segments
get fresh segment ids; destination pixels they cover are taken over, and
destination segments left without pixels disappear from the segment lists.
It runs on decoder outputs, before the parser's augmentation and target
building, so masks, centers and heatmaps follow the pasted content.

Wiring: `pair_examples(dataset)` attaches to every decoded example the
previous example of the stream under `keys.COPY_PASTE_SOURCE` (pass it as
Model Garden's `InputReader(sample_fn=...)`, which runs after decoding and
shuffling and before parsing); the parser, given `copy_paste_prob > 0`, calls
`random_copy_paste` on the pair. Pairing neighbours of an already shuffled
stream costs no extra decoding, unlike zipping with a second shuffled copy.
"""

from typing import Dict, Optional

import tensorflow as tf

from maskconver import keys
from maskconver.dataloaders import targets


def paste_segments(destination: Dict[str, tf.Tensor],
                   source: Dict[str, tf.Tensor],
                   selected: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Pastes the selected source segments over the destination.

  Args:
    destination: decoder output dict (see `keys.py`).
    source: decoder output dict whose IMAGE and SEGMENT_MAP already have the
      destination's height and width (see `place_source`).
    selected: bool [num_source_segments], which source segments to paste.

  Returns:
    A copy of `destination` with IMAGE, SEGMENT_MAP and the segment lists
    updated. Pasted segments are appended to the lists with ids
    `max(existing ids) + 1 + i` (`i` = position in the source list).
  """
  dest_map = tf.cast(destination[keys.SEGMENT_MAP], tf.int32)
  dest_ids = tf.cast(destination[keys.SEGMENT_ID_LIST], tf.int32)
  src_ids = tf.cast(source[keys.SEGMENT_ID_LIST], tf.int32)
  selected = tf.cast(selected, tf.bool)

  first_free = 1 + tf.reduce_max(tf.concat(
      [[keys.VOID_SEGMENT_ID], dest_ids, tf.reshape(dest_map, [-1])], axis=0))
  new_ids = first_free + tf.range(tf.shape(src_ids)[0])
  src_index = targets.segment_index_map(source[keys.SEGMENT_MAP], src_ids)
  safe_index = tf.maximum(src_index, 0)
  pasted = tf.logical_and(src_index >= 0, tf.gather(
      tf.concat([selected, [False]], axis=0), safe_index))
  segment_map = tf.where(pasted, tf.gather(new_ids, safe_index), dest_map)
  image = tf.where(pasted[..., tf.newaxis],
                   tf.cast(source[keys.IMAGE], destination[keys.IMAGE].dtype),
                   destination[keys.IMAGE])

  ids = tf.concat([dest_ids, tf.boolean_mask(new_ids, selected)], axis=0)
  classes = tf.concat([
      tf.cast(destination[keys.SEGMENT_CLASS_LIST], tf.int32),
      tf.boolean_mask(tf.cast(source[keys.SEGMENT_CLASS_LIST], tf.int32),
                      selected)
  ], axis=0)
  crowd = tf.concat([
      tf.cast(destination[keys.SEGMENT_CROWD_LIST], tf.bool),
      tf.boolean_mask(tf.cast(source[keys.SEGMENT_CROWD_LIST], tf.bool),
                      selected)
  ], axis=0)
  # Keep the listed segments that still own a pixel.
  present = tf.concat(
      [tf.sort(tf.unique(tf.reshape(segment_map, [-1]))[0]), [tf.int32.max]],
      axis=0)
  keep = tf.equal(tf.gather(present, tf.searchsorted(present, ids)), ids)

  output = dict(destination)
  output.pop(keys.COPY_PASTE_SOURCE, None)
  output[keys.IMAGE] = image
  output[keys.SEGMENT_MAP] = segment_map
  output[keys.SEGMENT_ID_LIST] = tf.boolean_mask(ids, keep)
  output[keys.SEGMENT_CLASS_LIST] = tf.boolean_mask(classes, keep)
  output[keys.SEGMENT_CROWD_LIST] = tf.boolean_mask(crowd, keep)
  return output


def _place(tensor, top, left, height, width):
  """Puts `tensor` [h, w, c] at (top, left) of a zero [height, width, c]."""
  size = tf.shape(tensor)
  src_top = tf.maximum(-top, 0)
  src_left = tf.maximum(-left, 0)
  top = tf.maximum(top, 0)
  left = tf.maximum(left, 0)
  rows = tf.maximum(tf.minimum(size[0] - src_top, height - top), 0)
  cols = tf.maximum(tf.minimum(size[1] - src_left, width - left), 0)
  crop = tensor[src_top:src_top + rows, src_left:src_left + cols]
  return tf.pad(crop, [[top, height - top - rows],
                       [left, width - left - cols], [0, 0]])


def place_source(source: Dict[str, tf.Tensor], height: tf.Tensor,
                 width: tf.Tensor, scale: tf.Tensor, flip: tf.Tensor,
                 position: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Rescales, flips and places a source example on a destination canvas.

  The source is resized (bilinear image, nearest segment map) by
  `scale * min(height / source_height, width / source_width)`, flipped
  left-right if `flip`, and placed so that `position` (float32 [2] in [0, 1])
  spans every placement from flush top/left to flush bottom/right; parts
  outside the canvas are cut, uncovered canvas is void.

  Args:
    source: decoder output dict.
    height: int32 [], destination height.
    width: int32 [], destination width.
    scale: float32 [], scale relative to fitting the destination.
    flip: bool [].
    position: float32 [2], relative (y, x) placement.

  Returns:
    `source` with IMAGE uint8 [height, width, 3] and SEGMENT_MAP int32
    [height, width].
  """
  src_size = tf.cast(tf.shape(source[keys.SEGMENT_MAP])[:2], tf.float32)
  canvas = tf.stack([height, width])
  fit = tf.reduce_min(tf.cast(canvas, tf.float32) / src_size)
  scaled = tf.maximum(tf.cast(tf.round(src_size * fit * scale), tf.int32), 1)
  low = tf.minimum(canvas - scaled, 0)
  high = tf.maximum(canvas - scaled, 0)
  offset = low + tf.cast(
      tf.floor(position * tf.cast(high - low + 1, tf.float32)), tf.int32)
  offset = tf.minimum(offset, high)

  image = tf.image.resize(source[keys.IMAGE], scaled, method='bilinear')
  image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
  image = _place(image, offset[0], offset[1], height, width)
  placed = dict(source)
  placed[keys.IMAGE] = tf.cast(
      tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
  placed[keys.SEGMENT_MAP] = _nearest_place(
      tf.cast(source[keys.SEGMENT_MAP], tf.int32), scaled, offset, flip,
      canvas)
  return placed


def _nearest_place(segment_map, scaled, offset, flip, canvas):
  """Nearest resize to `scaled`, optional flip and placement at `offset`.

  Equals `tf.image.resize(..., 'nearest')` followed by the flip and `_place`,
  but reads only the source pixels that land on the canvas.
  """
  in_size = tf.shape(segment_map)

  def source_index(axis, flipped):
    position = tf.range(canvas[axis]) - offset[axis]
    inside = tf.logical_and(position >= 0, position < scaled[axis])
    position = tf.where(flipped, scaled[axis] - 1 - position, position)
    ratio = (tf.cast(in_size[axis], tf.float32) /
             tf.cast(scaled[axis], tf.float32))
    index = tf.cast(tf.floor((tf.cast(position, tf.float32) + 0.5) * ratio),
                    tf.int32)
    return tf.clip_by_value(index, 0, in_size[axis] - 1), inside

  rows, inside_rows = source_index(0, tf.constant(False))
  cols, inside_cols = source_index(1, flip)
  placed = tf.gather(tf.gather(segment_map, rows), cols, axis=1)
  inside = tf.logical_and(inside_rows[:, tf.newaxis], inside_cols[tf.newaxis])
  return tf.where(inside, placed, keys.VOID_SEGMENT_ID)


def _seed(seed: Optional[int], index: int) -> Optional[int]:
  """Distinct op seeds, so that seeded draws are not identical."""
  return None if seed is None else seed + index


def _with_contract_dtypes(
    example: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Casts the segment map and lists to the decoder contract's dtypes."""
  example = dict(example)
  example[keys.SEGMENT_MAP] = tf.cast(example[keys.SEGMENT_MAP], tf.int32)
  example[keys.SEGMENT_ID_LIST] = tf.cast(example[keys.SEGMENT_ID_LIST],
                                          tf.int32)
  example[keys.SEGMENT_CLASS_LIST] = tf.cast(
      example[keys.SEGMENT_CLASS_LIST], tf.int32)
  example[keys.SEGMENT_CROWD_LIST] = tf.cast(
      example[keys.SEGMENT_CROWD_LIST], tf.bool)
  return example


def random_copy_paste(destination: Dict[str, tf.Tensor],
                      source: Dict[str, tf.Tensor],
                      *,
                      num_thing_classes: int,
                      prob: float = 1.0,
                      scale_min: float = 0.1,
                      scale_max: float = 2.0,
                      segment_prob: float = 0.5,
                      paste_stuff: bool = False,
                      seed: Optional[int] = None) -> Dict[str, tf.Tensor]:
  """With probability `prob`, pastes random source segments on destination.

  Each non-crowd source thing (and stuff segment if `paste_stuff`) is pasted
  independently with probability `segment_prob`, after `place_source` with a
  scale uniform in [scale_min, scale_max], a fair coin flip and a uniform
  position. An empty source (no pixels or no segments) leaves the destination
  unchanged.

  Args:
    destination: decoder output dict.
    source: decoder output dict of another example.
    num_thing_classes: classes below this id are things.
    prob: probability to apply copy-paste at all.
    scale_min: smallest source scale relative to fitting the destination.
    scale_max: largest source scale.
    segment_prob: probability to paste each eligible segment.
    paste_stuff: whether stuff segments may be pasted too.
    seed: optional op seed.

  Returns:
    The (possibly) pasted destination dict, without COPY_PASTE_SOURCE.
  """
  if not 0.0 <= prob <= 1.0 or not 0.0 <= segment_prob <= 1.0:
    raise ValueError(f'prob and segment_prob must lie in [0, 1], got {prob} '
                     f'and {segment_prob}')
  if not 0.0 < scale_min <= scale_max:
    raise ValueError(f'need 0 < scale_min <= scale_max, got {scale_min}, '
                     f'{scale_max}')
  destination = _with_contract_dtypes(destination)
  destination.pop(keys.COPY_PASTE_SOURCE, None)
  src_classes = tf.cast(source[keys.SEGMENT_CLASS_LIST], tf.int32)
  eligible = tf.logical_and(
      src_classes >= 0,
      tf.logical_not(tf.cast(source[keys.SEGMENT_CROWD_LIST], tf.bool)))
  if not paste_stuff:
    eligible = tf.logical_and(eligible, src_classes < num_thing_classes)
  selected = tf.logical_and(
      eligible,
      tf.random.uniform(tf.shape(src_classes), seed=_seed(seed, 0)) <
      segment_prob)
  apply = tf.logical_and(
      tf.random.uniform([], seed=_seed(seed, 1)) < prob,
      tf.logical_and(tf.reduce_any(selected),
                     tf.size(source[keys.SEGMENT_MAP]) > 0))

  def paste():
    size = tf.shape(destination[keys.SEGMENT_MAP])
    placed = place_source(
        source, size[0], size[1],
        tf.random.uniform([], scale_min, scale_max, seed=_seed(seed, 2)),
        tf.random.uniform([], seed=_seed(seed, 3)) < 0.5,
        tf.random.uniform([2], seed=_seed(seed, 4)))
    return paste_segments(destination, placed, selected)

  return tf.cond(apply, paste, lambda: destination)


def _empty_like(spec: tf.TensorSpec) -> tf.Tensor:
  shape = [0 if d is None else d for d in spec.shape.as_list()]
  if spec.dtype == tf.string:
    return tf.fill(shape, '')
  return tf.zeros(shape, spec.dtype)


def pair_examples(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Attaches the previous decoded example as the copy-paste source.

  Args:
    dataset: decoded examples (dicts of the decoder's keys), shuffled.

  Returns:
    The same examples, each with `keys.COPY_PASTE_SOURCE` holding the previous
    example (an empty example for the first one, which pastes nothing).
  """
  spec = dataset.element_spec
  if not isinstance(spec, dict) or keys.SEGMENT_MAP not in spec:
    raise ValueError('pair_examples needs a dataset of decoder output dicts '
                     f'with {keys.SEGMENT_MAP!r}, got element_spec {spec}')
  initial = tf.nest.map_structure(_empty_like, spec)

  def step(previous, current):
    paired = dict(current)
    paired[keys.COPY_PASTE_SOURCE] = previous
    return current, paired

  return dataset.scan(initial, step)
