"""Tests of the COCO panoptic prediction writer."""

import json
import os

import numpy as np
import pytest

from maskconver import keys
from maskconver.data import coco_panoptic_io
from maskconver.evaluation import panoptic_quality
from maskconver.evaluation import prediction_writer

# Training ids 0, 1 are things (COCO ids 11, 22), 2 is stuff (COCO id 33).
_CATEGORY_IDS = [11, 22, 33]
_IS_THING = [True, True, False]
_V = keys.VOID_CLASS


def _writer(tmp_path):
  return prediction_writer.PanopticPredictionWriter(
      str(tmp_path), _CATEGORY_IDS, _IS_THING)


def test_category_instance_with_padding_and_upsampling(tmp_path):
  # A 4x8 image scaled by 0.5 to 2x4, padded to the 4x4 model input.
  image_info = np.array([[4, 8], [2, 4], [0.5, 0.5], [0, 0]], np.float32)
  category_mask = np.array([[0, 0, 2, 2],
                            [1, _V, 2, 2],
                            [2, 2, 2, 2],
                            [1, 1, 1, 1]])
  instance_mask = np.array([[1, 1, 0, 7],
                            [2, 0, 0, 0],
                            [0, 0, 0, 0],
                            [5, 5, 5, 5]])
  writer = _writer(tmp_path)
  annotation = writer.add_category_instance(
      b'139', '000000000139.jpg', category_mask, instance_mask, image_info)
  expected = np.array([[1, 1, 1, 1, 3, 3, 3, 3],
                       [1, 1, 1, 1, 3, 3, 3, 3],
                       [2, 2, 0, 0, 3, 3, 3, 3],
                       [2, 2, 0, 0, 3, 3, 3, 3]])
  png = tmp_path / 'panoptic' / '000000000139.png'
  np.testing.assert_array_equal(
      coco_panoptic_io.read_segment_map(str(png)), expected)
  assert annotation == {
      'image_id': 139,
      'file_name': '000000000139.png',
      'segments_info': [
          {'id': 1, 'category_id': 11, 'iscrowd': 0, 'area': 8,
           'bbox': [0, 0, 4, 2]},
          {'id': 2, 'category_id': 22, 'iscrowd': 0, 'area': 4,
           'bbox': [0, 2, 2, 2]},
          {'id': 3, 'category_id': 33, 'iscrowd': 0, 'area': 16,
           'bbox': [4, 0, 4, 4]},
      ]}


def test_instances_split_things_but_not_stuff(tmp_path):
  category_mask = np.array([[0, 0, 2],
                            [0, 0, 2]])
  instance_mask = np.array([[1, 2, 1],
                            [1, 2, 3]])
  annotation = _writer(tmp_path).add_category_instance(
      5, 'a.png', category_mask, instance_mask)
  assert [(s['category_id'], s['area']) for s in annotation['segments_info']
         ] == [(11, 2), (11, 2), (33, 2)]


def test_segments_downsampled_to_original_size(tmp_path):
  segment_map = np.array([[1, 1, 3, 3],
                          [1, 1, 3, 3],
                          [0, 0, 4, 4],
                          [0, 0, 4, 4]])
  # Index 1 is unused (VOID_CLASS); the stuff segment 4 keeps its class.
  segment_classes = [1, _V, 0, 2]
  writer = _writer(tmp_path)
  annotation = writer.add_segments('img', 'img.jpg', segment_map,
                                   segment_classes, original_size=(2, 2))
  np.testing.assert_array_equal(
      coco_panoptic_io.read_segment_map(str(tmp_path / 'panoptic' /
                                            'img.png')),
      [[1, 2], [0, 3]])
  assert [(s['id'], s['category_id']) for s in annotation['segments_info']
         ] == [(1, 22), (2, 11), (3, 33)]


def test_resize_to_original_fills_uncovered_pixels():
  # The model input holds rows 1.. of the scaled image (offset 1).
  image_info = np.array([[3, 2], [3, 2], [1, 1], [1, 0]])
  resized = prediction_writer.resize_to_original(
      np.array([[5, 6], [7, 8], [9, 9]]), image_info, fill_value=-1)
  np.testing.assert_array_equal(resized, [[-1, -1], [5, 6], [7, 8]])


def test_written_predictions_round_trip_through_pq(tmp_path):
  segment_maps = np.array([[[1, 2], [2, 2]], [[0, 1], [1, 1]]])
  segment_classes = np.array([[0, 2], [2, _V]])
  writer = _writer(tmp_path)
  for image_id, file_name, segment_map, classes in zip(
      [b'1', b'2'], ['1.jpg', '2.jpg'], segment_maps, segment_classes):
    writer.add_segments(image_id, file_name, segment_map, classes)
  json_path = writer.write_json()
  assert json_path == os.path.join(str(tmp_path), 'panoptic.json')
  assert sorted(os.listdir(tmp_path)) == ['panoptic', 'panoptic.json']
  written = json.loads((tmp_path / 'panoptic.json').read_text())
  assert [a['image_id'] for a in written['annotations']] == [1, 2]
  gt_json = tmp_path / 'gt.json'
  coco_panoptic_io.write_json(str(gt_json), {
      'annotations': written['annotations'],
      'categories': [{'id': c, 'isthing': int(t)}
                     for c, t in zip(_CATEGORY_IDS, _IS_THING)]})
  result = panoptic_quality.evaluate_coco_panoptic(
      str(gt_json), writer.png_dir, json_path, writer.png_dir)
  assert result['All'] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0, 'n': 2}


def test_errors(tmp_path):
  writer = _writer(tmp_path)
  one = np.ones((2, 2), np.int32)
  writer.add_segments(3, 'x.jpg', one, [0])
  with pytest.raises(ValueError, match='image_id 3 was already written'):
    writer.add_segments('3', 'y.jpg', one, [0])
  with pytest.raises(ValueError, match=r'training class ids \[7\] outside'):
    writer.add_category_instance(4, 'z.jpg', one * 7, one)
  with pytest.raises(ValueError, match='names no file'):
    writer.add_segments(5, '/./', one, [0])
  with pytest.raises(ValueError, match=r'segment_map values must lie in'):
    writer.add_segments(6, 'w.jpg', one * 3, [0])
  with pytest.raises(ValueError, match='2 entries but is_thing has 1'):
    prediction_writer.PanopticPredictionWriter(str(tmp_path), [1, 2], [True])
