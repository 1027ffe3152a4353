"""Round trips: COCO panoptic -> converter -> records -> decoder -> COCO."""

import filecmp
import os

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.data import coco_panoptic_io
from maskconver.data import convert_coco_panoptic
from maskconver.data import label_map as label_map_lib
from maskconver.data import synthetic
from maskconver.dataloaders import tf_example_decoder
from maskconver.evaluation import panoptic_quality


def _records_to_coco(shards, label_map, out_dir):
  """Decodes records and writes them back as COCO panoptic PNGs + JSON."""
  png_dir = os.path.join(out_dir, 'panoptic')
  os.makedirs(png_dir)
  decoder = tf_example_decoder.TfExampleDecoder()
  dataset = tf.data.TFRecordDataset(shards).map(decoder.decode)
  annotations = []
  for example in dataset.as_numpy_iterator():
    image_id = int(example[keys.SOURCE_ID])
    file_name = f'{image_id}.png'
    segment_map = example[keys.SEGMENT_MAP]
    assert example[keys.IMAGE].shape == segment_map.shape + (3,)
    assert segment_map.shape == (example[keys.HEIGHT], example[keys.WIDTH])
    coco_panoptic_io.write_segment_map(os.path.join(png_dir, file_name),
                                       segment_map)
    annotations.append({
        'image_id': image_id,
        'file_name': file_name,
        'segments_info': coco_panoptic_io.segments_info_from_map(
            segment_map,
            [label_map.coco_id(c) for c in example[keys.SEGMENT_CLASS_LIST]],
            example[keys.SEGMENT_CROWD_LIST].tolist(),
            example[keys.SEGMENT_ID_LIST].tolist()),
    })
  json_path = os.path.join(out_dir, 'panoptic.json')
  coco_panoptic_io.write_json(json_path, {
      'annotations': annotations,
      'categories': [{'id': c.coco_id, 'name': c.name,
                      'isthing': int(c.isthing), 'color': list(c.color)}
                     for c in label_map.classes]})
  return json_path, png_dir


def _assert_same_coco(input_paths, json_path, png_dir):
  expected = coco_panoptic_io.load_json(input_paths['panoptic_json'])
  actual = {a['image_id']: a
            for a in coco_panoptic_io.load_json(json_path)['annotations']}
  assert sorted(actual) == sorted(a['image_id']
                                  for a in expected['annotations'])
  for annotation in expected['annotations']:
    written = actual[annotation['image_id']]
    np.testing.assert_array_equal(
        coco_panoptic_io.read_segment_map(os.path.join(png_dir,
                                                       written['file_name'])),
        coco_panoptic_io.read_segment_map(os.path.join(
            input_paths['panoptic_masks_dir'], annotation['file_name'])))
    assert written['segments_info'] == annotation['segments_info']


@pytest.mark.parametrize('split', ['train', 'val'])
def test_synthetic_round_trip(converted_dataset, tmp_path, split):
  label_map = label_map_lib.LabelMap.load(converted_dataset.label_map_path)
  shards = (converted_dataset.train_shards if split == 'train' else
            converted_dataset.val_shards)
  input_paths = getattr(converted_dataset.dataset, split)
  json_path, png_dir = _records_to_coco(shards, label_map, str(tmp_path))
  _assert_same_coco(input_paths, json_path, png_dir)

  result = panoptic_quality.evaluate_coco_panoptic(
      input_paths['panoptic_json'], input_paths['panoptic_masks_dir'],
      json_path, png_dir)
  assert result['All']['pq'] == 1.0
  assert result['All']['n'] >= 5


def test_records_hold_files_as_stored(converted_dataset):
  label_map = label_map_lib.LabelMap.load(converted_dataset.label_map_path)
  assert label_map == label_map_lib.LabelMap.from_coco_categories(
      synthetic.CATEGORIES)
  assert (label_map.num_classes, label_map.num_thing_classes) == (7, 4)
  paths = converted_dataset.dataset.train
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  records = [tf.train.Example.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(converted_dataset.train_shards)]
  # Round-robin over 2 shards: shard 0 holds images 0, 2, 4, shard 1 the rest.
  assert len(records) == 6
  first = records[0].features.feature
  image, annotation = data['images'][0], data['annotations'][0]
  with open(os.path.join(paths['image_dir'], image['file_name']), 'rb') as f:
    assert first[keys.IMAGE_ENCODED].bytes_list.value[0] == f.read()
  with open(os.path.join(paths['panoptic_masks_dir'],
                         annotation['file_name']), 'rb') as f:
    assert first[keys.PANOPTIC_ENCODED].bytes_list.value[0] == f.read()
  assert first[keys.IMAGE_FORMAT].bytes_list.value[0] == b'jpeg'
  assert first[keys.IMAGE_FILENAME].bytes_list.value[0] == b'000000000001.jpg'
  assert first[keys.PANOPTIC_FILENAME].bytes_list.value[0] == (
      b'000000000001.png')
  assert first[keys.IMAGE_SOURCE_ID].bytes_list.value[0] == b'1'
  assert list(first[keys.SEGMENT_IDS].int64_list.value) == [
      s['id'] for s in annotation['segments_info']]
  # COCO ids 1, 2, 3, 5, 20, 21, 22 are training ids 0 .. 6.
  to_train = {1: 0, 2: 1, 3: 2, 5: 3, 20: 4, 21: 5, 22: 6}
  assert list(first[keys.SEGMENT_CLASSES].int64_list.value) == [
      to_train[s['category_id']] for s in annotation['segments_info']]
  third = records[1].features.feature
  assert third[keys.IMAGE_SOURCE_ID].bytes_list.value[0] == b'3'


def test_workers_do_not_change_the_output(converted_dataset, tmp_path):
  result = convert_coco_panoptic.convert(
      **converted_dataset.dataset.train,
      output_prefix=str(tmp_path / 'train'), num_shards=2, num_workers=2,
      progress=False)
  assert result.num_written == 6 and not result.skipped
  for mine, reference in zip(result.shard_paths,
                             converted_dataset.train_shards):
    assert filecmp.cmp(mine, reference, shallow=False)
  assert sorted(os.listdir(tmp_path)) == [
      'train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord',
      'train_label_map.json']


def test_300_segments_crowd_and_void_survive(tmp_path, panoptic_writer,
                                             grid_categories):
  # 40 x 40 pixels in 2 x 2 cells: 400 segments; the last row of cells is
  # void. Ids 70000 + 977 * i use all three PNG channels.
  cells = np.arange(400).reshape(20, 20)
  segment_map = np.kron(70000 + 977 * cells, np.ones((2, 2), np.int64))
  segment_map[38:] = 0
  categories = [(7, 3, 40)[i % 3] for i in range(380)]
  crowd = [i % 3 != 2 and i % 5 == 0 for i in range(380)]
  infos = coco_panoptic_io.segments_info_from_map(
      segment_map, categories, crowd, [70000 + 977 * i for i in range(380)])
  assert len(infos) == 380
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
  paths = panoptic_writer(str(tmp_path / 'in'), [
      {'image': image, 'segment_map': segment_map, 'segments_info': infos}],
                          grid_categories)
  result = convert_coco_panoptic.convert(
      **paths, output_prefix=str(tmp_path / 'out' / 'grid'), progress=False)
  label_map = label_map_lib.LabelMap.load(result.label_map_path)
  # Things 3, 7 then stuff 40.
  assert label_map.coco_ids == [3, 7, 40]

  example = next(iter(tf.data.TFRecordDataset(result.shard_paths).map(
      tf_example_decoder.TfExampleDecoder().decode)))
  np.testing.assert_array_equal(example[keys.IMAGE], image)
  classes = example[keys.SEGMENT_CLASS_LIST].numpy()
  assert classes.shape == (380,)
  assert classes[:3].tolist() == [1, 0, 2]
  assert int(tf.reduce_sum(tf.cast(example[keys.SEGMENT_CROWD_LIST],
                                   tf.int32))) == sum(crowd)
  assert int(example[keys.SEGMENT_MAP][1, 3]) == 70000 + 977
  json_path, png_dir = _records_to_coco(result.shard_paths, label_map,
                                        str(tmp_path / 'back'))
  _assert_same_coco(paths, json_path, png_dir)
