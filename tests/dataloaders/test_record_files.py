"""Input files of training and evaluation: checked, named when bad.

Files are hand-written TFRecords of known record sizes (each record occupies
its data + 16 bytes), so the record index and byte offset of a corrupted
record are known without the code under test. The task-level tests read the
session's synthetic records (tests/conftest.py) through
`MaskConverTask.build_inputs`, with no model built.
"""

import os
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf

from official.core import exp_factory
from official.core import task_factory

from maskconver import keys
from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.data import label_map as label_map_lib
from maskconver.dataloaders import record_files

FIELD = 'task.train_data.input_path'
# Five records of 10, 20, 30, 40, 50 bytes: offsets 0, 26, 62, 108, 164;
# 230 bytes in all.
DATA = [bytes([65 + i]) * (10 * (i + 1)) for i in range(5)]
OFFSETS = [0, 26, 62, 108, 164]
SIZE = 230


def _write(path, records=DATA):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      writer.write(record)
  return str(path)


def _corrupt(path, position):
  data = bytearray(open(path, 'rb').read())
  data[position] ^= 0xFF
  open(path, 'wb').write(bytes(data))


def _read(dataset):
  return [bytes(r) for r in dataset.as_numpy_iterator()]


def test_crc32c_matches_the_standard_and_tensorflows_writer(tmp_path):
  # The CRC-32C check value of '123456789' (RFC 3720, appendix B.4).
  assert record_files.crc32c(b'123456789') == 0xE3069283
  # TensorFlow's writer framed the first record: length 10, then its
  # masked CRC.
  header = open(_write(tmp_path / 'a.tfrecord'), 'rb').read(12)
  assert struct.unpack('<Q', header[:8])[0] == 10
  assert struct.unpack('<I', header[8:])[0] == record_files.masked_crc32c(
      header[:8])


def test_input_path_expands_like_model_garden(tmp_path):
  for name in ('t-1.tfrecord', 't-0.tfrecord', 'v-0.tfrecord'):
    _write(tmp_path / name)
  files = record_files.expand_input_path(
      f'{tmp_path}/t-*, {tmp_path}/v-0.tfrecord,{tmp_path}/t-0.tfrecord', FIELD)
  assert [os.path.basename(f) for f in files] == [
      't-0.tfrecord', 't-1.tfrecord', 'v-0.tfrecord']
  sizes = record_files.checked_record_files([f'{tmp_path}/t-?.tfrecord'],
                                            FIELD)
  assert list(sizes.values()) == [SIZE, SIZE]


@pytest.mark.parametrize('input_path, message', [
    ('{d}/x-*', r'task.train_data.input_path={d}/x-\*: the pattern matches no '
     r'file'),
    ('{d}/missing.tfrecord', r'{d}/missing.tfrecord: no such file'),
    (' , ', r'task.train_data.input_path: empty'),
])
def test_patterns_and_paths_that_find_nothing(tmp_path, input_path, message):
  with pytest.raises(record_files.RecordFileError,
                     match=message.format(d=tmp_path)):
    record_files.expand_input_path(input_path.format(d=tmp_path), FIELD)


def test_label_map_matched_by_the_prefix_glob_is_refused(tmp_path):
  _write(tmp_path / 'train-00000-of-00001.tfrecord')
  label_map_lib.LabelMap.from_coco_categories(
      [{'id': 1, 'name': 'a', 'isthing': 1}]).save(
          str(tmp_path / 'train_label_map.json'))
  with pytest.raises(record_files.RecordFileError) as error:
    record_files.checked_record_files(f'{tmp_path}/train*', FIELD)
  message = str(error.value)
  assert message.startswith(
      f'{FIELD}: {tmp_path}/train_label_map.json: not a TFRecord file')
  # What to do: a pattern of the shards only, and where the label map goes.
  assert f'{tmp_path}/train-*-of-*.tfrecord' in message
  assert 'task.train_data.label_map_path' in message


@pytest.mark.parametrize('content, reason', [
    (b'', 'empty (0 bytes)'),
    (b'{"a": 1}', 'not a TFRecord file (8 bytes, shorter than a record'),
    (b'\x89PNG\r\n\x1a\n' + b'\0' * 100, 'not a TFRecord file (its first 12'),
])
def test_files_that_are_not_record_shards(tmp_path, content, reason):
  path = tmp_path / 'shard.tfrecord'
  path.write_bytes(content)
  with pytest.raises(record_files.RecordFileError) as error:
    record_files.check_record_file(str(path), FIELD)
  assert error.value.path == str(path)
  assert error.value.reason.startswith(reason)


def test_folder_and_truncated_first_record(tmp_path):
  with pytest.raises(record_files.RecordFileError, match='a folder'):
    record_files.check_record_file(str(tmp_path), FIELD)
  path = _write(tmp_path / 'cut.tfrecord')
  with open(path, 'r+b') as f:
    f.truncate(20)  # Record 0 needs 26 bytes.
  with pytest.raises(record_files.RecordFileError,
                     match='truncated: its first record needs 26 bytes but '
                     'the file has 20'):
    record_files.check_record_file(path, FIELD)


def _interleaved(sizes, skip):
  """Files read as Model Garden's reader reads several: one per tensor."""
  dataset_fn = record_files.make_dataset_fn(sizes, FIELD, skip)
  return tf.data.Dataset.from_tensor_slices(list(sizes)).interleave(
      dataset_fn, cycle_length=1)


def test_good_files_read_as_tfrecorddataset_reads_them(tmp_path):
  paths = [_write(tmp_path / 'a.tfrecord'),
           _write(tmp_path / 'b.tfrecord', DATA[::-1])]
  sizes = record_files.checked_record_files(','.join(paths), FIELD)
  expected = _read(tf.data.TFRecordDataset(paths))
  assert _read(_interleaved(sizes, skip=False)) == expected
  # A list of files (Model Garden passes one when there is a single file).
  dataset_fn = record_files.make_dataset_fn(sizes, FIELD)
  assert _read(dataset_fn(paths)) == expected


@pytest.mark.parametrize('damage, index', [
    ('data', 2),      # A flipped byte in the data of record 2.
    ('length', 3),    # A flipped byte in the length of record 3.
    ('truncate', 4),  # The file ends inside record 4.
])
def test_corrupt_record_stops_naming_file_record_and_offset(tmp_path, damage,
                                                            index):
  good = _write(tmp_path / 'good.tfrecord')
  bad = _write(tmp_path / 'bad.tfrecord')
  if damage == 'data':
    _corrupt(bad, OFFSETS[index] + 12 + 5)
  elif damage == 'length':
    _corrupt(bad, OFFSETS[index] + 1)
  else:
    with open(bad, 'r+b') as f:
      f.truncate(OFFSETS[index] + 30)
  sizes = record_files.checked_record_files([good, bad], FIELD)
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    _read(_interleaved(sizes, skip=False))
  expected_size = SIZE if damage != 'truncate' else OFFSETS[index] + 30
  assert (f'{bad}: corrupted or truncated record {index} at byte offset '
          f'{OFFSETS[index]} (the file has {expected_size} bytes)'
          in error.value.message)
  assert 'maskconver.dataloaders.check_records' in error.value.message
  assert 'task.train_data.skip_corrupt_records=true' in error.value.message


def test_skip_mode_reads_the_rest_and_reports_what_it_skipped(tmp_path,
                                                              capfd):
  good = _write(tmp_path / 'good.tfrecord')
  bad = _write(tmp_path / 'bad.tfrecord')
  _corrupt(bad, OFFSETS[3] + 12)
  sizes = record_files.checked_record_files([bad, good], FIELD)
  records = _read(_interleaved(sizes, skip=True))
  # Records 0-2 of the bad file, then every record of the good one.
  assert records == DATA[:3] + DATA
  err = capfd.readouterr().err
  assert (f'WARNING: {bad}: corrupted or truncated record 3 at byte offset '
          f'108 (the file has 230 bytes); skipped the bad record and the '
          f'rest of the file (122 bytes) as '
          f'task.train_data.skip_corrupt_records is on') in err
  assert err.count('WARNING: ') == 1


def test_label_map_beside_converter_shards(tmp_path):
  shards = [str(tmp_path / f'val-0000{i}-of-00002.tfrecord') for i in (0, 1)]
  assert record_files.label_map_beside(shards) is None
  (tmp_path / 'val_label_map.json').write_text('{}')
  assert record_files.label_map_beside(shards) == str(
      tmp_path / 'val_label_map.json')
  assert record_files.label_map_beside(
      shards + [str(tmp_path / 'train-00000-of-00001.tfrecord')]) is None
  assert record_files.label_map_beside([str(tmp_path / 'x.tfrecord')]) is None


# ------------------------------------------------- through the task ---


def _task(train_path, val_path, overrides=None):
  params = exp_factory.get_exp_config('maskconver_synthetic')
  params.override({'task': {
      'model': {'input_size': [64, 64, 3]},
      'train_data': {'input_path': train_path, 'global_batch_size': 2},
      'validation_data': {
          'input_path': val_path, 'global_batch_size': 2,
          'parser': {'eval_groundtruth_padded_size': [64, 64]}},
  }}, is_strict=True)
  if overrides:
    params.override(overrides, is_strict=True)
  return task_factory.get_task(params.task), params


def test_task_refuses_the_label_map_glob_before_reading(training_records):
  prefix = training_records.train_pattern.split('-*')[0]
  task, params = _task(prefix + '*', training_records.val_pattern)
  with pytest.raises(record_files.RecordFileError,
                     match=f'{FIELD}: {prefix}_label_map.json: not a '
                     'TFRecord file'):
    task.build_inputs(params.task.train_data)


def _copy_shard(records, tmp_path, name):
  shard = str(tmp_path / name)
  shutil.copyfile(records.val_pattern.replace('*', '00000'), shard)
  return shard


def test_task_names_the_corrupt_shard_and_can_skip_it(training_records,
                                                      tmp_path, capfd):
  good = _copy_shard(training_records, tmp_path, 'a.tfrecord')
  bad = _copy_shard(training_records, tmp_path, 'b.tfrecord')
  with open(bad, 'rb') as f:
    length, = struct.unpack('<Q', f.read(8))
  # A flipped byte in the data of the second record (the first is
  # `length` + 16 bytes).
  _corrupt(bad, length + 16 + 12 + 100)
  task, params = _task(training_records.train_pattern, f'{good},{bad}')
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f'{bad}: corrupted or truncated record 1 at byte '
                     f'offset {length + 16}'):
    for _ in task.build_inputs(params.task.validation_data):
      pass
  task, params = _task(training_records.train_pattern, f'{good},{bad}',
                       {'task': {'validation_data': {
                           'skip_corrupt_records': True}}})
  num_images = 0
  for _, labels in task.build_inputs(params.task.validation_data):
    # Padded examples of the last batch have an original height of 0.
    info = labels[keys.GROUNDTRUTHS][keys.IMAGE_INFO].numpy()
    num_images += int(np.sum(info[:, 0, 0] > 0))
  # 4 images from the good copy, the first one from the bad copy.
  assert num_images == training_records.num_val + 1
  assert (f'WARNING: {bad}: corrupted or truncated record 1 at byte offset '
          f'{length + 16}' in capfd.readouterr().err)


def test_task_refuses_an_empty_shard(training_records, tmp_path):
  empty = tmp_path / 'train-00001-of-00002.tfrecord'
  empty.write_bytes(b'')
  task, params = _task(f'{training_records.train_pattern},{empty}',
                       training_records.val_pattern)
  with pytest.raises(record_files.RecordFileError,
                     match=f'{empty}: empty'):
    task.build_inputs(params.task.train_data)


def test_pattern_matching_nothing_is_named(training_records, tmp_path):
  task, params = _task(training_records.train_pattern,
                       str(tmp_path / 'val-*'))
  with pytest.raises(record_files.RecordFileError,
                     match=r'task.validation_data.input_path=.*val-\*: the '
                     'pattern matches no file'):
    task.build_inputs(params.task.validation_data)
