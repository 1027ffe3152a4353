"""Scale jitter through index windows (`dataloaders.resampling`) and its
device half (`ops.image_ops.resize_window`) give what resizing the whole
image gives: the same image_info and draws, the same targets, the same
pixels."""

import numpy as np
import pytest
import tensorflow as tf

from official.vision.ops import preprocess_ops

from maskconver import keys
from maskconver.dataloaders import resampling
from maskconver.dataloaders import targets
from maskconver.ops import image_ops

# (source height, width, output height, width, scale min, max, seed): a
# downscale with padding (targets resample the map first: the source lines
# hold more pixels than the output), upscales with offsets (targets count
# through the window), a 1.0 scale, a wide source.
CASES = (
    (48, 40, 32, 32, 0.3, 0.6, 1),
    (40, 56, 32, 48, 1.5, 2.9, 2),
    (64, 64, 64, 64, 0.05, 2.9, 3),
    (30, 50, 64, 32, 1.0, 1.0, 4),
    (64, 24, 32, 64, 0.8, 2.0, 5),
)


def _info(height, width, out_h, out_w, scale_min, scale_max, seed):
  tf.random.set_seed(seed)
  _, reference = preprocess_ops.resize_and_crop_image(
      tf.zeros([height, width, 1]), [out_h, out_w], [out_h, out_w],
      aug_scale_min=scale_min, aug_scale_max=scale_max)
  tf.random.set_seed(seed)
  info = resampling.scale_and_crop_info(
      tf.zeros([height, width, 3]), [out_h, out_w], scale_min, scale_max)
  return reference, info


@pytest.mark.parametrize('case', CASES)
def test_scale_and_crop_info_draws_as_resize_and_crop_image(case):
  reference, info = _info(*case)
  np.testing.assert_array_equal(info.numpy(), reference.numpy())


def test_scale_and_crop_info_by_hand():
  # 40x80 source into 64x64 at scale 1: scale = min(64/40, 64/80) = 0.8, the
  # scaled image is 32x64, no offset.
  info = resampling.scale_and_crop_info(tf.zeros([40, 80, 3]), [64, 64],
                                        1.0, 1.0)
  np.testing.assert_allclose(info.numpy(),
                             [[40, 80], [64, 64], [0.8, 0.8], [0, 0]])


def test_nearest_window_by_hand():
  # Source rows 0..3 scaled to 8 rows (x2) at offset 2, output 5 rows: scaled
  # rows 2..6 read source rows 1, 1, 2, 2, 3; scaled row 8 would be outside.
  info = tf.constant([[4, 4], [5, 5], [2, 2], [2, 6]], tf.float32)
  window = resampling.nearest_window(info, [5, 5])
  np.testing.assert_array_equal(window.rows, [1, 1, 2, 2, 3])
  np.testing.assert_array_equal(window.row_valid, [True] * 5)
  # Columns: offset 6, scaled width 8: positions 6, 7 read 3, 3; 8..10 are
  # padding (repeating the last valid index).
  np.testing.assert_array_equal(window.cols, [3, 3, 3, 3, 3])
  np.testing.assert_array_equal(window.col_valid,
                                [True, True, False, False, False])


def _resampled(segment_map, info, output_size):
  """The segment map after the scale jitter's resize, crop and pad."""
  return resampling.resample(segment_map,
                             resampling.nearest_window(info, output_size),
                             keys.PADDING_SEGMENT_ID)


def test_resampled_map_equals_resize_then_crop():
  # By hand: 4 -> 8 rows doubles each row (source row floor((r + 0.5) / 2));
  # crop offset 2 starts at source row 1; rows past the scaled size are
  # padding.
  seg = np.arange(1, 17, dtype=np.int32).reshape(4, 4)
  info = tf.constant([[4, 4], [6, 6], [2, 0.5], [2, 0]], tf.float32)
  out = _resampled(tf.constant(seg), info, [8, 3])
  expected = np.full((8, 3), keys.PADDING_SEGMENT_ID, np.int32)
  expected[:6, :2] = seg[[1, 1, 2, 2, 3, 3]][:, [1, 3]]
  np.testing.assert_array_equal(out.numpy(), expected)
  # Against TF's own nearest resize + crop + pad on odd sizes.
  rng = np.random.default_rng(0)
  for _ in range(20):
    h, w, sh, sw, oh, ow = (int(v) for v in rng.integers(3, 60, 6))
    off = [int(rng.integers(0, max(sh - oh, 0) + 1)),
           int(rng.integers(0, max(sw - ow, 0) + 1))]
    seg = tf.constant(rng.integers(1, 99, (h, w)), tf.int32)
    info = tf.constant([[h, w], [oh, ow], [sh / h, sw / w], off], tf.float32)
    reference = tf.image.resize(seg[..., None], [sh, sw], method='nearest')
    reference = tf.image.pad_to_bounding_box(
        reference[off[0]:off[0] + oh, off[1]:off[1] + ow], 0, 0, oh, ow)
    reference = reference.numpy()[..., 0]
    reference[reference == 0] = keys.PADDING_SEGMENT_ID
    np.testing.assert_array_equal(
        _resampled(seg, info, [oh, ow]).numpy(),
        reference)


def _scene(height, width, seed):
  """A random segment map: 6 segments (things, stuff, a crowd), void."""
  rng = np.random.default_rng(seed)
  blocks = rng.integers(0, 7, (height // 4 + 1, width // 4 + 1))
  segment_map = np.kron(blocks, np.ones((4, 4), np.int32))[:height, :width]
  ids = np.array([1, 2, 3, 4, 5, 6], np.int32)  # 0 stays void
  classes = np.array([0, 1, 1, 3, 4, 3], np.int32)  # 3, 4: stuff
  crowd = np.array([False, False, True, False, False, False])
  return segment_map.astype(np.int32), ids, classes, crowd


@pytest.mark.parametrize('case', CASES)
def test_windowed_targets_equal_the_targets_of_the_resampled_map(case):
  height, width, out_h, out_w = case[:4]
  _, info = _info(*case)
  segment_map, ids, classes, crowd = _scene(height, width, case[-1])
  options = dict(num_classes=5, num_thing_classes=3, max_instances=5,
                 min_level=3, max_level=4, mask_stride=4,
                 level_size_boundaries=[12.0])
  window = resampling.nearest_window(info, [out_h, out_w])
  resampled = _resampled(tf.constant(segment_map), info, [out_h, out_w])
  expected = targets.describe_targets(resampled, ids, classes, crowd,
                                      **options)
  actual = targets.describe_targets(tf.constant(segment_map), ids, classes,
                                    crowd, window=window, **options)
  assert int(expected[keys.NUM_INSTANCES]) > 0
  for key, value in expected.items():
    assert actual[key].dtype == value.dtype, key
    np.testing.assert_array_equal(actual[key].numpy(), value.numpy(),
                                  err_msg=key)


def _host_resize(image, info, out_size):
  """The parser's host path: resize the whole mean-subtracted image."""
  mean = tf.constant(image_ops.MEAN_RGB)
  shifted = tf.cast(image, tf.float32) - mean
  scaled = tf.cast(tf.round(info[0] * info[2]), tf.int32)
  offset = tf.cast(info[3], tf.int32)
  resized = tf.image.resize(shifted, scaled)[offset[0]:offset[0] + out_size[0],
                                             offset[1]:offset[1] + out_size[1]]
  resized = tf.image.pad_to_bounding_box(resized, 0, 0, *out_size)
  return tf.cast(tf.round(resized + mean), tf.uint8)


def _batch(cases, padded):
  rng = np.random.default_rng(0)
  sources, infos, expected = [], [], []
  for case in cases:
    height, width, out_h, out_w = case[:4]
    image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    _, info = _info(*case[:2], 32, 32, *case[4:])
    sources.append(np.pad(image, [[0, padded - height], [0, padded - width],
                                  [0, 0]]))
    infos.append(info.numpy())
    expected.append(_host_resize(image, info, [32, 32]).numpy())
  return np.stack(sources), np.stack(infos), np.stack(expected)


def test_resize_window_equals_the_host_resize():
  sources, infos, expected = _batch(CASES, padded=64)
  actual = image_ops.resize_window(sources, infos, [32, 32])
  assert actual.dtype == tf.uint8
  np.testing.assert_array_equal(actual.numpy(), expected)


@pytest.mark.parametrize('policy', ['float32', 'mixed_bfloat16'])
def test_resize_window_compiles_with_xla(policy):
  import tf_keras  # pylint: disable=g-import-not-at-top
  tf_keras.mixed_precision.set_global_policy(policy)
  try:
    sources, infos, expected = _batch(CASES, padded=64)
    actual = tf.function(
        lambda s, i: image_ops.resize_window(s, i, [32, 32]),
        jit_compile=True)(sources, infos).numpy()
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  # XLA may fuse a multiply and an add (one rounding less): a sample that
  # lies within float error of .5 can round the other way.
  difference = np.abs(actual.astype(int) - expected.astype(int))
  assert difference.max() <= 1
  assert np.mean(difference > 0) < 1e-3
