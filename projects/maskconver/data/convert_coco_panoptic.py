"""Converts a COCO panoptic dataset to sharded TFRecords and a label map.

  python -m maskconver.data.convert_coco_panoptic \
      --image_dir=coco/val2017 \
      --panoptic_json=coco/annotations/panoptic_val2017.json \
      --panoptic_masks_dir=coco/annotations/panoptic_val2017 \
      --output_prefix=records/val --num_shards=8

writes `records/val-00000-of-00008.tfrecord` ... and
`records/val_label_map.json`. Each record holds one image: its bytes as
stored (JPEG or PNG), the COCO panoptic PNG bytes, and per segment its id,
training class id (see `maskconver.keys`) and crowd flag; the feature keys are
the `tf.Example features` of `maskconver.keys`. Crowd segments are kept and
flagged, void pixels stay void, and the number of segments per image is not
limited.

Every image is checked first (see `maskconver.data.check_dataset`; an image
or PNG `file_name` leading outside its folder is a bad image). By default
the first bad image stops the conversion with a non-zero exit and a message
naming its files; `--skip_bad_images` leaves bad images out and reports each.
Shards are written under a hidden temporary directory and renamed into place
only once all of them are complete, so an interrupted or failed run leaves no
file that looks like a finished shard.
"""

import contextlib
import dataclasses
import glob
import os
import shutil
import sys
import tempfile
import time
from typing import List, Optional, Sequence

from absl import flags
import tensorflow as tf
import tqdm

from official.vision.data import tfrecord_lib

from maskconver import keys
from maskconver.common import flags as command_flags
from maskconver.data import check_dataset
from maskconver.data import coco_panoptic_io
from maskconver.data import label_map as label_map_lib


class ConversionError(coco_panoptic_io.PanopticFormatError):
  """The dataset has problems and bad images are not being skipped."""

  def __init__(self, message: str, problems: Sequence[check_dataset.Problem]):
    super().__init__(message)
    self.problems = list(problems)


@dataclasses.dataclass
class ConversionResult:
  """What a conversion wrote.

  Attributes:
    shard_paths: the TFRecord shards, in shard order.
    label_map_path: the label map JSON.
    num_images: images in the dataset.
    num_written: records written.
    skipped: the problems of every skipped image.
    skipped_images: image files that were skipped.
  """
  shard_paths: List[str]
  label_map_path: str
  num_images: int
  num_written: int
  skipped: List[check_dataset.Problem]
  skipped_images: List[str]


def shard_paths(output_prefix: str, num_shards: int) -> List[str]:
  """`PREFIX-00000-of-0000N.tfrecord` for every shard."""
  return [f'{output_prefix}-{i:05d}-of-{num_shards:05d}.tfrecord'
          for i in range(num_shards)]


def label_map_path(output_prefix: str) -> str:
  return f'{output_prefix}_label_map.json'


def build_example(checked: check_dataset.CheckedImage,
                  label_map: label_map_lib.LabelMap) -> tf.train.Example:
  """Builds the record of one checked image (which must carry its bytes)."""
  entry = checked.entry
  segments = entry.segments
  feature = tfrecord_lib.convert_to_feature
  features = {
      keys.IMAGE_ENCODED: feature(checked.image_bytes, 'bytes'),
      keys.IMAGE_FORMAT: feature(checked.image_format.encode('utf-8'),
                                 'bytes'),
      keys.IMAGE_HEIGHT: feature(checked.height, 'int64'),
      keys.IMAGE_WIDTH: feature(checked.width, 'int64'),
      keys.IMAGE_SOURCE_ID: feature(str(entry.image_id).encode('utf-8'),
                                    'bytes'),
      keys.IMAGE_FILENAME: feature(entry.file_name.encode('utf-8'), 'bytes'),
      keys.PANOPTIC_ENCODED: feature(checked.png_bytes, 'bytes'),
      keys.PANOPTIC_FILENAME: feature(entry.png_file_name.encode('utf-8'),
                                      'bytes'),
      keys.SEGMENT_IDS: feature([int(s['id']) for s in segments],
                                'int64_list'),
      keys.SEGMENT_CLASSES: feature(
          [label_map.train_id(s['category_id']) for s in segments],
          'int64_list'),
      keys.SEGMENT_IS_CROWD: feature(
          [int(bool(s.get('iscrowd', 0))) for s in segments], 'int64_list'),
  }
  return tf.train.Example(features=tf.train.Features(feature=features))


def _report(message: str) -> None:
  tqdm.tqdm.write(message, file=sys.stderr)


def _check_arguments(image_dir, panoptic_json, panoptic_masks_dir,
                     output_prefix, num_shards):
  for flag, path in (('--image_dir', image_dir),
                     ('--panoptic_masks_dir', panoptic_masks_dir)):
    if not os.path.isdir(path):
      raise coco_panoptic_io.PanopticFormatError(
          f'{flag}={path}: not a directory')
  if not os.path.isfile(panoptic_json):
    raise coco_panoptic_io.PanopticFormatError(
        f'--panoptic_json={panoptic_json}: file not found')
  if num_shards < 1:
    raise ValueError(f'--num_shards must be at least 1, got {num_shards}')
  if not os.path.basename(output_prefix):
    raise ValueError(f'--output_prefix={output_prefix!r} must end in a file '
                     'name prefix, not a directory')


def convert(image_dir: str, panoptic_json: str, panoptic_masks_dir: str,
            output_prefix: str, num_shards: int = 1, num_workers: int = 0,
            skip_bad_images: bool = False,
            progress: bool = True) -> ConversionResult:
  """Converts a COCO panoptic dataset to TFRecord shards and a label map.

  Args:
    image_dir: directory of the images.
    panoptic_json: the COCO panoptic JSON.
    panoptic_masks_dir: directory of the panoptic PNGs.
    output_prefix: path prefix of the shards and the label map.
    num_shards: number of shards; images go round-robin in JSON order. At
      most the number of images written: no shard is left empty.
    num_workers: worker processes that read and check images; 0 reads them
      in this process. The output does not depend on it.
    skip_bad_images: leave bad images out (reporting each) instead of
      stopping at the first one.
    progress: whether to show a progress bar.

  Returns:
    What was written.

  Raises:
    ConversionError: an image is bad and `skip_bad_images` is False, or no
      image is left to write. No shard is left behind.
    PanopticFormatError: the JSON or an argument path is unusable.
  """
  _check_arguments(image_dir, panoptic_json, panoptic_masks_dir,
                   output_prefix, num_shards)
  index = check_dataset.load_index(image_dir, panoptic_json,
                                   panoptic_masks_dir)
  category_ids = set(index.label_map.coco_ids)
  if num_shards > len(index.entries):
    raise ConversionError(
        f'--num_shards={num_shards} but {panoptic_json} has '
        f'{len(index.entries)} image(s): some shards would be empty, which '
        'training refuses. Use --num_shards <= the number of images.', [])
  final_paths = shard_paths(output_prefix, num_shards)
  output_dir = os.path.dirname(os.path.abspath(output_prefix))
  os.makedirs(output_dir, exist_ok=True)
  stale = sorted(set(glob.glob(f'{glob.escape(output_prefix)}-?????-of-?????'
                               '.tfrecord')) - set(final_paths))
  if stale:
    _report(f'warning: {len(stale)} shard(s) of another conversion share the '
            f'prefix {output_prefix} (e.g. {stale[0]}); remove them before '
            'reading PREFIX-*')
  tmp_dir = tempfile.mkdtemp(
      prefix=f'.{os.path.basename(output_prefix)}.incomplete-', dir=output_dir)
  tmp_paths = [os.path.join(tmp_dir, os.path.basename(p)) for p in final_paths]
  skipped, skipped_images = [], []
  num_written = 0
  writers = []
  try:
    writers = [tf.io.TFRecordWriter(p) for p in tmp_paths]
    checked_images = check_dataset.iter_checked(
        index.entries, category_ids, keep_bytes=True, num_workers=num_workers,
        progress=progress, description='converting')
    with contextlib.closing(checked_images):
      for checked in checked_images:
        if checked.problems:
          if not skip_bad_images:
            raise ConversionError(
                '\n'.join(str(p) for p in checked.problems) +
                '\nNo shard was written. Fix the files, or pass '
                '--skip_bad_images to leave such images out (python -m '
                'maskconver.data.check_dataset lists every problem).',
                checked.problems)
          for problem in checked.problems:
            _report(f'skipping: {problem}')
          skipped.extend(checked.problems)
          skipped_images.append(checked.entry.image_path)
          continue
        example = build_example(checked, index.label_map)
        writers[num_written % num_shards].write(example.SerializeToString())
        num_written += 1
    for writer in writers:
      writer.close()
    if num_written == 0:
      raise ConversionError(
          f'{panoptic_json}: no image left to convert '
          f'({len(skipped_images)} skipped); no shard was written', skipped)
    if num_written < num_shards:
      raise ConversionError(
          f'{panoptic_json}: {num_written} image(s) left after skipping '
          f'{len(skipped_images)}, fewer than --num_shards={num_shards}: some '
          'shards would be empty, which training refuses. No shard was '
          f'written; use --num_shards <= {num_written}.', skipped)
    for tmp_path, final_path in zip(tmp_paths, final_paths):
      os.replace(tmp_path, final_path)
    index.label_map.save(label_map_path(output_prefix))
  finally:
    for writer in writers:
      writer.close()
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return ConversionResult(
      shard_paths=final_paths, label_map_path=label_map_path(output_prefix),
      num_images=len(index.entries), num_written=num_written,
      skipped=skipped, skipped_images=skipped_images)


def define_flags(values: command_flags.FlagValues) -> None:
  """Defines the command's flags on `values`."""
  flags.DEFINE_string('image_dir', None, 'Folder of the dataset images.',
                      required=True, flag_values=values)
  flags.DEFINE_string('panoptic_json', None,
                      'COCO panoptic JSON (images, annotations, categories).',
                      required=True, flag_values=values)
  flags.DEFINE_string('panoptic_masks_dir', None,
                      'Folder of the panoptic PNGs named in the JSON.',
                      required=True, flag_values=values)
  flags.DEFINE_string('output_prefix', None,
                      'Shards are written as <prefix>-0000i-of-000NN.tfrecord '
                      'beside <prefix>_label_map.json.',
                      required=True, flag_values=values)
  flags.DEFINE_integer('num_shards', 1, 'Number of TFRecord shards.',
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer('num_workers', check_dataset.default_num_workers(),
                       'Processes encoding the examples; 0: encode them in '
                       'this process.', lower_bound=0,
                       flag_values=values)
  flags.DEFINE_boolean('skip_bad_images', False,
                       'Report and skip a bad image instead of stopping '
                       '(default: stop, and write no shard).',
                       flag_values=values)


def _convert(values: command_flags.FlagValues) -> int:
  start = time.perf_counter()
  try:
    result = convert(values.image_dir, values.panoptic_json,
                     values.panoptic_masks_dir, values.output_prefix,
                     num_shards=values.num_shards,
                     num_workers=values.num_workers,
                     skip_bad_images=values.skip_bad_images)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  if result.skipped_images:
    print(f'skipped {len(result.skipped_images)} of {result.num_images} '
          'images (reported above):', file=sys.stderr)
    for path in result.skipped_images:
      print(f'  {path}', file=sys.stderr)
  print(f'wrote {result.num_written} records to {values.num_shards} shard(s) '
        f'{values.output_prefix}-*-of-{values.num_shards:05d}.tfrecord and '
        f'{result.label_map_path} in {time.perf_counter() - start:.1f} s')
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Converts with `argv` (default: the command line); exit status."""
  return command_flags.run_with_flags(
      _convert, define_flags, sys.argv[1:] if argv is None else argv,
      'maskconver-convert-coco-panoptic')


def run() -> None:
  """Console entry point (`maskconver-convert-coco-panoptic`)."""
  command_flags.run_flag_command(_convert, define_flags)


if __name__ == '__main__':
  run()
