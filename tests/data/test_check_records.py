"""`python -m maskconver.dataloaders.check_records`: every bad shard, by name."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from maskconver.dataloaders import check_records
from maskconver.data import label_map as label_map_lib


def _record_offsets(path):
  """Start of every record: TFRecord framing adds 16 bytes to each."""
  offsets = [0]
  for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
    offsets.append(offsets[-1] + len(record) + 16)
  return offsets


def _flip_byte(path, position):
  data = bytearray(open(path, 'rb').read())
  data[position] ^= 0xFF
  open(path, 'wb').write(bytes(data))


@pytest.fixture
def damaged_folder(converted_dataset, tmp_path):
  """Good and bad shards under one prefix; returns (folder, expected)."""
  first, second = converted_dataset.train_shards
  folder = tmp_path / 'records'
  folder.mkdir()
  shutil.copy(first, folder / 'train-00000-of-00006.tfrecord')
  offsets = _record_offsets(second)
  corrupt = str(folder / 'train-00001-of-00006.tfrecord')
  shutil.copy(second, corrupt)
  _flip_byte(corrupt, offsets[1] + 12 + 50)  # Data of record 1.
  truncated = str(folder / 'train-00002-of-00006.tfrecord')
  shutil.copy(second, truncated)
  with open(truncated, 'r+b') as f:
    f.truncate(offsets[2] + 100)  # Inside record 2.
  (folder / 'train-00003-of-00006.tfrecord').write_bytes(b'')
  with tf.io.TFRecordWriter(str(folder / 'train-00004-of-00006.tfrecord')) as w:
    w.write(b'not a tf.Example')
  shutil.copy(converted_dataset.label_map_path, folder / 'train_label_map.json')
  return folder, {
      'train-00001-of-00006.tfrecord': (
          f' record 1 at byte offset {offsets[1]}: corrupted record data '
          '(CRC mismatch)'),
      'train-00002-of-00006.tfrecord': (
          f' record 2 at byte offset {offsets[2]}: truncated record: it needs '
          f'{offsets[3] - offsets[2]} bytes, the file ends 100 bytes after '
          'its start'),
      'train-00003-of-00006.tfrecord': ' empty (0 bytes)',
      'train-00004-of-00006.tfrecord': (
          ' record 0 at byte offset 0: not a MaskConver tf.Example'),
      'train_label_map.json': ' not a TFRecord file',
  }


def test_every_bad_file_gets_one_line(damaged_folder, capsys):
  folder, expected = damaged_folder
  code = check_records.main([f'--input_path={folder}/train*'])
  assert code == check_records.EXIT_BAD_FILES
  lines = capsys.readouterr().out.splitlines()
  bad_lines = [line for line in lines if line.startswith('BAD ')]
  assert len(bad_lines) == len(expected)
  for line, (name, error) in zip(sorted(bad_lines), sorted(expected.items())):
    assert line.startswith(f'BAD {folder / name}:{error}'), line
  # Good records: 3 in shard 0, 1 before the corrupt one, 2 before the cut.
  assert lines[-1] == 'checked 6 file(s), 6 good record(s): 5 bad file(s)'


def test_good_shards_pass(converted_dataset, capsys):
  code = check_records.main([f'--input_path={converted_dataset.train_pattern}'])
  assert code == check_records.EXIT_OK
  assert capsys.readouterr().out.splitlines() == [
      'checked 2 file(s), 6 good record(s): 0 bad file(s)']


def test_class_ids_beyond_num_classes_name_the_image(converted_dataset,
                                                     capsys):
  # Which image first has the last class (training id 6), from the JSON:
  # images go round-robin into the two shards in annotation order.
  dataset = converted_dataset.dataset.train
  data = json.load(open(dataset['panoptic_json']))
  labels = label_map_lib.LabelMap.load(converted_dataset.label_map_path)
  last = labels.num_classes - 1
  expected = {}
  for index, annotation in enumerate(data['annotations']):
    classes = {labels.train_id(s['category_id'])
               for s in annotation['segments_info']}
    shard = converted_dataset.train_shards[index % 2]
    if last in classes and shard not in expected:
      expected[shard] = (index // 2, annotation['image_id'])
  assert expected, 'the synthetic dataset should use its last class'
  code = check_records.main([f'--input_path={converted_dataset.train_pattern}',
                             f'--num_classes={last}'])
  assert code == check_records.EXIT_BAD_FILES
  out = capsys.readouterr().out
  for shard, (record, image_id) in expected.items():
    assert (f'BAD {shard}: record {record} at byte offset '
            f'{_record_offsets(shard)[record]}: image \'{image_id}\' has '
            f'segment class ids [{last}], outside [0, --num_classes={last})'
            in out), out


def test_module_exit_status(damaged_folder, converted_dataset):
  folder, _ = damaged_folder
  offset = _record_offsets(converted_dataset.train_shards[1])[1]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  command = [sys.executable, '-m', 'maskconver.dataloaders.check_records']
  bad = subprocess.run(command + [f'--input_path={folder}/train-00000-*,'
                                  f'{folder}/train-00001-*'],
                       capture_output=True, text=True, timeout=300, env=env,
                       check=False)
  assert bad.returncode == check_records.EXIT_BAD_FILES, bad.stderr
  assert bad.stdout.splitlines() == [
      f'BAD {folder}/train-00001-of-00006.tfrecord: record 1 at byte offset '
      f'{offset}: corrupted record data (CRC mismatch)',
      'checked 2 file(s), 4 good record(s): 1 bad file(s)']


def test_pattern_matching_nothing_is_a_usage_error(tmp_path, capsys):
  code = check_records.main([f'--input_path={tmp_path}/nope-*'])
  assert code == check_records.EXIT_USAGE
  assert capsys.readouterr().err == (
      f'error: --input_path={tmp_path}/nope-*: the pattern matches no file. '
      'Check the folder and the prefix (the converter writes '
      'PREFIX-00000-of-000NN.tfrecord).\n')
