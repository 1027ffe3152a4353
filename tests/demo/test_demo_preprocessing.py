"""Tests of the fixed-size preprocessing and its inverse."""

import numpy as np
import pytest
import tensorflow as tf

from official.vision.ops import preprocess_ops

from maskconver import keys
from maskconver.inference import predictor
from maskconver.inference import preprocessing


def _parser_eval_path(image, size):
  """What maskconver.dataloaders.parser does on eval (normalize, then fit)."""
  normalized = preprocess_ops.normalize_image(tf.constant(image))
  out, info = preprocess_ops.resize_and_crop_image(normalized, size, size)
  return out.numpy(), info.numpy()


@pytest.mark.parametrize('shape', [(30, 50), (64, 64), (7, 3), (1, 1)])
def test_matches_the_parser_eval_path(shape):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
  ours, info = preprocessing.preprocess_image(image, [32, 40])
  expected, expected_info = _parser_eval_path(image, [32, 40])
  assert ours.shape == (32, 40, 3) and ours.dtype == np.float32
  np.testing.assert_allclose(ours, expected, atol=2e-5)
  # Same info, except row 1: the content size instead of the input size.
  np.testing.assert_allclose(info[[0, 2, 3]], expected_info[[0, 2, 3]])
  np.testing.assert_allclose(
      info[1], np.round(expected_info[0] * expected_info[2]))


def test_image_info_and_padding_by_hand():
  # 30x50 into 32x40: scale min(32/30, 40/50) = 0.8 -> 24x40, padded below.
  image = np.full((30, 50, 3), 255, np.uint8)
  out, info = preprocessing.preprocess_image(image, [32, 40])
  # float32 info: 0.8 is off by its float32 rounding (1.5e-8 relative).
  np.testing.assert_allclose(info, [[30, 50], [24, 40], [0.8, 0.8], [0, 0]],
                             rtol=1e-6)
  np.testing.assert_array_equal(preprocessing.scaled_size(info), [24, 40])
  np.testing.assert_array_equal(out[24:], 0.0)
  # White normalizes to (1 - 0.485) / 0.229 = 2.2489 in the red channel.
  np.testing.assert_allclose(out[:24, :, 0], 2.2489083, rtol=1e-5)


@pytest.mark.parametrize('row_1', [[1, 4], [4, 4]])
def test_undo_maps_back_to_the_original_image(row_1):
  # Model-size map 4x4 for a 2x8 image scaled by 0.5 to 1x4, padded with 9.
  # Row 1 of the info may be the content size (keys.IMAGE_INFO) or the input
  # size (Model Garden's resize_and_crop_image, exported models).
  info = np.array([[2, 8], row_1, [0.5, 0.5], [0, 0]], np.float32)
  label_map = np.array([[1, 2, 3, 4], [9, 9, 9, 9], [9] * 4, [9] * 4])
  original = preprocessing.undo_preprocessing(label_map, info)
  np.testing.assert_array_equal(original, [[1, 1, 2, 2, 3, 3, 4, 4]] * 2)


def test_too_elongated_image_is_rejected():
  with pytest.raises(ValueError, match='too elongated'):
    preprocessing.preprocess_image(np.zeros((1, 200, 3), np.uint8), [32, 32])


def test_denormalize_inverts_normalization():
  image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
  normalized = preprocess_ops.normalize_image(tf.constant(image)).numpy()
  np.testing.assert_array_equal(preprocessing.denormalize_image(normalized),
                                image)


def _prediction():
  """2x3 maps: segment 1 thing (score 0.9), 2 stuff (0.3), slot 3 unused."""
  return predictor.PanopticPrediction.from_outputs({
      keys.CATEGORY_MASK: [[[0, 0, 2], [2, 2, -1]]],
      keys.INSTANCE_MASK: [[[1, 1, 0], [0, 0, 0]]],
      keys.PANOPTIC_SEGMENT_MAP: [[[1, 1, 2], [2, 2, 0]]],
      keys.SEGMENT_CLASSES_OUT: [[0, 2, -1]],
      keys.SEGMENT_SCORES_OUT: [[0.9, 0.3, 0.0]],
      keys.SEGMENT_IS_THING_OUT: [[True, False, False]],
  })


def test_filter_by_score_voids_dropped_segments():
  prediction = _prediction()
  assert prediction.num_segments == 2
  kept = prediction.filter_by_score(0.5)
  np.testing.assert_array_equal(kept.category_mask, [[0, 0, -1], [-1, -1, -1]])
  np.testing.assert_array_equal(kept.segment_map, [[1, 1, 0], [0, 0, 0]])
  np.testing.assert_array_equal(kept.segment_classes, [0, -1, -1])
  assert kept.num_segments == 1
  assert prediction.filter_by_score(0.1) is prediction


def test_from_outputs_rejects_missing_keys():
  with pytest.raises(ValueError, match='outputs lack'):
    predictor.PanopticPrediction.from_outputs({keys.CATEGORY_MASK: [[0]]},
                                              source='my model')


def test_maps_at_other_sizes_by_hand():
  # Model-size 4x4 maps for a 2x8 image scaled by 0.5 into rows 0..0.
  outputs = {
      keys.CATEGORY_MASK: [[0, 1, 2, 3], [-1] * 4, [-1] * 4, [-1] * 4],
      keys.INSTANCE_MASK: [[1, 0, 0, 0], [0] * 4, [0] * 4, [0] * 4],
      keys.PANOPTIC_SEGMENT_MAP: [[1, 2, 3, 4], [0] * 4, [0] * 4, [0] * 4],
      keys.SEGMENT_CLASSES_OUT: [0, 1, 2, 3],
      keys.SEGMENT_SCORES_OUT: [0.5] * 4,
      keys.SEGMENT_IS_THING_OUT: [True, False, False, False],
  }
  info = np.array([[2, 8], [4, 4], [0.5, 0.5], [0, 0]])
  prediction = predictor.PanopticPrediction.from_outputs(outputs, info)
  assert prediction.image_size == (2, 8)
  category, _, segments = prediction.maps_at(2, 8)
  np.testing.assert_array_equal(category, [[0, 0, 1, 1, 2, 2, 3, 3]] * 2)
  # A display at half the image size: one pixel per model cell.
  category, instance, _ = prediction.maps_at(1, 4)
  np.testing.assert_array_equal(category, [[0, 1, 2, 3]])
  np.testing.assert_array_equal(instance, [[1, 0, 0, 0]])
  full = prediction.at_image_size()
  assert full.image_info is None and full.segment_map.shape == (2, 8)
  np.testing.assert_array_equal(full.segment_map, segments)
  # Maps at the image size shrink by nearest neighbour.
  np.testing.assert_array_equal(full.maps_at(1, 4)[2], [[1, 2, 3, 4]])
  # Enlarging goes through the image size: each image pixel a 2x2 block.
  np.testing.assert_array_equal(prediction.maps_at(4, 16)[2],
                                np.repeat(np.repeat(segments, 2, 0), 2, 1))


def test_one_pixel_image_is_drawn_as_one_segment():
  # A 1x1 image fills the 4x4 model input; its pixel reads model cell (2, 2).
  segments = np.arange(1, 17).reshape(4, 4)
  outputs = {
      keys.CATEGORY_MASK: np.zeros((4, 4)),
      keys.INSTANCE_MASK: segments,
      keys.PANOPTIC_SEGMENT_MAP: segments,
      keys.SEGMENT_CLASSES_OUT: np.zeros(16),
      keys.SEGMENT_SCORES_OUT: np.ones(16),
      keys.SEGMENT_IS_THING_OUT: np.ones(16, bool),
  }
  info = np.array([[1, 1], [4, 4], [4, 4], [0, 0]])
  prediction = predictor.PanopticPrediction.from_outputs(outputs, info)
  np.testing.assert_array_equal(prediction.maps_at(3, 3)[2],
                                np.full((3, 3), 11))
