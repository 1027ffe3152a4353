"""Checks a COCO panoptic dataset (images, panoptic PNGs, JSON).

The converter runs the same checks on every image before writing it. Run
alone, the check prints a summary (images, segments per class, things vs
stuff, crowd) and every problem with its files, and exits non-zero if there is
any problem::

  python -m maskconver.data.check_dataset --image_dir=DIR \
      --panoptic_json=FILE --panoptic_masks_dir=DIR

Per image it checks: its `file_name` and its PNG's are relative paths that
stay inside --image_dir and --panoptic_masks_dir (sub-folders are fine; `..`
leading out and absolute paths are refused, and such files are not read);
the image file exists, is a JPEG or PNG and decodes; the panoptic PNG exists,
is an 8-bit RGB PNG and has the image's size; every segment's category is in
`categories`; the JSON's segment ids and the PNG's non-zero ids are the same
set; the image is listed in `images` and annotated once.
"""

import collections
import dataclasses
import io
import multiprocessing
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from absl import flags
import numpy as np
from PIL import Image
import tqdm

from maskconver import keys
from maskconver.common import flags as command_flags
from maskconver.data import coco_panoptic_io
from maskconver.data import label_map as label_map_lib

# PIL format name -> `image/format` value.
_IMAGE_FORMATS = {'JPEG': 'jpeg', 'PNG': 'png'}
# PNG modes whose RGB decoding is the same in PIL and tf.io.decode_png.
_PANOPTIC_MODES = ('RGB', 'RGBA')
_MAX_LISTED_IDS = 10
_CHUNK_SIZE = 8
_WINDOW_PER_WORKER = 64


@dataclasses.dataclass(frozen=True)
class Problem:
  """One thing wrong with one image of the dataset."""
  image_file: str
  png_file: str
  message: str

  def __str__(self) -> str:
    return (f'image {self.image_file} (panoptic PNG {self.png_file}): '
            f'{self.message}')


@dataclasses.dataclass
class ImageEntry:
  """One image of the dataset as the JSON describes it."""
  image_id: Any
  image_path: str
  png_path: str
  file_name: str
  png_file_name: str
  segments: List[Dict[str, Any]]
  json_size: Optional[Tuple[int, int]]  # (height, width) from `images`.
  json_problems: List[str]
  # False when a file name leads outside its folder: nothing is read.
  paths_inside: bool = True


@dataclasses.dataclass
class CheckedImage:
  """The checked files of one image; bytes are kept only when asked for."""
  entry: ImageEntry
  problems: List[Problem]
  image_bytes: bytes = b''
  image_format: str = ''
  png_bytes: bytes = b''
  height: int = 0
  width: int = 0


@dataclasses.dataclass
class DatasetIndex:
  label_map: label_map_lib.LabelMap
  entries: List[ImageEntry]


def _list_ids(ids) -> str:
  ids = sorted(int(i) for i in ids)
  shown = ', '.join(str(i) for i in ids[:_MAX_LISTED_IDS])
  more = len(ids) - _MAX_LISTED_IDS
  return f'[{shown}, ... {more} more]' if more > 0 else f'[{shown}]'


def outside_folder(file_name: str) -> Optional[str]:
  """Why a file name from a JSON leads outside its folder, else None.

  Args:
    file_name: a path relative to a folder, as a COCO JSON gives it.

  Returns:
    None for a relative path that stays inside the folder (sub-folders
    included), else the reason.
  """
  if not file_name:
    return 'is empty'
  if os.path.isabs(file_name):
    return 'is an absolute path'
  normalized = os.path.normpath(file_name)
  if normalized == os.pardir or normalized.startswith(os.pardir + os.sep):
    return 'leads outside the folder (..)'
  return None


def _path_problems(file_name: str, flag: str, what: str) -> List[str]:
  reason = outside_folder(file_name)
  if reason is None:
    return []
  return [f'{what} file_name {file_name!r} {reason}: file names must be '
          f'relative paths inside {flag}; the file was not read']


def load_index(image_dir: str, panoptic_json: str,
               panoptic_masks_dir: str) -> DatasetIndex:
  """Reads the JSON and pairs every annotation with its image.

  Args:
    image_dir: directory of the images (`images[].file_name`).
    panoptic_json: the COCO panoptic JSON.
    panoptic_masks_dir: directory of the PNGs (`annotations[].file_name`).

  Returns:
    The label map and one entry per annotated or listed image, in the JSON's
    annotation order, then unannotated images.

  Raises:
    PanopticFormatError: the JSON is unreadable or lacks a required part.
  """
  data = coco_panoptic_io.load_json(panoptic_json)
  for field in ('images', 'annotations', 'categories'):
    if not isinstance(data, dict) or field not in data:
      raise coco_panoptic_io.PanopticFormatError(
          f'{panoptic_json}: no {field!r} list (not a COCO panoptic JSON)')
  try:
    label_map = label_map_lib.LabelMap.from_coco_categories(data['categories'])
  except coco_panoptic_io.PanopticFormatError as e:
    raise coco_panoptic_io.PanopticFormatError(f'{panoptic_json}: {e}') from e

  images = {}
  for index, image in enumerate(data['images']):
    if 'id' not in image or 'file_name' not in image:
      raise coco_panoptic_io.PanopticFormatError(
          f'{panoptic_json}: images[{index}] lacks id or file_name: {image}')
    if image['id'] in images:
      raise coco_panoptic_io.PanopticFormatError(
          f'{panoptic_json}: image id {image["id"]} is listed twice')
    images[image['id']] = image

  entries = []
  annotated = collections.Counter()
  for index, annotation in enumerate(data['annotations']):
    if 'image_id' not in annotation or 'file_name' not in annotation:
      raise coco_panoptic_io.PanopticFormatError(
          f'{panoptic_json}: annotations[{index}] lacks image_id or file_name')
    image_id = annotation['image_id']
    annotated[image_id] += 1
    image = images.get(image_id)
    problems = []
    if image is None:
      problems.append(f'image id {image_id} is not listed in images')
      file_name = f'<image id {image_id}>'
    else:
      file_name = image['file_name']
    if annotated[image_id] > 1:
      problems.append(f'image id {image_id} is annotated more than once')
    json_size = None
    if image is not None and 'height' in image and 'width' in image:
      json_size = (int(image['height']), int(image['width']))
    path_problems = _path_problems(annotation['file_name'],
                                   '--panoptic_masks_dir', 'panoptic PNG')
    if image is not None:
      path_problems = _path_problems(file_name, '--image_dir',
                                     'image') + path_problems
    entries.append(ImageEntry(
        image_id=image_id,
        image_path=os.path.join(image_dir, file_name),
        png_path=os.path.join(panoptic_masks_dir, annotation['file_name']),
        file_name=file_name, png_file_name=annotation['file_name'],
        segments=list(annotation.get('segments_info', [])),
        json_size=json_size, json_problems=problems + path_problems,
        paths_inside=not path_problems))
  for image_id, image in images.items():
    if image_id not in annotated:
      path_problems = _path_problems(image['file_name'], '--image_dir',
                                     'image')
      entries.append(ImageEntry(
          image_id=image_id,
          image_path=os.path.join(image_dir, image['file_name']),
          png_path='<none>', file_name=image['file_name'],
          png_file_name='', segments=[], json_size=None,
          json_problems=[f'image id {image_id} has no annotation'] +
          path_problems, paths_inside=not path_problems))
  return DatasetIndex(label_map=label_map, entries=entries)


def _read_file(path: str) -> Optional[bytes]:
  try:
    with open(path, 'rb') as f:
      return f.read()
  except FileNotFoundError:
    return None


def _check_image_file(data: bytes, messages: List[str]):
  """Returns (format, (height, width)) of decodable image bytes, else None."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      image_format = image.format
      image.load()
      size = (image.height, image.width)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    messages.append(f'corrupt image bytes ({e})')
    return None
  if image_format not in _IMAGE_FORMATS:
    messages.append(f'image format {image_format} is not JPEG or PNG')
    return None
  return _IMAGE_FORMATS[image_format], size


def _check_png_file(data: bytes, messages: List[str]) -> Optional[np.ndarray]:
  """Returns the segment ids of panoptic PNG bytes, else None."""
  try:
    with Image.open(io.BytesIO(data)) as png:
      if png.format != 'PNG' or png.mode not in _PANOPTIC_MODES:
        messages.append(f'panoptic PNG must be an 8-bit RGB PNG, got '
                        f'{png.format} mode {png.mode}')
        return None
      rgb = np.asarray(png.convert('RGB'))
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    messages.append(f'corrupt panoptic PNG ({e})')
    return None
  return coco_panoptic_io.rgb_to_id(rgb)


def _check_segments(entry: ImageEntry, ids: np.ndarray,
                    category_ids: Set[int], messages: List[str]) -> None:
  json_ids = []
  for segment in entry.segments:
    if 'id' not in segment or 'category_id' not in segment:
      messages.append(f'segments_info entry lacks id or category_id: '
                      f'{segment}')
      continue
    json_ids.append(int(segment['id']))
    if int(segment['category_id']) not in category_ids:
      messages.append(f'segment id {segment["id"]} has category_id '
                      f'{segment["category_id"]}, which is not in categories')
  repeated = [i for i, n in collections.Counter(json_ids).items() if n > 1]
  if repeated:
    messages.append(f'segment ids {_list_ids(repeated)} repeat in '
                    'segments_info')
  if keys.VOID_SEGMENT_ID in json_ids:
    messages.append('segments_info uses segment id 0, which means void')
  if ids is None:
    return
  in_png = set(np.unique(ids).tolist()) - {keys.VOID_SEGMENT_ID}
  missing = set(json_ids) - in_png - {keys.VOID_SEGMENT_ID}
  if missing:
    messages.append(f'segment ids {_list_ids(missing)} of segments_info are '
                    'missing from the PNG')
  unlisted = in_png - set(json_ids)
  if unlisted:
    messages.append(f'ids {_list_ids(unlisted)} in the PNG are missing from '
                    'segments_info')


def check_image(entry: ImageEntry, category_ids: Set[int],
                keep_bytes: bool = False) -> CheckedImage:
  """Reads and checks the files of one image.

  Args:
    entry: the image, from `load_index`.
    category_ids: the dataset's category ids.
    keep_bytes: whether to return the image and PNG bytes.

  Returns:
    The checked image; `problems` is empty if it is fine.
  """
  messages = list(entry.json_problems)
  if not entry.paths_inside:
    return CheckedImage(
        entry=entry,
        problems=[Problem(entry.image_path, entry.png_path, m)
                  for m in messages])
  image_bytes = _read_file(entry.image_path)
  image_info = None
  if image_bytes is None:
    messages.append('image file not found')
  else:
    image_info = _check_image_file(image_bytes, messages)
  png_bytes = _read_file(entry.png_path) if entry.png_file_name else None
  ids = None
  if entry.png_file_name and png_bytes is None:
    messages.append('panoptic PNG not found')
  elif png_bytes is not None:
    ids = _check_png_file(png_bytes, messages)
  height, width = image_info[1] if image_info else (0, 0)
  if image_info and ids is not None and ids.shape != (height, width):
    messages.append(f'PNG size {ids.shape[1]}x{ids.shape[0]} (WxH) differs '
                    f'from image size {width}x{height}')
  if image_info and entry.json_size and entry.json_size != (height, width):
    messages.append(f'image size {width}x{height} (WxH) differs from the '
                    f'JSON images entry {entry.json_size[1]}x'
                    f'{entry.json_size[0]}')
  if entry.png_file_name:
    _check_segments(entry, ids, category_ids, messages)
  checked = CheckedImage(
      entry=entry,
      problems=[Problem(entry.image_path, entry.png_path, m) for m in messages],
      height=height, width=width)
  if keep_bytes and not checked.problems:
    checked.image_bytes = image_bytes
    checked.image_format = image_info[0]
    checked.png_bytes = png_bytes
  return checked


def _check_star(args) -> CheckedImage:
  return check_image(*args)


def iter_checked(entries: Sequence[ImageEntry], category_ids: Set[int],
                 keep_bytes: bool, num_workers: int,
                 progress: bool = True,
                 description: str = 'checking') -> Iterator[CheckedImage]:
  """Checks images in parallel; yields them in the order of `entries`.

  Args:
    entries: images to check.
    category_ids: the dataset's category ids.
    keep_bytes: whether results carry the file bytes.
    num_workers: worker processes; 0 checks in this process.
    progress: whether to show a tqdm progress bar (on stderr).
    description: label of the progress bar.

  Yields:
    One `CheckedImage` per entry. Closing the generator early stops the
    workers.
  """
  work = [(entry, category_ids, keep_bytes) for entry in entries]
  bar = tqdm.tqdm(total=len(entries), desc=description, unit='image',
                  disable=not progress, file=sys.stderr)
  with bar:
    if num_workers <= 0:
      for item in work:
        yield _check_star(item)
        bar.update()
      return
    # Work goes out in windows so that at most a window of results (with
    # their bytes) waits in memory when writing is slower than reading.
    window = num_workers * _WINDOW_PER_WORKER
    with multiprocessing.Pool(num_workers) as pool:
      for start in range(0, len(work), window):
        for checked in pool.imap(_check_star, work[start:start + window],
                                 chunksize=_CHUNK_SIZE):
          yield checked
          bar.update()


def default_num_workers() -> int:
  return max(1, min(8, os.cpu_count() or 1))


def format_summary(index: DatasetIndex,
                   problems: Sequence[Problem]) -> str:
  """Images, segments per class, things vs stuff, crowd, then problems."""
  label_map = index.label_map
  per_class = collections.Counter()
  crowd = collections.Counter()
  unknown = 0
  for entry in index.entries:
    for segment in entry.segments:
      category = int(segment.get('category_id', -1))
      if not label_map.has_coco_id(category):
        unknown += 1
        continue
      per_class[category] += 1
      crowd[category] += int(bool(segment.get('iscrowd', 0)))
  lines = [f'images: {len(index.entries)}',
           f'classes: {label_map.num_classes} ({label_map.num_thing_classes} '
           f'things, {label_map.num_stuff_classes} stuff)',
           'segments per class (train id, COCO id, name, kind: segments, '
           'crowd):']
  for c in label_map.classes:
    kind = 'thing' if c.isthing else 'stuff'
    lines.append(f'  {c.train_id:3d}  {c.coco_id:4d}  {c.name:20s} {kind}: '
                 f'{per_class[c.coco_id]}, crowd {crowd[c.coco_id]}')
  things = sum(per_class[c.coco_id] for c in label_map.classes if c.isthing)
  stuff = sum(per_class.values()) - things
  lines.append(f'thing segments: {things}, stuff segments: {stuff}, crowd '
               f'segments: {sum(crowd.values())}')
  if unknown:
    lines.append(f'segments with an unknown category: {unknown}')
  lines.append(f'problems: {len(problems)}')
  lines.extend(f'  {p}' for p in problems)
  return '\n'.join(lines)


def check_dataset(image_dir: str, panoptic_json: str, panoptic_masks_dir: str,
                  num_workers: int = 0, progress: bool = False
                  ) -> Tuple[DatasetIndex, List[Problem]]:
  """Checks every image of a dataset; returns the index and all problems."""
  index = load_index(image_dir, panoptic_json, panoptic_masks_dir)
  category_ids = set(index.label_map.coco_ids)
  problems = []
  for checked in iter_checked(index.entries, category_ids, False, num_workers,
                              progress):
    problems.extend(checked.problems)
  return index, problems


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
  flags.DEFINE_integer('num_workers', default_num_workers(),
                       'Processes reading the images and PNGs; 0: read them '
                       'in this process.', lower_bound=0,
                       flag_values=values)


def _check(values: command_flags.FlagValues) -> int:
  try:
    index, problems = check_dataset(values.image_dir, values.panoptic_json,
                                    values.panoptic_masks_dir,
                                    values.num_workers, progress=True)
  except coco_panoptic_io.PanopticFormatError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(format_summary(index, problems))
  return 1 if problems else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the check on `argv` (default: the command line); exit status."""
  return command_flags.run_with_flags(
      _check, define_flags, sys.argv[1:] if argv is None else argv,
      'maskconver-check-dataset')


def run() -> None:
  """Console entry point (`maskconver-check-dataset`)."""
  command_flags.run_flag_command(_check, define_flags)


if __name__ == '__main__':
  run()
