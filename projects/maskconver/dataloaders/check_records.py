r"""Reads every record of TFRecord shards and lists the bad files.

  python -m maskconver.dataloaders.check_records --input_path='records/train-*' \
      [--num_classes=133]

`--input_path` takes what `task.train_data.input_path` takes (a comma list
of paths and `*` / `?` patterns). Every file is read to its end; a file is
bad when it is not a TFRecord file (e.g. the converter's label map matched
by the pattern), is empty, has a corrupted or truncated record, or holds a
record that is not a MaskConver tf.Example (the converter's features), or,
with `--num_classes`, one whose segment class ids are not all below it.
Prints one line per bad file (file, record index and byte offset, error),
then a summary. Exit status: 0 if every file is good, 1 if any is bad, 2 if
the arguments match no file.
"""

import dataclasses
import struct
import sys
from typing import List, Optional, Sequence, Tuple

from absl import flags
import numpy as np
import tensorflow as tf

from maskconver import keys
from maskconver.common import flags as command_flags
from maskconver.dataloaders import record_files
from maskconver.dataloaders import tf_example_decoder

EXIT_OK = 0
EXIT_BAD_FILES = 1
EXIT_USAGE = 2
_BATCH = 64
# The features the decoder requires, with their types.
_FEATURES = tf_example_decoder.FEATURE_SPEC


@dataclasses.dataclass
class FileReport:
  """What reading one file found.

  Attributes:
    path: the file.
    num_records: records read before the first problem (all if none).
    error: the problem, '' for a good file.
    record_index: index of the bad record, None if the file as a whole is
      bad (not a TFRecord file, empty).
    offset: byte offset of the bad record, None likewise.
  """
  path: str
  num_records: int = 0
  error: str = ''
  record_index: Optional[int] = None
  offset: Optional[int] = None

  @property
  def ok(self) -> bool:
    return not self.error

  def line(self) -> str:
    where = ''
    if self.record_index is not None:
      where = (f' record {self.record_index} at byte offset '
               f'{self.offset}:')
    return f'BAD {self.path}:{where} {self.error}'


def _diagnose(path: str, offset: int, size: int) -> str:
  """Why the reader stopped at `offset` of a file of `size` bytes."""
  with tf.io.gfile.GFile(path, 'rb') as f:
    f.seek(offset)
    header = f.read(12)
  if len(header) < 12:
    return (f'truncated: the file ends {size - offset} byte(s) into a record '
            'header')
  length, = struct.unpack('<Q', header[:8])
  if struct.unpack('<I', header[8:])[0] != record_files.masked_crc32c(
      header[:8]):
    return 'corrupted record header (length CRC mismatch)'
  needed = length + record_files.RECORD_OVERHEAD
  if offset + needed > size:
    return (f'truncated record: it needs {needed} bytes, the file ends '
            f'{size - offset} bytes after its start')
  return 'corrupted record data (CRC mismatch)'


def _first_bad_example(batch: np.ndarray, num_classes: Optional[int]
                       ) -> Optional[Tuple[int, str]]:
  """(index in batch, error) of the first bad record of a batch, or None.

  Args:
    batch: object [n], serialized records.
    num_classes: if set, class ids outside [0, num_classes) are bad too.
  """
  try:
    parsed = tf.io.parse_example(batch, _FEATURES)
  except tf.errors.InvalidArgumentError:
    parsed = None
  if parsed is None:
    for index, record in enumerate(batch):
      try:
        tf.io.parse_single_example(record, _FEATURES)
      except tf.errors.InvalidArgumentError as e:
        message = e.message.splitlines()[0]
        return index, f'not a MaskConver tf.Example ({message})'
    return None
  if num_classes is None:
    return None
  classes = parsed[keys.SEGMENT_CLASSES]
  values = classes.values.numpy()
  rows = classes.indices.numpy()[:, 0]
  bad_rows = rows[(values < 0) | (values >= num_classes)]
  if not bad_rows.size:
    return None
  index = int(bad_rows.min())
  row_values = values[rows == index]
  bad = sorted(set(row_values[(row_values < 0) |
                              (row_values >= num_classes)].tolist()))
  source_id = parsed[keys.IMAGE_SOURCE_ID].numpy()[index].decode(
      'utf-8', 'replace')
  return index, (f'image {source_id!r} has segment class ids {bad}, outside '
                 f'[0, --num_classes={num_classes})')


def check_file(path: str, num_classes: Optional[int] = None) -> FileReport:
  """Reads one file to its end; returns its report."""
  report = FileReport(path)
  try:
    size = record_files.check_record_file(path, flag='--input_path')
  except record_files.RecordFileError as e:
    report.error = e.reason
    return report
  offset = 0
  records = tf.data.TFRecordDataset(path).ignore_errors().batch(_BATCH)
  for batch in records.as_numpy_iterator():
    bad = _first_bad_example(batch, num_classes)
    stop = len(batch) if bad is None else bad[0]
    lengths = [len(r) + record_files.RECORD_OVERHEAD for r in batch[:stop]]
    if bad is not None:
      report.record_index = report.num_records + stop
      report.offset = offset + sum(lengths)
      report.num_records = report.record_index
      report.error = bad[1]
      return report
    report.num_records += len(batch)
    offset += sum(lengths)
  if offset != size:
    report.record_index = report.num_records
    report.offset = offset
    report.error = _diagnose(path, offset, size)
  return report


def check_records(input_path: str, num_classes: Optional[int] = None
                  ) -> List[FileReport]:
  """Reports on every file of `input_path` (see the module docstring).

  Raises:
    RecordFileError: if a pattern matches no file or a path does not exist.
  """
  files = record_files.expand_input_path(input_path, flag='--input_path')
  return [check_file(path, num_classes) for path in files]


def define_flags(values: command_flags.FlagValues) -> None:
  """Defines the command's flags on `values`."""
  flags.DEFINE_string('input_path', None,
                      'Files: comma list of paths and glob patterns.',
                      required=True, flag_values=values)
  flags.DEFINE_integer('num_classes', None,
                       'Also report records with segment class ids outside '
                       '[0, num_classes).', lower_bound=1, flag_values=values)


def _check(values: command_flags.FlagValues) -> int:
  try:
    reports = check_records(values.input_path, values.num_classes)
  except record_files.RecordFileError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  bad = [r for r in reports if not r.ok]
  for report in bad:
    print(report.line())
  num_records = sum(r.num_records for r in reports)
  print(f'checked {len(reports)} file(s), {num_records} good record(s): '
        f'{len(bad)} bad file(s)')
  return EXIT_BAD_FILES if bad else EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Checks with `argv` (default: the command line); exit status."""
  return command_flags.run_with_flags(
      _check, define_flags, sys.argv[1:] if argv is None else argv,
      'maskconver-check-records')


def run() -> None:
  """Console entry point (`maskconver-check-records`)."""
  command_flags.run_flag_command(_check, define_flags)


if __name__ == '__main__':
  run()
