"""Bad input: the converter and the dataset check name the files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys
from maskconver.data import check_dataset
from maskconver.data import coco_panoptic_io
from maskconver.data import convert_coco_panoptic

_BAD_INDEX = 1  # The second of three images, so one is already written.


def _edit_json(paths, edit):
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  edit(data['annotations'][_BAD_INDEX]['segments_info'])
  with open(paths['panoptic_json'], 'w', encoding='utf-8') as f:
    json.dump(data, f)


def _truncate_image(paths, image_path, png_path):
  del paths, png_path
  with open(image_path, 'rb') as f:
    data = f.read()
  with open(image_path, 'wb') as f:
    f.write(data[:len(data) // 2])


def _grow_png(paths, image_path, png_path):
  del paths, image_path
  ids = coco_panoptic_io.read_segment_map(png_path)
  coco_panoptic_io.write_segment_map(png_path,
                                     np.concatenate([ids, ids[-1:]], axis=0))


def _unknown_category(paths, image_path, png_path):
  del image_path, png_path
  _edit_json(paths, lambda infos: infos[-1].update(category_id=99))


def _json_segment_not_in_png(paths, image_path, png_path):
  del image_path, png_path
  _edit_json(paths, lambda infos: infos.append(
      {'id': 123, 'category_id': 1, 'iscrowd': 0, 'area': 1,
       'bbox': [0, 0, 1, 1]}))


def _png_segment_not_in_json(paths, image_path, png_path):
  del image_path, png_path
  _edit_json(paths, lambda infos: infos.pop())


def _remove_image(paths, image_path, png_path):
  del paths, png_path
  os.remove(image_path)


def _remove_png(paths, image_path, png_path):
  del paths, image_path
  os.remove(png_path)


_CASES = {
    'corrupt_image': (_truncate_image, 'corrupt image bytes'),
    'png_size': (_grow_png, 'PNG size 64x65 (WxH) differs from image size '
                 '64x64'),
    'unknown_category': (_unknown_category,
                         'has category_id 99, which is not in categories'),
    'json_segment_not_in_png': (
        _json_segment_not_in_png,
        'segment ids [123] of segments_info are missing from the PNG'),
    'png_segment_not_in_json': (_png_segment_not_in_json,
                                'in the PNG are missing from segments_info'),
    'missing_image': (_remove_image, 'image file not found'),
    'missing_png': (_remove_png, 'panoptic PNG not found'),
}


def _damaged_copy(dataset, split_copier, tmp_path, damage):
  paths = split_copier(dataset.val, str(tmp_path / 'in'))
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  image_path = os.path.join(paths['image_dir'],
                            data['images'][_BAD_INDEX]['file_name'])
  png_path = os.path.join(paths['panoptic_masks_dir'],
                          data['annotations'][_BAD_INDEX]['file_name'])
  damage(paths, image_path, png_path)
  return paths, image_path, png_path


def _argv(paths, output_prefix, *extra):
  return [f'--{k}={v}' for k, v in paths.items()] + [
      f'--output_prefix={output_prefix}', '--num_shards=2',
      '--num_workers=0', *extra]


@pytest.mark.parametrize('case', sorted(_CASES))
def test_default_mode_stops_and_leaves_no_shard(case, synthetic_dataset,
                                                split_copier, tmp_path,
                                                capsys):
  damage, message = _CASES[case]
  paths, image_path, png_path = _damaged_copy(synthetic_dataset, split_copier,
                                              tmp_path, damage)
  out_dir = tmp_path / 'out'
  assert convert_coco_panoptic.main(_argv(paths, out_dir / 'val')) == 1
  error = capsys.readouterr().err
  assert f'image {image_path} (panoptic PNG {png_path}): ' in error
  assert message in error
  assert 'No shard was written' in error
  # Not even a temporary file is left behind.
  assert os.listdir(out_dir) == []


@pytest.mark.parametrize('case', sorted(_CASES))
def test_skip_mode_reports_and_skips(case, synthetic_dataset, split_copier,
                                     tmp_path, capsys):
  damage, message = _CASES[case]
  paths, image_path, _ = _damaged_copy(synthetic_dataset, split_copier,
                                       tmp_path, damage)
  prefix = tmp_path / 'out' / 'val'
  assert convert_coco_panoptic.main(
      _argv(paths, prefix, '--skip_bad_images')) == 0
  captured = capsys.readouterr()
  assert f'skipping: image {image_path}' in captured.err
  assert message in captured.err
  assert f'skipped 1 of 3 images (reported above):\n  {image_path}' in (
      captured.err)
  assert 'wrote 2 records to 2 shard(s)' in captured.out
  shards = convert_coco_panoptic.shard_paths(str(prefix), 2)
  records = [tf.train.Example.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(shards)]
  source_ids = [r.features.feature[keys.IMAGE_SOURCE_ID].bytes_list.value[0]
                for r in records]
  # Val image ids are 1000001 .. 1000003; the second one is skipped.
  assert source_ids == [b'1000001', b'1000003']
  assert sorted(os.listdir(tmp_path / 'out')) == [
      'val-00000-of-00002.tfrecord', 'val-00001-of-00002.tfrecord',
      'val_label_map.json']


def test_crash_while_writing_keeps_old_shards(synthetic_dataset, tmp_path,
                                              monkeypatch):
  prefix = str(tmp_path / 'val')
  convert_coco_panoptic.convert(**synthetic_dataset.val, output_prefix=prefix,
                                progress=False)
  old = tmp_path / 'val-00000-of-00001.tfrecord'
  old_bytes = old.read_bytes()
  real_build = convert_coco_panoptic.build_example
  calls = []

  def build_then_crash(*args):
    calls.append(1)
    if len(calls) == 2:
      raise RuntimeError('simulated crash')
    return real_build(*args)

  monkeypatch.setattr(convert_coco_panoptic, 'build_example',
                      build_then_crash)
  with pytest.raises(RuntimeError, match='simulated crash'):
    convert_coco_panoptic.convert(**synthetic_dataset.val,
                                  output_prefix=prefix, progress=False)
  assert old.read_bytes() == old_bytes
  assert sorted(os.listdir(tmp_path)) == ['val-00000-of-00001.tfrecord',
                                          'val_label_map.json']


def test_skip_mode_with_no_good_image_fails(synthetic_dataset, split_copier,
                                            tmp_path, capsys):
  paths = split_copier(synthetic_dataset.val, str(tmp_path / 'in'))
  for name in os.listdir(paths['panoptic_masks_dir']):
    os.remove(os.path.join(paths['panoptic_masks_dir'], name))
  argv = _argv(paths, tmp_path / 'out' / 'val', '--skip_bad_images')
  assert convert_coco_panoptic.main(argv) == 1
  assert 'no image left to convert (3 skipped)' in capsys.readouterr().err
  assert os.listdir(tmp_path / 'out') == []


def test_script_exits_non_zero_naming_files(synthetic_dataset, split_copier,
                                            tmp_path):
  paths, image_path, png_path = _damaged_copy(synthetic_dataset, split_copier,
                                              tmp_path, _remove_png)
  argv = _argv(paths, tmp_path / 'out' / 'val')
  process = subprocess.run(
      [sys.executable, '-m', 'maskconver.data.convert_coco_panoptic', *argv],
      capture_output=True, text=True, timeout=120, check=False)
  assert process.returncode == 1
  assert (f'image {image_path} (panoptic PNG {png_path}): panoptic PNG not '
          'found') in process.stderr
  assert os.listdir(tmp_path / 'out') == []


def test_check_dataset_summary(tmp_path, panoptic_writer, grid_categories,
                               capsys):
  # Image 1: a ball (3), a crowd of boxes (7), floor (40). Image 2: floor.
  map1 = np.array([[1, 1, 2], [3, 3, 0]])
  infos1 = coco_panoptic_io.segments_info_from_map(map1, [3, 7, 40],
                                                   [False, True, False])
  map2 = np.full((2, 3), 8)
  infos2 = coco_panoptic_io.segments_info_from_map(map2, [40], [], [8])
  image = np.zeros((2, 3, 3), np.uint8)
  paths = panoptic_writer(str(tmp_path), [
      {'image': image, 'segment_map': map1, 'segments_info': infos1},
      {'image': image, 'segment_map': map2, 'segments_info': infos2}],
                          grid_categories)
  argv = [f'--{k}={v}' for k, v in paths.items()] + ['--num_workers=0']
  assert check_dataset.main(argv) == 0
  out = capsys.readouterr().out
  assert 'images: 2\n' in out
  assert 'classes: 3 (2 things, 1 stuff)' in out
  assert '    0     3  ball                 thing: 1, crowd 0' in out
  assert '    1     7  box                  thing: 1, crowd 1' in out
  assert '    2    40  floor                stuff: 2, crowd 0' in out
  assert 'thing segments: 2, stuff segments: 2, crowd segments: 1' in out
  assert 'problems: 0' in out


def test_check_dataset_lists_every_problem(synthetic_dataset, split_copier,
                                           tmp_path, capsys):
  paths, image_path, png_path = _damaged_copy(synthetic_dataset, split_copier,
                                              tmp_path, _unknown_category)
  data = coco_panoptic_io.load_json(paths['panoptic_json'])
  first_image = os.path.join(paths['image_dir'],
                             data['images'][0]['file_name'])
  os.remove(first_image)
  argv = [f'--{k}={v}' for k, v in paths.items()] + ['--num_workers=2']
  assert check_dataset.main(argv) == 1
  out = capsys.readouterr().out
  assert 'images: 3\n' in out
  assert 'problems: 2\n' in out
  assert f'image {first_image} (panoptic PNG ' in out
  assert 'image file not found' in out
  assert f'image {image_path} (panoptic PNG {png_path}): segment id' in out
  assert 'segments with an unknown category: 1' in out
