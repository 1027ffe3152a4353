"""Tests of maskconver.dataloaders.copy_paste."""

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.dataloaders import copy_paste
from maskconver.dataloaders import parser as parser_lib
from maskconver.dataloaders import targets

import target_chain


def numpy(structure):
  return tf.nest.map_structure(lambda t: t.numpy(), structure)


def destination_and_source(make_decoded):
  """16x16 destination: D (id 5) rows 0-7 x cols 0-7, E (id 6) rows 10-11 x
  cols 10-11, stuff F (id 8) rows 12-15. Source: S (id 5, class 1) rows 4-11
  x cols 4-11 and stuff T (id 9) rows 0-3 x cols 12-15."""
  dest = np.zeros((16, 16), np.int32)
  dest[0:8, 0:8] = 5
  dest[10:12, 10:12] = 6
  dest[12:16, :] = 8
  src = np.zeros((16, 16), np.int32)
  src[4:12, 4:12] = 5
  src[0:4, 12:16] = 9
  destination = make_decoded(dest, [5, 6, 8], [0, 0, 2], [False] * 3,
                             np.full((16, 16, 3), 100, np.uint8))
  source = make_decoded(src, [5, 9], [1, 2], [False, False],
                        np.full((16, 16, 3), 200, np.uint8))
  return destination, source


def test_paste_updates_occluded_segments_and_lists(make_decoded):
  destination, source = destination_and_source(make_decoded)
  out = numpy(copy_paste.paste_segments(destination, source,
                                        tf.constant([True, False])))
  # The pasted segment gets id max(5, 6, 8) + 1 = 9 (the source's own 5 and
  # 9 would collide); E is fully covered and leaves the lists.
  expected = np.zeros((16, 16), np.int32)
  expected[0:8, 0:8] = 5
  expected[12:16, :] = 8
  expected[4:12, 4:12] = 9
  np.testing.assert_array_equal(out[keys.SEGMENT_MAP], expected)
  np.testing.assert_array_equal(out[keys.SEGMENT_ID_LIST], [5, 8, 9])
  np.testing.assert_array_equal(out[keys.SEGMENT_CLASS_LIST], [0, 2, 1])
  np.testing.assert_array_equal(out[keys.SEGMENT_CROWD_LIST], [False] * 3)
  expected_image = np.full((16, 16, 3), 100, np.uint8)
  expected_image[4:12, 4:12] = 200
  np.testing.assert_array_equal(out[keys.IMAGE], expected_image)

  labels = numpy(target_chain.build_targets(
      tf.constant(out[keys.SEGMENT_MAP]), out[keys.SEGMENT_ID_LIST],
      out[keys.SEGMENT_CLASS_LIST], out[keys.SEGMENT_CROWD_LIST],
      num_classes=3, num_thing_classes=2, max_instances=4, min_level=3,
      max_level=3, level_size_boundaries=()))
  # Things by area: pasted (64 px), occluded D (48 px), then stuff.
  np.testing.assert_array_equal(labels[keys.CLASSES], [1, 0, 2, 0])
  # D keeps rows 0-3 x cols 0-7 (32 px) and rows 4-7 x cols 0-3 (16 px):
  # y = (8 * 8 + 4 * 24) / 48 = 10/3, and x the same by symmetry; before the
  # paste it was (4, 4).
  np.testing.assert_allclose(labels[keys.CENTERS][:3],
                             [[8, 8], [10 / 3, 10 / 3], [14, 8]], atol=1e-5)
  mask_d = np.zeros((4, 4), np.uint8)
  mask_d[0, 0:2] = 1
  mask_d[1, 0] = 1
  np.testing.assert_array_equal(labels[keys.MASKS][1], mask_d)


def test_place_source_scales_flips_and_positions(make_decoded):
  src = np.zeros((8, 8), np.int32)
  src[0:2, 0:4] = 3
  source = make_decoded(src, [3], [0], [False])
  # Fit factor 16 / 8 = 2, scale 0.5 -> 8x8; flipped; flush bottom-right.
  placed = numpy(copy_paste.place_source(
      source, 16, 16, tf.constant(0.5), tf.constant(True),
      tf.constant([1.0, 1.0])))
  expected = np.zeros((16, 16), np.int32)
  expected[8:10, 12:16] = 3
  np.testing.assert_array_equal(placed[keys.SEGMENT_MAP], expected)
  assert placed[keys.IMAGE].shape == (16, 16, 3)
  # Scale 1 -> 16x16 (nearest doubles every pixel); no flip; top-left.
  placed = numpy(copy_paste.place_source(
      source, 16, 16, tf.constant(1.0), tf.constant(False),
      tf.constant([0.0, 0.0])))
  expected = np.zeros((16, 16), np.int32)
  expected[0:4, 0:8] = 3
  np.testing.assert_array_equal(placed[keys.SEGMENT_MAP], expected)
  # Scale 2 -> 32x32 cut to the canvas at offset -16 + floor(0.5 * 17) = -8.
  placed = numpy(copy_paste.place_source(
      source, 16, 16, tf.constant(2.0), tf.constant(False),
      tf.constant([0.5, 0.5])))
  np.testing.assert_array_equal(placed[keys.SEGMENT_MAP], 0)


def test_random_copy_paste_switch(make_decoded):
  destination, source = destination_and_source(make_decoded)
  off = numpy(copy_paste.random_copy_paste(destination, source,
                                           num_thing_classes=2, prob=0.0))
  for key, value in numpy(destination).items():
    np.testing.assert_array_equal(off[key], value)
  tf.random.set_seed(0)
  on = numpy(copy_paste.random_copy_paste(
      destination, source, num_thing_classes=2, prob=1.0, scale_min=0.5,
      scale_max=1.0, segment_prob=1.0))
  # The source thing always lands inside the canvas at scale <= 1; the
  # source stuff is not pasted without paste_stuff.
  assert 9 in on[keys.SEGMENT_ID_LIST]
  assert on[keys.SEGMENT_CLASS_LIST].tolist().count(2) == 1
  listed = set(on[keys.SEGMENT_ID_LIST].tolist())
  present = set(np.unique(on[keys.SEGMENT_MAP]).tolist()) - {0}
  assert listed == present


def test_pairing_and_parser_wiring(make_decoded):
  examples = []
  for i in range(3):
    seg = np.zeros((32, 32), np.int32)
    seg[4 * i:4 * i + 8, 8 * i:8 * i + 8] = 7
    examples.append(make_decoded(seg, [7], [i], [False], source_id=str(i)))
  signature = tf.nest.map_structure(
      lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype), examples[0])
  dataset = tf.data.Dataset.from_generator(
      lambda: iter(numpy(e) for e in examples), output_signature=signature)
  paired = copy_paste.pair_examples(dataset)
  sources = [e[keys.COPY_PASTE_SOURCE][keys.SOURCE_ID].numpy()
             for e in paired]
  assert sources == [b'', b'0', b'1']

  parser = parser_lib.Parser(
      output_size=[32, 32], min_level=3, max_level=3, num_classes=3,
      num_thing_classes=3, max_instances=4, copy_paste_prob=1.0,
      copy_paste_scale_min=0.5, copy_paste_scale_max=1.0,
      copy_paste_segment_prob=1.0)
  parsed = [numpy(labels) for _, labels in
            paired.map(parser.parse_fn(is_training=True))]
  # Example 0 has nothing to paste; 1 and 2 gain the previous thing's class.
  assert parsed[0][keys.NUM_INSTANCES] == 1
  for i in (1, 2):
    classes = parsed[i][keys.CLASSES][:parsed[i][keys.NUM_INSTANCES]]
    assert i - 1 in classes.tolist()

  with pytest.raises(ValueError, match='pair_examples'):
    parser._parse_train_data(make_decoded(np.zeros((32, 32), np.int32),
                                          [], [], []))


def test_place_source_segment_map_equals_resize_flip_place(make_decoded):
  rng = np.random.default_rng(1)
  for _ in range(10):
    h, w, canvas_h, canvas_w = (int(v) for v in rng.integers(3, 40, 4))
    src = rng.integers(0, 50, (h, w)).astype(np.int32)
    scale, flip = float(rng.uniform(0.3, 2.5)), bool(rng.integers(2))
    position = rng.uniform(size=2).astype(np.float32)
    placed = copy_paste.place_source(
        make_decoded(src, [], [], []), canvas_h, canvas_w,
        tf.constant(scale), tf.constant(flip), tf.constant(position))
    # Reference: resize the whole map, flip, then paste it at the offset.
    fit = min(canvas_h / h, canvas_w / w)
    scaled = [max(int(np.round(np.float32(h) * np.float32(fit * scale))), 1),
              max(int(np.round(np.float32(w) * np.float32(fit * scale))), 1)]
    resized = tf.image.resize(src[..., None], scaled, method='nearest')
    resized = resized.numpy()[..., 0]
    if flip:
      resized = resized[:, ::-1]
    canvas = np.zeros((canvas_h, canvas_w), np.int32)
    offsets = []
    for size, extent, rel in zip((canvas_h, canvas_w), scaled, position):
      low, high = min(size - extent, 0), max(size - extent, 0)
      offsets.append(min(low + int(np.floor(rel * (high - low + 1))), high))
    for r in range(scaled[0]):
      for c in range(scaled[1]):
        y, x = r + offsets[0], c + offsets[1]
        if 0 <= y < canvas_h and 0 <= x < canvas_w:
          canvas[y, x] = resized[r, c]
    np.testing.assert_array_equal(placed[keys.SEGMENT_MAP].numpy(), canvas)
