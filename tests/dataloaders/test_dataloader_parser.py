"""Tests of maskconver.dataloaders.parser.Parser on hand-built examples."""

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.dataloaders import parser as parser_lib
from maskconver.ops import image_ops

import target_chain

# Padding of parsed uint8 images: the ImageNet mean pixel, rounded.
MEAN_PIXEL = [124, 116, 104]
COLORS = {11: (255, 0, 0), 22: (0, 255, 0), 33: (0, 0, 255)}


def colored_scene():
  """32x32: thing 11 (rows 4-11, cols 2-7), thing 22 (rows 20-27, cols 20-31),
  stuff 33 (rows 28-31); pixels coloured by segment."""
  seg = np.zeros((32, 32), np.int32)
  seg[4:12, 2:8] = 11
  seg[20:28, 20:32] = 22
  seg[28:32, :] = 33
  image = np.zeros((32, 32, 3), np.uint8)
  for segment_id, color in COLORS.items():
    image[seg == segment_id] = color
  return seg, image


def make_parser(**kwargs):
  options = dict(output_size=[32, 32], min_level=3, max_level=3,
                 num_classes=3, num_thing_classes=2, max_instances=4,
                 aug_rand_hflip=False)
  options.update(kwargs)
  return parser_lib.Parser(**options)


def dense(labels, min_level=3, max_level=3):
  """The device-side expansion of one example's compact labels."""
  return numpy(target_chain.expand(
      {k: v for k, v in labels.items() if k != keys.GROUNDTRUTHS},
      num_classes=3, num_thing_classes=2, min_level=min_level,
      max_level=max_level))


def numpy(structure):
  return tf.nest.map_structure(np.asarray, structure)


def test_train_without_augmentation_keeps_image_and_centers(make_decoded):
  seg, image = colored_scene()
  decoded = make_decoded(seg, [11, 22, 33], [0, 1, 2], [False] * 3, image)
  out_image, labels = make_parser()._parse_train_data(decoded)
  labels = numpy(labels)
  assert out_image.shape == (32, 32, 3) and out_image.dtype == tf.uint8
  np.testing.assert_array_equal(out_image.numpy()[5, 3], [255, 0, 0])
  np.testing.assert_array_equal(labels[keys.CLASSES], [1, 0, 2, 0])
  np.testing.assert_allclose(labels[keys.CENTERS][:3],
                             [[24, 26], [8, 5], [30, 16]])


def test_flip_moves_image_and_centers_together(make_decoded):
  seg, image = colored_scene()
  decoded = make_decoded(seg, [11, 22, 33], [0, 1, 2], [False] * 3, image)
  parser = make_parser(aug_rand_hflip=True)
  tf.random.set_seed(3)
  seen = set()
  for _ in range(12):
    out_image, labels = parser._parse_train_data(decoded)
    center_x = labels[keys.CENTERS].numpy()[:3, 1]
    flipped = bool(center_x[0] == 32 - 26)
    seen.add(flipped)
    # x -> 32 - x for every target; the red thing's pixels follow.
    expected = [6, 27, 16] if flipped else [26, 5, 16]
    np.testing.assert_allclose(center_x, expected)
    red_col = 32 - 3 - 1 if flipped else 3
    np.testing.assert_array_equal(out_image.numpy()[5, red_col], [255, 0, 0])
    # Red thing: centroid y 8 -> cell row 1 of the 4x4 grid.
    assert dense(numpy(labels))[keys.CENTER_INDICES][1] == (
        1 * 4 + (27 // 8 if flipped else 5 // 8))
  assert seen == {True, False}


def test_scale_down_pads_with_background(make_decoded):
  seg, image = colored_scene()
  decoded = make_decoded(seg, [11, 22, 33], [0, 1, 2], [False] * 3, image)
  parser = make_parser(aug_scale_min=0.5, aug_scale_max=0.5)
  out_image, labels = parser._parse_train_data(decoded)
  labels = numpy(labels)
  # Nearest 32 -> 16 samples source pixel 2i + 1: rows 20-27 -> 10-13,
  # cols 20-31 -> 10-15; centroid (12, 13).
  np.testing.assert_allclose(labels[keys.CENTERS][0], [12, 13])
  # Right and bottom halves are padding: background, negatives for both
  # losses (weight 1, no target), not void.
  full = dense(labels)
  np.testing.assert_array_equal(full[keys.HEATMAP_WEIGHTS]['3'][2:, :], 1)
  np.testing.assert_array_equal(full[keys.HEATMAP_WEIGHTS]['3'][:, 2:], 1)
  np.testing.assert_array_equal(full[keys.MASK_WEIGHTS][4:, :], 1)
  np.testing.assert_array_equal(full[keys.MASK_WEIGHTS][:, 4:], 1)
  np.testing.assert_array_equal(labels[keys.SLOT_MAP][:, 4:], 0)
  np.testing.assert_array_equal(labels[keys.SLOT_MAP][4:, :], 0)
  np.testing.assert_array_equal(labels[keys.HEATMAP_IGNORE_COUNT][2:], 0)
  np.testing.assert_array_equal(labels[keys.HEATMAP_IGNORE_COUNT][:, 2:], 0)
  np.testing.assert_array_equal(out_image.numpy()[20:, 20:],
                                np.broadcast_to(MEAN_PIXEL, (12, 12, 3)))


def test_random_scale_and_crop_keep_image_and_masks_aligned(make_decoded):
  seg, image = colored_scene()
  decoded = make_decoded(seg, [11, 22, 33], [0, 1, 2], [False] * 3, image)
  parser = make_parser(aug_scale_min=0.6, aug_scale_max=2.5,
                       aug_rand_hflip=True)
  channel_of_class = {0: 0, 1: 1, 2: 2}  # red, green, blue segments
  tf.random.set_seed(7)
  for _ in range(6):
    out_image, labels = parser._parse_train_data(decoded)
    labels = numpy(labels)
    masks = dense(labels)[keys.MASKS]
    sampled = out_image.numpy().astype(np.float64)[2::4, 2::4]
    for slot in range(int(labels[keys.NUM_INSTANCES])):
      pixels = sampled[masks[slot].astype(bool)]
      channel = channel_of_class[labels[keys.CLASSES][slot]]
      # Bilinear gives the nearest source pixel a weight >= 1/4, so every
      # mask sample shows its segment's colour at >= 1/4 intensity; a
      # misaligned map would sample black void or other segments.
      assert (pixels[:, channel] >= 255 / 4 - 1).all()


def test_eval_keeps_original_segment_map(make_decoded):
  seg = np.zeros((24, 40), np.int32)
  seg[2:10, 5:30] = 70001   # a 3-byte COCO id
  seg[12:24, :] = 5
  decoded = make_decoded(seg, [70001, 5], [0, 2], [True, False],
                         source_id='000123')
  parser = make_parser(max_segments=6, eval_groundtruth_padded_size=[48, 48])
  image, labels = parser._parse_eval_data(decoded)
  gt = numpy(labels[keys.GROUNDTRUTHS])
  assert image.shape == (32, 32, 3)
  expected_map = np.zeros((48, 48), np.int32)
  expected_map[:24, :40] = seg
  np.testing.assert_array_equal(gt[keys.GT_SEGMENT_MAP], expected_map)
  np.testing.assert_array_equal(gt[keys.GT_SEGMENT_IDS],
                                [70001, 5, 0, 0, 0, 0])
  np.testing.assert_array_equal(gt[keys.GT_SEGMENT_CLASSES],
                                [0, 2, -1, -1, -1, -1])
  np.testing.assert_array_equal(gt[keys.GT_SEGMENT_IS_CROWD],
                                [True] + [False] * 5)
  assert gt[keys.GT_SOURCE_ID].dtype == np.uint8
  assert gt[keys.GT_SOURCE_ID].shape == (keys.SOURCE_ID_LENGTH,)
  assert parser_lib.source_id_string(gt[keys.GT_SOURCE_ID]) == '000123'
  # Scale min(32 / 24, 32 / 40) = 0.8 -> 19x32 content.
  np.testing.assert_allclose(
      gt[keys.IMAGE_INFO], [[24, 40], [19, 32], [19 / 24, 0.8], [0, 0]],
      rtol=1e-6)
  # Rows 19.. of the image are padding: the mean pixel, background targets.
  np.testing.assert_array_equal(image.numpy()[19:],
                                np.broadcast_to(MEAN_PIXEL, (13, 32, 3)))
  np.testing.assert_array_equal(labels[keys.SLOT_MAP].numpy()[5:], 0)
  # Only the stuff is a target (the thing is crowd).
  assert labels[keys.NUM_INSTANCES].numpy() == 1
  assert labels[keys.CLASSES].numpy()[0] == 2


def test_eval_rejects_oversized_map_naming_the_record(make_decoded):
  decoded = make_decoded(np.zeros((40, 40), np.int32), [], [], [],
                         source_id='big_one')
  with pytest.raises(tf.errors.InvalidArgumentError, match='big_one'):
    make_parser()._parse_eval_data(decoded)


def test_parse_fn_in_tf_data_batches(make_decoded):
  seg, image = colored_scene()
  examples = [make_decoded(seg, [11, 22, 33], [0, 1, 2], [False] * 3, image),
              make_decoded(np.zeros((24, 16), np.int32), [], [], [])]

  def dataset():
    return tf.data.Dataset.from_generator(
        lambda: iter(numpy(e) for e in examples),
        output_signature=tf.nest.map_structure(
            lambda t: tf.TensorSpec([None] * t.shape.rank, t.dtype),
            examples[0]))

  parser = make_parser(min_level=3, max_level=4, aug_scale_min=0.5,
                       aug_scale_max=1.5, aug_rand_hflip=True)
  for training in (True, False):
    batch = next(iter(dataset().map(parser.parse_fn(training)).batch(2)))
    image, labels = batch
    assert image.shape == (2, 32, 32, 3) and image.dtype == tf.uint8
    assert labels[keys.SLOT_MAP].shape == (2, 8, 8)
    assert labels[keys.SLOT_MAP].dtype == tf.uint8
    assert labels[keys.HEATMAP_IGNORE_COUNT].shape == (2, 4, 4)
    assert labels[keys.CLASSES].shape == (2, 4)
    assert labels[keys.NUM_INSTANCES].numpy()[1] == 0
    assert (keys.GROUNDTRUTHS in labels) == (not training)


def test_constructor_rejects_bad_arguments():
  with pytest.raises(ValueError, match='multiple of 128'):
    make_parser(output_size=[640, 600], max_level=7)
  with pytest.raises(ValueError, match='center_type'):
    make_parser(center_type='middle')
  with pytest.raises(ValueError, match='aug_scale_min'):
    make_parser(aug_scale_min=2.0, aug_scale_max=1.0)


def test_class_ids_beyond_the_model_name_the_image(make_decoded):
  seg, image = colored_scene()
  decoded = make_decoded(seg, [11, 22, 33], [0, 1, 5], [False] * 3, image,
                         source_id='street_0042')
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'street_0042[\s\S]*num_classes=3'):
    make_parser()._parse_train_data(decoded)


@pytest.mark.parametrize('is_training', [True, False])
def test_device_resize_sends_the_padded_source_and_the_same_labels(
    make_decoded, is_training):
  seg, image = colored_scene()
  decoded = make_decoded(seg[:24, :20], [11, 22, 33], [0, 1, 2], [False] * 3,
                         image[:24, :20])
  options = dict(output_size=[64, 64], aug_scale_min=0.5, aug_scale_max=2.5,
                 aug_rand_hflip=True, eval_groundtruth_padded_size=[64, 64])
  host = make_parser(**options)
  device = make_parser(source_padded_size=[32, 28], **options)
  parse = '_parse_train_data' if is_training else '_parse_eval_data'
  for seed in range(3):
    tf.random.set_seed(seed)
    host_image, host_labels = getattr(host, parse)(decoded)
    tf.random.set_seed(seed)
    source, labels = getattr(device, parse)(decoded)
    info = labels.pop(keys.RESIZE_INFO)
    assert sorted(labels) == sorted(host_labels)
    tf.nest.map_structure(
        lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()),
        labels, host_labels)
    # The source (flipped or not) in the top-left corner, zeros around it.
    assert source.shape == (32, 28, 3)
    np.testing.assert_array_equal(source.numpy()[24:], 0)
    np.testing.assert_array_equal(source.numpy()[:, 20:], 0)
    assert {source.numpy()[:24, :20].tobytes()} <= {
        image[:24, :20].tobytes(), image[:24, :20][:, ::-1].tobytes()}
    np.testing.assert_array_equal(
        image_ops.resize_window(source[None], info[None], [64, 64])[0],
        host_image)


def test_device_resize_rejects_a_larger_source_naming_the_record(
    make_decoded):
  decoded = make_decoded(np.zeros((40, 24), np.int32), [], [], [],
                         source_id='too_tall')
  parser = make_parser(source_padded_size=[32, 32])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='(?s)too_tall.*source_padded_size'):
    parser._parse_train_data(decoded)
