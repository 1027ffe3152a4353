"""Hand-checked tests of maskconver.dataloaders.targets."""

import math

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.dataloaders import targets

import target_chain

# Classes 0, 1 are things, 2, 3 stuff.
NUM_CLASSES = 4
NUM_THINGS = 2
E2 = math.exp(-2.0)  # sigma = 0.5: exp(-1 / (2 * 0.25))
E4 = math.exp(-4.0)


def scene():
  """32x32 map: things A (L-shape), B (8x8), stuff class 3 in two segments.

  A, id 11, class 0: rows 0-7 x cols 0-3 plus rows 4-7 x cols 4-7 (48 px).
  B, id 22, class 1: rows 20-27 x cols 24-31 (64 px).
  Stuff, class 3: id 33 rows 0-7 x cols 16-31, id 44 rows 24-31 x cols 0-15.
  Everything else is void.
  """
  seg = np.zeros((32, 32), np.int32)
  seg[0:8, 0:4] = 11
  seg[4:8, 4:8] = 11
  seg[20:28, 24:32] = 22
  seg[0:8, 16:32] = 33
  seg[24:32, 0:16] = 44
  return seg, [11, 22, 33, 44], [0, 1, 3, 3], [False] * 4


def build(seg, ids, classes, crowd, **kwargs):
  options = dict(num_classes=NUM_CLASSES, num_thing_classes=NUM_THINGS,
                 max_instances=5, min_level=3, max_level=3,
                 level_size_boundaries=())
  options.update(kwargs)
  return tf.nest.map_structure(
      lambda t: t.numpy(),
      target_chain.build_targets(
          tf.constant(seg), tf.constant(ids, tf.int32),
          tf.constant(classes, tf.int32), tf.constant(crowd, tf.bool),
          **options))


def test_gaussian_radius_matches_centernet_formula():
  # 4x4 cells, IoU 0.7: r3 = (-11.2 + sqrt(125.44 + 53.76)) / 2 = 1.0933;
  # r1 = 7.63, r2 = 14.69.
  radius = targets.gaussian_radius(tf.constant([4.0, 1.0]),
                                   tf.constant([4.0, 1.0]), 0.7).numpy()
  np.testing.assert_allclose(radius, [1.09330, 0.27330], atol=1e-4)


def test_level_boundaries_scale_with_output_size():
  assert targets.level_boundaries(5, 64, 1024, (640, 480)) == [
      40.0, 80.0, 160.0, 320.0]
  assert targets.level_boundaries(1, 64, 1024, (256, 256)) == []


def test_scene_targets_by_hand():
  out = build(*scene())
  # Order: things by area (B 64 px, A 48 px), then stuff class 3.
  assert out[keys.NUM_INSTANCES] == 3
  np.testing.assert_array_equal(out[keys.VALID], [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(out[keys.CLASSES], [1, 0, 3, 0, 0])
  np.testing.assert_array_equal(out[keys.IS_THING],
                                [True, True, False, False, False])
  np.testing.assert_array_equal(out[keys.LEVELS], [3, 3, 3, 3, 3])
  # Centroids of pixel centres. A: y = (4 * 32 + 4 * 24) / 48 = 14/3,
  # x = (8 * 8 + 4 * 24) / 48 = 10/3. Stuff: 128 px around (4, 24) and
  # 128 px around (28, 8) -> (16, 16).
  np.testing.assert_allclose(
      out[keys.CENTERS],
      [[24, 28], [14 / 3, 10 / 3], [16, 16], [0, 0], [0, 0]], atol=1e-5)
  # Cells floor(center / 8) on the 4x4 grid: (3, 3), (0, 0), (2, 2).
  np.testing.assert_array_equal(out[keys.CENTER_INDICES], [15, 0, 10, 0, 0])

  heatmap = out[keys.CENTER_HEATMAPS]['3']
  assert heatmap.shape == (4, 4, NUM_CLASSES)
  # Things: boxes of 1x1 cells -> radius floor(0.273) = 0 -> single peaks.
  expected_thing0 = np.zeros((4, 4))
  expected_thing0[0, 0] = 1.0
  expected_thing1 = np.zeros((4, 4))
  expected_thing1[3, 3] = 1.0
  np.testing.assert_array_equal(heatmap[..., 0], expected_thing0)
  np.testing.assert_array_equal(heatmap[..., 1], expected_thing1)
  np.testing.assert_array_equal(heatmap[..., 2], np.zeros((4, 4)))
  # Stuff box 4x4 cells -> radius 1, sigma 0.5, truncated at |d| <= 1.
  expected_stuff = np.array([[0, 0, 0, 0],
                             [0, E4, E2, E4],
                             [0, E2, 1, E2],
                             [0, E4, E2, E4]])
  np.testing.assert_allclose(heatmap[..., 3], expected_stuff, atol=1e-6)
  assert heatmap[2, 2, 3] == 1.0

  # Cells with more than half void get 0; (2, 2) is void but holds a center.
  np.testing.assert_array_equal(out[keys.HEATMAP_WEIGHTS]['3'],
                                [[1, 0, 1, 1],
                                 [0, 0, 0, 0],
                                 [0, 0, 1, 1],
                                 [1, 1, 0, 1]])

  # Masks sample pixels (4i + 2, 4j + 2).
  masks = out[keys.MASKS]
  assert masks.dtype == np.uint8 and masks.shape == (5, 8, 8)
  mask_b = np.zeros((8, 8), np.uint8)
  mask_b[5:7, 6:8] = 1
  mask_a = np.zeros((8, 8), np.uint8)
  mask_a[0, 0] = mask_a[1, 0] = mask_a[1, 1] = 1
  mask_stuff = np.zeros((8, 8), np.uint8)
  mask_stuff[0:2, 4:8] = 1
  mask_stuff[6:8, 0:4] = 1
  np.testing.assert_array_equal(masks[0], mask_b)
  np.testing.assert_array_equal(masks[1], mask_a)
  np.testing.assert_array_equal(masks[2], mask_stuff)
  np.testing.assert_array_equal(masks[3:], 0)
  np.testing.assert_array_equal(out[keys.MASK_WEIGHTS],
                                mask_a + mask_b + mask_stuff)


def test_crowd_void_and_unlisted_ids_are_ignored():
  seg, ids, classes, crowd = scene()
  seg[8:16, 8:16] = 55     # crowd thing, class 0: cell (1, 1)
  seg[8:16, 24:32] = 99    # id not in the list: void, cell (1, 3)
  seg[16:20, 0:8] = 66     # a segment with VOID_CLASS: void
  out = build(seg, ids + [55, 66], classes + [0, keys.VOID_CLASS],
              crowd + [True, False])
  reference = build(*scene())
  for key in (keys.NUM_INSTANCES, keys.CLASSES, keys.CENTERS, keys.MASKS,
              keys.MASK_WEIGHTS, keys.CENTER_INDICES):
    np.testing.assert_array_equal(out[key], reference[key])
  np.testing.assert_array_equal(out[keys.CENTER_HEATMAPS]['3'],
                                reference[keys.CENTER_HEATMAPS]['3'])
  np.testing.assert_array_equal(out[keys.HEATMAP_WEIGHTS]['3'],
                                reference[keys.HEATMAP_WEIGHTS]['3'])
  # The same crowd segment as a normal thing becomes a target with weight 1.
  as_thing = build(seg, ids + [55], classes + [0], crowd + [False])
  assert as_thing[keys.NUM_INSTANCES] == 4
  assert as_thing[keys.HEATMAP_WEIGHTS]['3'][1, 1] == 1.0
  assert as_thing[keys.MASK_WEIGHTS][2:4, 2:4].min() == 1.0


def test_no_segments_gives_valid_empty_targets():
  for ids in ([], [7]):
    out = build(np.zeros((32, 32), np.int32), ids, [0] * len(ids),
                [False] * len(ids), min_level=3, max_level=4,
                level_size_boundaries=(10.0,))
    assert out[keys.NUM_INSTANCES] == 0
    np.testing.assert_array_equal(out[keys.VALID], 0)
    np.testing.assert_array_equal(out[keys.MASKS], 0)
    np.testing.assert_array_equal(out[keys.MASK_WEIGHTS], 0)
    np.testing.assert_array_equal(out[keys.CENTERS], 0)
    np.testing.assert_array_equal(out[keys.LEVELS], 3)
    for level in ('3', '4'):
      np.testing.assert_array_equal(out[keys.CENTER_HEATMAPS][level], 0)
      assert np.isfinite(out[keys.HEATMAP_WEIGHTS][level]).all()


def test_box_center_switch():
  # L-shape: rows 0-15 x cols 0-1 (32 px) plus rows 14-15 x cols 2-15 (28 px).
  seg = np.zeros((32, 32), np.int32)
  seg[0:16, 0:2] = 5
  seg[14:16, 2:16] = 5
  mask_out = build(seg, [5], [0], [False])
  box_out = build(seg, [5], [0], [False], center_type='box')
  # Centroid: y = (2 * 128 + 14 * 30) / 60, x = (16 * 2 + 2 * 126) / 60.
  np.testing.assert_allclose(mask_out[keys.CENTERS][0],
                             [676 / 60, 284 / 60], atol=1e-5)
  np.testing.assert_allclose(box_out[keys.CENTERS][0], [8.0, 8.0])
  assert mask_out[keys.CENTER_INDICES][0] == 1 * 4 + 0
  assert box_out[keys.CENTER_INDICES][0] == 1 * 4 + 1
  assert box_out[keys.CENTER_HEATMAPS]['3'][1, 1, 0] == 1.0


def test_multi_level_assignment():
  seg = np.zeros((32, 32), np.int32)
  seg[1:4, 1:4] = 1        # 9 px, sqrt 3 -> level 3
  seg[16:32, 16:32] = 2    # 256 px, sqrt 16 -> level 4
  seg[8:10, 0:20] = 3      # 40 px: sqrt 6.3 -> level 3, box side 20 -> 4
  ids, classes, crowd = [1, 2, 3], [0, 1, 0], [False] * 3
  out = build(seg, ids, classes, crowd, min_level=3, max_level=4,
              level_size_boundaries=(10.0,))
  # Order by area: big (256), thin (40), small (9).
  np.testing.assert_array_equal(out[keys.CLASSES][:3], [1, 0, 0])
  np.testing.assert_array_equal(out[keys.LEVELS][:3], [4, 3, 3])
  # Level 4 is 2x2 and follows the 16 level-3 cells: big at (1, 1) -> 19.
  # Thin centroid (9, 10) -> level-3 cell (1, 1) -> 5; small (2.5, 2.5) -> 0.
  np.testing.assert_array_equal(out[keys.CENTER_INDICES][:3], [19, 5, 0])
  assert out[keys.CENTER_HEATMAPS]['4'][1, 1, 1] == 1.0
  assert out[keys.CENTER_HEATMAPS]['4'][..., 0].max() == 0.0
  assert out[keys.CENTER_HEATMAPS]['3'][..., 1].max() == 0.0
  assert out[keys.CENTER_HEATMAPS]['3'][0, 0, 0] == 1.0
  by_box = build(seg, ids, classes, crowd, min_level=3, max_level=4,
                 level_size_boundaries=(10.0,), level_size_measure='box_side')
  np.testing.assert_array_equal(by_box[keys.LEVELS][:3], [4, 4, 3])
  # Thin at level 4: centroid (9, 10) -> cell (0, 0) -> 16.
  assert by_box[keys.CENTER_INDICES][1] == 16


def test_max_instances_keeps_stuff_then_largest_things():
  seg = np.full((32, 32), 3, np.int32)  # stuff everywhere else (908 px)
  seg[0:4, 0:4] = 1          # thing, 16 px
  seg[8:10, 8:10] = 2        # thing, 4 px
  seg[10:16, 16:32] = 4      # thing, 96 px
  out = build(seg, [1, 2, 3, 4], [0, 1, 2, 0], [False] * 4, max_instances=2,
              heatmap_ignore_fraction=0.2)
  # Kept: the stuff class and the largest thing; slots list things first.
  assert out[keys.NUM_INSTANCES] == 2
  np.testing.assert_array_equal(out[keys.CLASSES], [0, 2])
  rows, cols = np.nonzero(seg == 3)
  np.testing.assert_allclose(
      out[keys.CENTERS], [[13, 24], [rows.mean() + 0.5, cols.mean() + 0.5]],
      rtol=1e-6)
  # Dropped things: their pixels are counted as ignored for the heatmap
  # (16 in cell (0, 0), 4 in cell (1, 1)) and are background for the masks.
  expected_count = np.zeros((4, 4), np.int32)
  expected_count[0, 0], expected_count[1, 1] = 16, 4
  np.testing.assert_array_equal(out[keys.HEATMAP_IGNORE_COUNT], expected_count)
  np.testing.assert_array_equal(out[keys.SLOT_MAP][0, 0], 0)
  np.testing.assert_array_equal(out[keys.MASK_WEIGHTS], 1.0)
  # 16 / 64 > 0.2: cell (0, 0) ignored; 4 / 64 <= 0.2: cell (1, 1) kept.
  assert out[keys.HEATMAP_WEIGHTS]['3'][0, 0] == 0.0
  assert out[keys.HEATMAP_WEIGHTS]['3'][1, 1] == 1.0


def test_rejects_bad_arguments():
  seg, ids, classes, crowd = scene()
  with pytest.raises(ValueError, match='center_type'):
    build(seg, ids, classes, crowd, center_type='middle')
  with pytest.raises(ValueError, match='level_size_boundaries'):
    build(seg, ids, classes, crowd, max_level=4)
  with pytest.raises(tf.errors.InvalidArgumentError, match='num_classes'):
    build(seg, ids, [0, 1, 3, 9], crowd)
  with pytest.raises(ValueError, match='multiple of 16'):
    targets.validate_level_grid((40, 32), 4, 4)


def test_label_bytes_of_the_recipes():
  # Mobile at 640, K = 50: 160 x 160 uint8 slot map + 80 x 80 uint8 ignore
  # counts + 50 x 20 B per slot (class, level, radius int32; center 2 x
  # float32) + 4 B count.
  assert targets.label_bytes((640, 640), 3, 50) == (
      160 * 160 + 80 * 80 + 50 * 20 + 4)
  # R50 at 1280, K = 256: the slot map needs int16 (values up to 257).
  assert targets.label_bytes((1280, 1280), 3, 256) == (
      320 * 320 * 2 + 160 * 160 + 256 * 20 + 4)
  assert targets.label_bytes((1280, 1280), 3, 256) < 0.5e6
  assert targets.label_bytes((640, 640), 3, 50) < 0.15e6
