"""The TFRecord files of an input: which files, checked, and read safely.

Model Garden's input reader globs `input_path` and hands each file to a
`dataset_fn`; `tf.data.TFRecordDataset` then fails on a bad file with
`DataLossError: corrupted record at N`, naming no file. This module:

* expands `input_path` as Model Garden does (a comma list of paths and
  `*` / `?` patterns) and refuses, naming the file and what to do, a pattern
  that matches nothing, a missing path, a folder, an empty (0 byte) file and
  a file that is not a TFRecord file, such as the converter's
  `<prefix>_label_map.json` matched by `<prefix>*`. Only the first record
  header of each file is read (12 bytes), so thousands of shards are checked
  in seconds;
* builds the `dataset_fn` that reads each file with
  `TFRecordDataset.ignore_errors`, counts the bytes of the records it
  returns and compares them, at the end of the file, with the file's size.
  A corrupted or truncated record leaves them short (the reader stops at
  it), so the end of that file either raises an error naming the file, the
  record index and the byte offset of the bad record, or, with
  `skip_corrupt_records`, prints a warning naming the same and skips the
  rest of the file.

TFRecord framing: each record is `uint64 length`, `uint32 masked CRC-32C of
the length`, `length` bytes of data, `uint32 masked CRC-32C of the data`,
all little-endian: 16 bytes around the data.
"""

import concurrent.futures
import os
import struct
import sys
from typing import Callable, Dict, List, Optional, Sequence, Union

import tensorflow as tf

# Bytes a TFRecord adds around the data of each record.
RECORD_OVERHEAD = 16
_HEADER_BYTES = 12
_CHECK_THREADS = 16
_CHECK_RECORDS_COMMAND = 'python -m maskconver.dataloaders.check_records'


class RecordFileError(ValueError):
  """An input file or pattern cannot be read as TFRecords.

  Attributes:
    path: the bad file, or None when the problem is a pattern.
    reason: what is wrong and what to do, without the flag and path.
  """

  def __init__(self, flag: str, path: Optional[str], reason: str):
    where = f'{flag}: {path}' if path else flag
    super().__init__(f'{where}: {reason}')
    self.path = path
    self.reason = reason


def _crc32c_table() -> List[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of a few bytes (pure Python, for headers)."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The masked CRC-32C that TFRecord stores."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def split_input_path(input_path: Union[str, Sequence[str]]) -> List[str]:
  """The paths and patterns of an `input_path`, as Model Garden splits it.

  Args:
    input_path: a path or pattern, a comma-separated list of them, or a list
      of such strings.

  Returns:
    The non-empty paths and patterns, stripped, in order.
  """
  if isinstance(input_path, str):
    input_path = [input_path]
  if not isinstance(input_path, (list, tuple)) or not all(
      isinstance(p, str) for p in input_path):
    raise RecordFileError(
        'input_path', None,
        f'must be a string or a list of strings, got {input_path!r}')
  return [part.strip() for path in input_path for part in path.split(',')
          if part.strip()]


def expand_input_path(input_path: Union[str, Sequence[str]],
                      flag: str = 'input_path') -> List[str]:
  """The files of an `input_path`, as Model Garden's input reader finds them.

  A part with `*` or `?` is a glob pattern (sorted matches); any other part
  is a file path. Unlike Model Garden, a missing path is reported here.

  Args:
    input_path: see `split_input_path`.
    flag: the config field, named in errors (e.g.
      'task.train_data.input_path').

  Returns:
    The files, in order, without duplicates.

  Raises:
    RecordFileError: naming the pattern that matches nothing or the path
      that does not exist, or if `input_path` is empty.
  """
  parts = split_input_path(input_path)
  if not parts:
    raise RecordFileError(flag, None, 'empty: set it to the TFRecord shards, '
                          'e.g. records/train-*-of-*.tfrecord')
  files = []
  for part in parts:
    if '*' in part or '?' in part:
      matched = sorted(tf.io.gfile.glob(part))
      if not matched:
        raise RecordFileError(
            f'{flag}={part}', None,
            'the pattern matches no file. Check the folder and the prefix '
            '(the converter writes PREFIX-00000-of-000NN.tfrecord).')
      files.extend(matched)
    else:
      if not tf.io.gfile.exists(part):
        raise RecordFileError(flag, part, 'no such file')
      files.append(part)
  return list(dict.fromkeys(files))


def _sibling_field(flag: str, field: str) -> str:
  """'task.train_data.input_path', 'x' -> 'task.train_data.x'."""
  return f'{flag.rsplit(".", 1)[0]}.{field}' if '.' in flag else field


def _hint_for(path: str, flag: str) -> str:
  """What to do about a file that is not a TFRecord file."""
  if path.endswith('_label_map.json'):
    return (' It is the converter\'s label map, which sits beside the shards: '
            'make the pattern match only the shards, e.g. '
            f'{path[:-len("_label_map.json")]}-*-of-*.tfrecord (and give the '
            f'label map as {_sibling_field(flag, "label_map_path")}).')
  return (' Make the pattern match only TFRecord shards (the converter '
          'writes PREFIX-00000-of-000NN.tfrecord).')


def check_record_file(path: str, flag: str = 'input_path') -> int:
  """Checks that a file is a non-empty TFRecord file; returns its size.

  Reads only the first record header: the file must hold at least one
  record whose length is protected by a valid CRC and fits in the file.

  Args:
    path: the file.
    flag: the config field, named in errors.

  Returns:
    The file size in bytes.

  Raises:
    RecordFileError: naming the file, what is wrong and what to do.
  """
  if tf.io.gfile.isdir(path):
    raise RecordFileError(flag, path, 'a folder, not a TFRecord file; give a '
                          'pattern of its shards, e.g. '
                          f'{os.path.join(path, "*.tfrecord")}')
  try:
    size = tf.io.gfile.stat(path).length
    with tf.io.gfile.GFile(path, 'rb') as f:
      header = f.read(_HEADER_BYTES)
  except tf.errors.OpError as e:
    raise RecordFileError(flag, path, f'cannot be read ({e.message})') from e
  if size == 0:
    raise RecordFileError(
        flag, path, 'empty (0 bytes): a shard with no record, or one whose '
        'writing never finished. Re-create it (the converter writes no empty '
        'shard) or leave it out of the pattern.')
  if len(header) < _HEADER_BYTES:
    raise RecordFileError(
        flag, path, f'not a TFRecord file ({size} bytes, shorter than a '
        f'record header).{_hint_for(path, flag)}')
  length, = struct.unpack('<Q', header[:8])
  stored_crc, = struct.unpack('<I', header[8:])
  if stored_crc != masked_crc32c(header[:8]):
    raise RecordFileError(
        flag, path, 'not a TFRecord file (its first 12 bytes are not a '
        f'TFRecord header).{_hint_for(path, flag)}')
  if _HEADER_BYTES + length + 4 > size:
    raise RecordFileError(
        flag, path, f'truncated: its first record needs '
        f'{length + RECORD_OVERHEAD} bytes but the file has {size}. Re-create '
        'it or leave it out of the pattern.')
  return size


def checked_record_files(input_path: Union[str, Sequence[str]],
                         flag: str = 'input_path') -> Dict[str, int]:
  """Expands `input_path` and checks every file (`check_record_file`).

  Args:
    input_path: see `split_input_path`.
    flag: the config field, named in errors.

  Returns:
    {file: size in bytes}, in the order of `expand_input_path`.

  Raises:
    RecordFileError: for the first bad pattern or file (in order).
  """
  files = expand_input_path(input_path, flag)
  with concurrent.futures.ThreadPoolExecutor(
      min(_CHECK_THREADS, len(files))) as pool:
    sizes = list(pool.map(lambda f: check_record_file(f, flag), files))
  return dict(zip(files, sizes))


def make_dataset_fn(file_sizes: Dict[str, int], flag: str,
                    skip_corrupt_records: bool = False
                    ) -> Callable[[Union[tf.Tensor, Sequence[str]]],
                                  tf.data.Dataset]:
  """The `dataset_fn` of Model Garden's input reader over checked files.

  Each file is read with `ignore_errors` (TensorFlow's reader then stops at
  the first corrupted or truncated record of the file); the bytes of the
  records read (data + 16 each) are summed and, after the last record,
  compared with the file size. Short means a bad record at that offset.

  Args:
    file_sizes: {file: size in bytes} of every file the reader may pass
      (from `checked_record_files`).
    flag: the config field of the input (named in errors).
    skip_corrupt_records: on a corrupted or truncated record, print a
      warning naming the file, record and offset and skip the rest of the
      file, instead of failing.

  Returns:
    A function of one file (string [] tensor, as Model Garden's interleave
    passes it) or of a list of files (read one after the other), returning
    the dataset of their serialized records.
  """
  names = tf.constant(list(file_sizes), tf.string)
  sizes = tf.constant(list(file_sizes.values()), tf.int64)
  skip_field = _sibling_field(flag, 'skip_corrupt_records')

  def check_file_end(filename, index, offset):
    """At the end marker: the bytes read must be the whole file."""
    expected = tf.reduce_max(tf.where(tf.equal(names, filename), sizes, -1))
    complete = tf.equal(offset, expected)
    where = tf.strings.join([
        filename, ': corrupted or truncated record ',
        tf.strings.as_string(index), ' at byte offset ',
        tf.strings.as_string(offset), ' (the file has ',
        tf.strings.as_string(expected), ' bytes)'])
    if skip_corrupt_records:
      def warn():
        tf.print(tf.strings.join([
            'WARNING: ', where, '; skipped the bad record and the rest of '
            'the file (', tf.strings.as_string(expected - offset),
            f' bytes) as {skip_field} is on']), output_stream=sys.stderr)
        return tf.constant(True)
      return tf.cond(complete, lambda: tf.constant(True), warn)
    message = tf.strings.join([
        where, f'. List every bad file with `{_CHECK_RECORDS_COMMAND} '
        '--input_path=...`, then re-create or remove it (training resumes '
        f'from the last checkpoint with the same command), or set '
        f'{skip_field}=true to skip the rest of such files.'])
    with tf.control_dependencies([tf.debugging.Assert(complete, [message])]):
      return tf.identity(complete)

  def read_file(filename: tf.Tensor) -> tf.data.Dataset:
    records = tf.data.TFRecordDataset(filename).ignore_errors(
        log_warning=True)
    # (record, is the end marker), without a map (each map costs a function
    # call per record).
    items = tf.data.Dataset.zip(
        (records, tf.data.Dataset.from_tensors(False).repeat()))
    items = items.concatenate(tf.data.Dataset.from_tensors(
        (tf.constant(''), tf.constant(True))))

    def count(state, item):
      index, offset = state
      record, end = item
      size = tf.cast(tf.strings.length(record), tf.int64) + RECORD_OVERHEAD
      return (index + 1, offset + size), (record, end, index, offset)

    items = items.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
                       count)

    def keep(record, end, index, offset):
      del record
      # The end marker is dropped once the file has been checked.
      return tf.cond(
          end, lambda: tf.logical_and(
              check_file_end(filename, index, offset), False),
          lambda: tf.constant(True))

    return items.filter(keep).map(lambda record, end, index, offset: record)

  def dataset_fn(filenames: Union[tf.Tensor, Sequence[str]]
                 ) -> tf.data.Dataset:
    if isinstance(filenames, (list, tuple)):
      return tf.data.Dataset.from_tensor_slices(list(filenames)).flat_map(
          read_file)
    return read_file(filenames)

  return dataset_fn


def label_map_beside(files: Sequence[str]) -> Optional[str]:
  """The converter's label map next to converter-named shards, if any.

  Args:
    files: shard paths `PREFIX-00000-of-000NN.tfrecord`.

  Returns:
    `PREFIX_label_map.json` if every file has the same PREFIX and that file
    exists, else None.
  """
  prefixes = set()
  for path in files:
    stem = path[:-len('.tfrecord')] if path.endswith('.tfrecord') else None
    parts = stem.rsplit('-', 3) if stem else []
    if len(parts) != 4 or parts[2] != 'of' or not (
        parts[1].isdigit() and parts[3].isdigit()):
      return None
    prefixes.add(parts[0])
  if len(prefixes) != 1:
    return None
  candidate = f'{prefixes.pop()}_label_map.json'
  return candidate if tf.io.gfile.exists(candidate) else None
