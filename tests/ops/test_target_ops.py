"""Targets built on the device equal an independent NumPy reference.

The host sends `describe_targets`' compact description; `dense_targets`
expands it inside the step. The reference below rebuilds the dense targets
straight from the segment map, pixel by pixel, with the rules of
`dataloaders/targets.py` (the host-built targets of before, with this
change's two rules: padding is background, and over K targets stuff is kept
first). Random scenes: rectangles and discs of random classes, crowd
segments, void, a void class, unlisted ids and a padded border.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.dataloaders import targets
from maskconver.ops import target_ops

NUM_CLASSES, NUM_THINGS = 6, 4
SIZE = 64
MIN_LEVEL, MAX_LEVEL = 3, 5
BOUNDARIES = [12.0, 24.0]
IGNORE_FRACTION = 0.5


def random_scene(rng):
  """(segment map, ids, classes, crowd) of a random 64x64 scene."""
  seg = np.zeros((SIZE, SIZE), np.int32)
  ids, classes, crowd = [], [], []
  yy, xx = np.mgrid[:SIZE, :SIZE]
  for n in range(int(rng.integers(3, 12))):
    segment_id = 1000 + 7 * n
    y0, x0 = rng.integers(0, SIZE - 4, 2)
    h, w = rng.integers(2, 40, 2)
    if rng.random() < 0.5:
      region = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
    else:
      region = ((yy - y0) ** 2 / max(h, 1) ** 2 * 4 +
                (xx - x0) ** 2 / max(w, 1) ** 2 * 4) <= 1
    seg[region] = segment_id
    ids.append(segment_id)
    classes.append(int(rng.integers(-1, NUM_CLASSES)) if rng.random() < 0.1
                   else int(rng.integers(0, NUM_CLASSES)))
    crowd.append(bool(rng.random() < 0.15))
  seg[rng.integers(0, SIZE, 20), rng.integers(0, SIZE, 20)] = 0  # void
  seg[:3, :3] = 424242  # an id missing from the list: void
  pad_h, pad_w = rng.integers(0, 24, 2)
  if pad_h:
    seg[SIZE - pad_h:, :] = keys.PADDING_SEGMENT_ID
  if pad_w:
    seg[:, SIZE - pad_w:] = keys.PADDING_SEGMENT_ID
  return seg, ids, classes, crowd


def centernet_radius(h, w, overlap=0.7):
  """CenterNet's gaussian_radius (the minimum of its three cases)."""
  a1, b1, c1 = 1, h + w, w * h * (1 - overlap) / (1 + overlap)
  r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
  a2, b2, c2 = 4, 2 * (h + w), (1 - overlap) * w * h
  r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
  a3, b3, c3 = 4 * overlap, -2 * overlap * (h + w), (overlap - 1) * w * h
  r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
  return min(r1, r2, r3)


def reference(seg, ids, classes, crowd, k):
  """Dense targets straight from the map (see the module docstring)."""
  listed = dict(zip(ids, zip(classes, crowd)))
  candidates = []  # (is_thing, pixel mask)
  for segment_id, (cls, is_crowd) in listed.items():
    if 0 <= cls < NUM_THINGS and not is_crowd:
      candidates.append((True, cls, seg == segment_id))
  for cls in range(NUM_THINGS, NUM_CLASSES):
    members = [i for i, (c, cr) in listed.items() if c == cls and not cr]
    candidates.append((False, cls, np.isin(seg, members)))
  candidates = [c for c in candidates if c[2].any()]
  void = np.ones(seg.shape, bool)
  for segment_id, (cls, is_crowd) in listed.items():
    if cls >= 0 and not is_crowd:
      void[seg == segment_id] = False
  void[seg == keys.PADDING_SEGMENT_ID] = False
  order = list(range(len(candidates)))
  # Keep: stuff first, then larger things (stable).
  keep = sorted(order, key=lambda i: (candidates[i][0], -candidates[i][2].sum()))[:k]
  kept = sorted(keep, key=lambda i: (not candidates[i][0], -candidates[i][2].sum()))
  ignored = void.copy()
  for i in set(order) - set(keep):
    ignored |= candidates[i][2]

  heatmaps, weights, indices = {}, {}, []
  cell = 2 ** MIN_LEVEL
  fraction = ignored.reshape(SIZE // cell, cell, SIZE // cell, cell).mean(
      axis=(1, 3))
  slots = []
  for i in kept:
    _, cls, pixels = candidates[i]
    rows, cols = np.nonzero(pixels)
    center = (rows.mean() + 0.5, cols.mean() + 0.5)
    level = MIN_LEVEL + sum(math.sqrt(pixels.sum()) >= b for b in BOUNDARIES)
    stride = 2 ** level
    box_h = (rows.max() + 1 - rows.min()) / stride
    box_w = (cols.max() + 1 - cols.min()) / stride
    radius = int(math.floor(centernet_radius(box_h, box_w)))
    grid = SIZE // stride
    cy = min(max(int(center[0] // stride), 0), grid - 1)
    cx = min(max(int(center[1] // stride), 0), grid - 1)
    slots.append((cls, level, radius, cy, cx))
  offset = 0
  for level in range(MIN_LEVEL, MAX_LEVEL + 1):
    grid = SIZE // 2 ** level
    heat = np.zeros((grid, grid, NUM_CLASSES))
    if level > MIN_LEVEL:
      fraction = fraction.reshape(grid, 2, grid, 2).mean(axis=(1, 3))
    weight = (fraction <= IGNORE_FRACTION).astype(np.float32)
    sigma_of = lambda r: (2 * r + 1) / 6
    for cls, slot_level, radius, cy, cx in slots:
      if slot_level != level:
        continue
      sigma = sigma_of(radius)
      for y in range(max(cy - radius, 0), min(cy + radius, grid - 1) + 1):
        for x in range(max(cx - radius, 0), min(cx + radius, grid - 1) + 1):
          value = math.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma ** 2))
          heat[y, x, cls] = max(heat[y, x, cls], value)
      weight[cy, cx] = 1.0
    heatmaps[str(level)] = heat
    weights[str(level)] = weight
    offset += grid * grid
  offsets = {3: 0, 4: 64, 5: 64 + 16}
  grids = {3: 8, 4: 4, 5: 2}
  indices = [offsets[l] + cy * grids[l] + cx for _, l, _, cy, cx in slots]
  sampled = (slice(2, None, 4), slice(2, None, 4))
  masks = np.stack([candidates[i][2][sampled] for i in kept] +
                   [np.zeros((16, 16), bool)] * (k - len(kept)))
  return {
      keys.CENTER_HEATMAPS: heatmaps,
      keys.HEATMAP_WEIGHTS: weights,
      keys.MASKS: masks.astype(np.uint8),
      keys.MASK_WEIGHTS: (~void[sampled]).astype(np.float32),
      keys.CLASSES: [s[0] for s in slots],
      keys.CENTER_INDICES: indices,
      'num': len(kept),
  }


def device_targets(scenes, k):
  """describe_targets per scene (host), then one batched dense_targets."""
  described = [targets.describe_targets(
      tf.constant(seg), tf.constant(ids, tf.int32),
      tf.constant(classes, tf.int32), tf.constant(crowd, tf.bool),
      num_classes=NUM_CLASSES, num_thing_classes=NUM_THINGS,
      max_instances=k, min_level=MIN_LEVEL, max_level=MAX_LEVEL,
      level_size_boundaries=BOUNDARIES) for seg, ids, classes, crowd in scenes]
  batch = {key: tf.stack([d[key] for d in described]) for key in described[0]}
  dense = tf.function(target_ops.dense_targets, jit_compile=True)(
      batch, num_classes=NUM_CLASSES, num_thing_classes=NUM_THINGS,
      min_level=MIN_LEVEL, max_level=MAX_LEVEL,
      heatmap_ignore_fraction=IGNORE_FRACTION)
  return batch, tf.nest.map_structure(lambda t: t.numpy(), dense)


@pytest.mark.parametrize('k', [24, 3])
def test_dense_targets_equal_the_reference_on_random_scenes(k):
  rng = np.random.default_rng(k)
  scenes = [random_scene(rng) for _ in range(6)]
  batch, dense = device_targets(scenes, k)
  dropped = 0
  for b, scene in enumerate(scenes):
    expected = reference(*scene, k)
    num = expected['num']
    assert int(batch[keys.NUM_INSTANCES][b]) == num
    np.testing.assert_array_equal(dense[keys.VALID][b],
                                  [1.0] * num + [0.0] * (k - num))
    np.testing.assert_array_equal(dense[keys.CLASSES][b][:num],
                                  expected[keys.CLASSES])
    np.testing.assert_array_equal(dense[keys.CENTER_INDICES][b][:num],
                                  expected[keys.CENTER_INDICES])
    np.testing.assert_array_equal(dense[keys.MASKS][b], expected[keys.MASKS])
    np.testing.assert_array_equal(dense[keys.MASK_WEIGHTS][b],
                                  expected[keys.MASK_WEIGHTS])
    for level in ('3', '4', '5'):
      np.testing.assert_array_equal(dense[keys.HEATMAP_WEIGHTS][level][b],
                                    expected[keys.HEATMAP_WEIGHTS][level],
                                    err_msg=level)
      # exp() in float32 vs float64: within 1e-6 of each other.
      np.testing.assert_allclose(dense[keys.CENTER_HEATMAPS][level][b],
                                 expected[keys.CENTER_HEATMAPS][level],
                                 rtol=0, atol=1e-6, err_msg=level)
    dropped += int(num == k)
  if k == 3:
    assert dropped > 0  # the drop policy was exercised


def test_padding_is_background_and_void_is_ignored():
  seg = np.full((SIZE, SIZE), keys.PADDING_SEGMENT_ID, np.int32)
  seg[:32, :32] = 5       # stuff
  seg[8:16, 8:16] = 9     # thing
  seg[24:32, 24:32] = 0   # void, one full level-3 cell
  _, dense = device_targets([(seg, [5, 9], [4, 1], [False, False])], 4)
  weights = dense[keys.HEATMAP_WEIGHTS]['3'][0]
  expected = np.ones((8, 8), np.float32)
  expected[3, 3] = 0.0  # the void cell; the padded cells count as negatives
  np.testing.assert_array_equal(weights, expected)
  mask_weights = dense[keys.MASK_WEIGHTS][0]
  assert mask_weights[6:8, 6:8].sum() == 0 and mask_weights.sum() == 256 - 4
  # No mask claims the padding.
  assert dense[keys.MASKS][0][:, 8:, :].sum() == 0
