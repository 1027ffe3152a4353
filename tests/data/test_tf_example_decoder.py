"""Tests for maskconver.dataloaders.tf_example_decoder."""

import numpy as np
import tensorflow as tf

from maskconver import keys
from maskconver.data import coco_panoptic_io
from maskconver.data import convert_coco_panoptic
from maskconver.dataloaders import tf_example_decoder


def _decode_all(tmp_path, panoptic_writer, samples, categories):
  paths = panoptic_writer(str(tmp_path / 'in'), samples, categories)
  result = convert_coco_panoptic.convert(
      **paths, output_prefix=str(tmp_path / 'out' / 'records'),
      progress=False)
  decoder = tf_example_decoder.TfExampleDecoder()
  return list(tf.data.TFRecordDataset(result.shard_paths).map(
      decoder.decode).as_numpy_iterator())


def test_decodes_hand_built_example(tmp_path, panoptic_writer,
                                    grid_categories):
  # 70000 = 112 + 256 * 17 + 256**2 * 1.
  segment_map = np.array([[0, 70000, 70000], [5, 5, 70000]])
  infos = [
      {'id': 70000, 'category_id': 7, 'iscrowd': 1, 'area': 3,
       'bbox': [1, 0, 2, 2]},
      {'id': 5, 'category_id': 40, 'iscrowd': 0, 'area': 2,
       'bbox': [0, 1, 2, 1]},
  ]
  image = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
  [decoded] = _decode_all(tmp_path, panoptic_writer, [
      {'image': image, 'segment_map': segment_map, 'segments_info': infos,
       'image_id': 42}], grid_categories)
  assert set(decoded) == {keys.IMAGE, keys.HEIGHT, keys.WIDTH, keys.SOURCE_ID,
                          keys.SEGMENT_MAP, keys.SEGMENT_ID_LIST,
                          keys.SEGMENT_CLASS_LIST, keys.SEGMENT_CROWD_LIST}
  np.testing.assert_array_equal(decoded[keys.IMAGE], image)
  assert decoded[keys.IMAGE].dtype == np.uint8
  assert decoded[keys.SEGMENT_MAP].dtype == np.int32
  np.testing.assert_array_equal(decoded[keys.SEGMENT_MAP], segment_map)
  assert (decoded[keys.HEIGHT], decoded[keys.WIDTH]) == (2, 3)
  assert decoded[keys.SOURCE_ID] == b'42'
  assert decoded[keys.SEGMENT_ID_LIST].tolist() == [70000, 5]
  # Training ids: things 3 -> 0, 7 -> 1, then stuff 40 -> 2.
  assert decoded[keys.SEGMENT_CLASS_LIST].tolist() == [1, 2]
  assert decoded[keys.SEGMENT_CROWD_LIST].tolist() == [True, False]


def test_grayscale_png_and_jpeg_become_rgb(tmp_path, panoptic_writer,
                                           grid_categories):
  gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
  segment_map = np.full((16, 16), 9)
  infos = coco_panoptic_io.segments_info_from_map(segment_map, [40], [], [9])
  decoded = _decode_all(tmp_path, panoptic_writer, [
      {'image': gray, 'segment_map': segment_map, 'segments_info': infos,
       'image_format': 'PNG'},
      {'image': gray, 'segment_map': segment_map, 'segments_info': infos,
       'image_format': 'JPEG'},
  ], grid_categories)
  png_image, jpeg_image = decoded[0][keys.IMAGE], decoded[1][keys.IMAGE]
  assert png_image.shape == jpeg_image.shape == (16, 16, 3)
  for channel in range(3):
    np.testing.assert_array_equal(png_image[..., channel], gray)
    np.testing.assert_array_equal(jpeg_image[..., channel],
                                  jpeg_image[..., 0])
  # JPEG is lossy: close to the gray ramp, not equal.
  assert np.abs(jpeg_image[..., 0].astype(int) - gray).max() <= 8


def test_decode_panoptic_png_uses_all_channels():
  ids = np.array([[0, 1, 256], [65536, 70000, 256**3 - 1]])
  png = tf.io.encode_png(tf.constant(coco_panoptic_io.id_to_rgb(ids)))
  np.testing.assert_array_equal(
      tf_example_decoder.decode_panoptic_png(png).numpy(), ids)


def test_decoder_runs_in_graph_mode(converted_dataset):
  decoder = tf_example_decoder.TfExampleDecoder()
  dataset = tf.data.TFRecordDataset(converted_dataset.val_shards).map(
      decoder.decode)
  assert dataset.element_spec[keys.IMAGE].shape.as_list() == [None, None, 3]
  assert dataset.element_spec[keys.SEGMENT_MAP].shape.as_list() == [None,
                                                                    None]
  assert dataset.element_spec[keys.SEGMENT_CROWD_LIST].dtype == tf.bool
  assert sum(1 for _ in dataset) == 3
