"""Paths from data: sub-folders convert, escapes are refused, no empty shard."""

import os
import shutil

import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.data import check_dataset
from maskconver.data import coco_panoptic_io
from maskconver.data import convert_coco_panoptic


def _nested_copy(dataset, split_copier, tmp_path):
  """The val split with every image and PNG moved into sub-folders."""
  paths = split_copier(dataset.val, str(tmp_path / 'in'))
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  for index, (image, annotation) in enumerate(
      zip(data['images'], data['annotations'])):
    for folder, entry in ((paths['image_dir'], image),
                          (paths['panoptic_masks_dir'], annotation)):
      nested = os.path.join(f'city{index % 2}', 'day', entry['file_name'])
      os.makedirs(os.path.join(folder, os.path.dirname(nested)),
                  exist_ok=True)
      os.rename(os.path.join(folder, entry['file_name']),
                os.path.join(folder, nested))
      entry['file_name'] = nested
  coco_panoptic_io.write_json(paths['panoptic_json'], data)
  return paths, data


def _records(prefix, num_shards):
  return [tf.train.Example.FromString(r.numpy()) for r in
          tf.data.TFRecordDataset(
              convert_coco_panoptic.shard_paths(str(prefix), num_shards))]


def _bytes_feature(example, key):
  return example.features.feature[key].bytes_list.value[0]


def test_nested_file_names_convert(synthetic_dataset, split_copier, tmp_path):
  paths, data = _nested_copy(synthetic_dataset, split_copier, tmp_path)
  result = convert_coco_panoptic.convert(
      **paths, output_prefix=str(tmp_path / 'out' / 'val'), progress=False)
  assert result.num_written == 3 and not result.skipped
  records = _records(tmp_path / 'out' / 'val', 1)
  assert [_bytes_feature(r, keys.IMAGE_FILENAME).decode() for r in records] \
      == [image['file_name'] for image in data['images']]
  # The records hold the files' bytes as stored.
  first = data['images'][0]['file_name']
  with open(os.path.join(paths['image_dir'], first), 'rb') as f:
    assert _bytes_feature(records[0], keys.IMAGE_ENCODED) == f.read()


def _point_outside(paths, image_file_name=None, png_file_name=None):
  """Makes image 1 (of 0, 1, 2) name other files; returns its image id."""
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  if image_file_name is not None:
    data['images'][1]['file_name'] = image_file_name
  if png_file_name is not None:
    data['annotations'][1]['file_name'] = png_file_name
  coco_panoptic_io.write_json(paths['panoptic_json'], data)
  return data['images'][1]['id']


def _outside_cases(tmp_path, paths):
  """(image file_name, png file_name, expected message) escaping the folders.

  Each target exists and is a valid file (a copy of image 0 / PNG 0), so
  a converter that followed the name would convert it.
  """
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  secret = tmp_path / 'secret'
  secret.mkdir(exist_ok=True)
  shutil.copy(os.path.join(paths['image_dir'], data['images'][0]['file_name']),
              secret / 'photo.png')
  shutil.copy(os.path.join(paths['panoptic_masks_dir'],
                           data['annotations'][0]['file_name']),
              secret / 'mask.png')
  return {
      'dotdot_image': ('../../secret/photo.png', None,
                       "image file_name '../../secret/photo.png' leads "
                       'outside the folder (..): file names must be relative '
                       'paths inside --image_dir'),
      'absolute_image': (str(secret / 'photo.png'), None,
                         f"image file_name '{secret / 'photo.png'}' is an "
                         'absolute path'),
      'dotdot_png': (None, 'sub/../../../secret/mask.png',
                     "panoptic PNG file_name 'sub/../../../secret/mask.png' "
                     'leads outside the folder (..): file names must be '
                     'relative paths inside --panoptic_masks_dir'),
  }


@pytest.mark.parametrize('case', ['dotdot_image', 'absolute_image',
                                  'dotdot_png'])
def test_file_names_leading_outside_are_refused(case, synthetic_dataset,
                                                split_copier, tmp_path,
                                                capsys):
  paths = split_copier(synthetic_dataset.val, str(tmp_path / 'in'))
  image_name, png_name, message = _outside_cases(tmp_path, paths)[case]
  _point_outside(paths, image_name, png_name)
  out = tmp_path / 'out'
  argv = [f'--{k}={v}' for k, v in paths.items()] + [
      f'--output_prefix={out / "val"}', '--num_workers=0']
  assert convert_coco_panoptic.main(argv) == 1
  error = capsys.readouterr().err
  assert message in error and 'the file was not read' in error
  assert 'No shard was written' in error
  assert os.listdir(out) == []
  # Skipping: the other two images convert.
  assert convert_coco_panoptic.main(argv + ['--skip_bad_images']) == 0
  assert 'skipped 1 of 3 images' in capsys.readouterr().err
  assert [_bytes_feature(r, keys.IMAGE_SOURCE_ID) for r in
          _records(out / 'val', 1)] == [b'1000001', b'1000003']


def test_check_dataset_lists_the_escape_and_reads_nothing(
    synthetic_dataset, split_copier, tmp_path, monkeypatch):
  paths = split_copier(synthetic_dataset.val, str(tmp_path / 'in'))
  _point_outside(paths, '../../etc/passwd', '/etc/shadow')
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  opened = []
  real_read = check_dataset._read_file  # pylint: disable=protected-access
  monkeypatch.setattr(check_dataset, '_read_file',
                      lambda path: opened.append(path) or real_read(path))
  _, problems = check_dataset.check_dataset(**paths)
  messages = [str(p) for p in problems]
  assert len(messages) == 2, messages
  assert "image file_name '../../etc/passwd' leads outside" in messages[0]
  assert "panoptic PNG file_name '/etc/shadow' is an absolute" in messages[1]
  # Both problems name the image's files; none of them was opened.
  image_path = os.path.join(paths['image_dir'], '../../etc/passwd')
  assert all(m.startswith(f'image {image_path} (panoptic PNG /etc/shadow)')
             for m in messages)
  assert opened == [
      os.path.join(folder, entry[i]['file_name']) for i in (0, 2)
      for folder, entry in ((paths['image_dir'], data['images']),
                            (paths['panoptic_masks_dir'],
                             data['annotations']))]


@pytest.mark.parametrize('file_name, reason', [
    ('a.jpg', None), ('city/a/b.jpg', None), ('a/../b.jpg', None),
    ('./a.jpg', None), ('..', 'leads outside the folder (..)'),
    ('a/../../b.jpg', 'leads outside the folder (..)'),
    ('/data/a.jpg', 'is an absolute path'), ('', 'is empty'),
])
def test_outside_folder(file_name, reason):
  assert check_dataset.outside_folder(file_name) == reason


def test_more_shards_than_images_is_refused(synthetic_dataset, tmp_path,
                                            capsys):
  argv = [f'--{k}={v}' for k, v in synthetic_dataset.val.items()] + [
      f'--output_prefix={tmp_path / "out" / "val"}', '--num_shards=4',
      '--num_workers=0']
  assert convert_coco_panoptic.main(argv) == 1
  assert ('--num_shards=4 but ' in capsys.readouterr().err)
  assert not os.path.exists(tmp_path / 'out') or not os.listdir(
      tmp_path / 'out')


def test_skipping_down_to_fewer_images_than_shards_is_refused(
    synthetic_dataset, split_copier, tmp_path, capsys):
  paths = split_copier(synthetic_dataset.val, str(tmp_path / 'in'))
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  for annotation in data['annotations'][1:]:
    os.remove(os.path.join(paths['panoptic_masks_dir'],
                           annotation['file_name']))
  argv = [f'--{k}={v}' for k, v in paths.items()] + [
      f'--output_prefix={tmp_path / "out" / "val"}', '--num_shards=3',
      '--num_workers=0', '--skip_bad_images']
  assert convert_coco_panoptic.main(argv) == 1
  assert ('1 image(s) left after skipping 2, fewer than --num_shards=3'
          in capsys.readouterr().err)
  assert os.listdir(tmp_path / 'out') == []
