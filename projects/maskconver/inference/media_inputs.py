"""What the demo reads: an image, a folder of images and videos, or a video.

Each input gets a unique output name: the file stem (the extension is added
when two files of a folder share a stem), preceded by its sub-folders
relative to the input folder when the folder is searched recursively
(`city/a/0001.jpg` -> `city/a/0001`). Names never contain `..`, so outputs
named after them stay in the output folder. Video frames are decoded with
OpenCV and named `<video name>_<frame index, 6 digits>`.
"""

import dataclasses
import os
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg',
                    '.mpeg', '.wmv', '.flv')


class InputError(ValueError):
  """An input path is missing, empty or unreadable."""


@dataclasses.dataclass(frozen=True)
class InputFile:
  """One file to process.

  Attributes:
    path: the file.
    name: unique output name, used for every file written for it.
    is_video: True for videos (by extension), False for images.
  """
  path: str
  name: str
  is_video: bool


def is_video_path(path: str) -> bool:
  return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _output_names(relative_paths: List[str]) -> List[str]:
  """Relative paths without extension; the extension kept where stems repeat.

  Args:
    relative_paths: the inputs relative to the input folder ('/'-separated,
      without '..').
  """
  stems = [os.path.splitext(p)[0] for p in relative_paths]
  names = []
  for path, stem in zip(relative_paths, stems):
    if stems.count(stem) > 1:
      extension = os.path.splitext(path)[1].lstrip('.')
      stem = f'{stem}_{extension}' if extension else stem
    folder, base = os.path.split(stem)
    base = base.replace(' ', '_') or 'image'
    names.append(os.path.join(folder, base) if folder else base)
  return names


def _visible_files(folder: str, recursive: bool) -> List[str]:
  """Visible regular files of a folder (and its visible sub-folders)."""
  if not recursive:
    return sorted(
        os.path.join(folder, entry) for entry in os.listdir(folder)
        if not entry.startswith('.') and
        os.path.isfile(os.path.join(folder, entry)))
  paths = []
  # os.walk does not follow symbolic links to folders: no cycles.
  for root, folders, files in os.walk(folder):
    folders[:] = sorted(f for f in folders if not f.startswith('.'))
    paths.extend(os.path.join(root, f) for f in sorted(files)
                 if not f.startswith('.') and
                 os.path.isfile(os.path.join(root, f)))
  return sorted(paths, key=lambda p: os.path.relpath(p, folder))


def collect_inputs(path: str, recursive: bool = False) -> List[InputFile]:
  """Lists the files to process.

  Args:
    path: an image or video file, or a folder; every visible regular file
      of a folder is an input (those that are not images fail later, one by
      one); hidden files and folders are skipped.
    recursive: also search the folder's sub-folders; their files' names
      keep the sub-folders.

  Returns:
    The inputs, sorted by relative path for a folder.

  Raises:
    InputError: if the path does not exist or the folder has no file.
  """
  if not os.path.exists(path):
    raise InputError(f'--input={path}: no such file or folder')
  if os.path.isfile(path):
    paths = [path]
    relative = [os.path.basename(path)]
  elif os.path.isdir(path):
    paths = _visible_files(path, recursive)
    if not paths:
      searched = ('hidden files are not searched' if recursive else
                  'sub-folders and hidden files are not searched; '
                  '--recursive searches sub-folders')
      raise InputError(f'--input={path}: the folder contains no files '
                       f'({searched})')
    relative = [os.path.relpath(p, path).replace(os.sep, '/') for p in paths]
  else:
    raise InputError(f'--input={path}: neither a file nor a folder')
  return [InputFile(path=p, name=n, is_video=is_video_path(p))
          for p, n in zip(paths, _output_names(relative))]


def frame_name(video_name: str, index: int) -> str:
  """Output name of frame `index` of a video."""
  return f'{video_name}_{index:06d}'


def video_properties(path: str) -> Tuple[Optional[int], float]:
  """(frame count or None if unknown, frames per second) of a video."""
  capture = cv2.VideoCapture(path)
  try:
    if not capture.isOpened():
      raise InputError(f'{path}: OpenCV cannot open this video')
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
  finally:
    capture.release()
  return (count if count > 0 else None), (fps if fps > 0 else 25.0)


def read_video_frames(path: str, stride: int = 1,
                      max_frames: Optional[int] = None
                      ) -> Iterator[Tuple[int, np.ndarray]]:
  """Decodes a video's frames.

  Args:
    path: a video file OpenCV (FFmpeg) can decode.
    stride: keep every `stride`-th frame (frame 0, stride, 2 * stride, ...).
    max_frames: stop after this many kept frames; None for all.

  Yields:
    (frame index in the video, uint8 [height, width, 3] RGB frame).

  Raises:
    InputError: if the video cannot be opened or has no decodable frame.
  """
  if stride < 1:
    raise ValueError(f'stride must be >= 1, got {stride}')
  capture = cv2.VideoCapture(path)
  try:
    if not capture.isOpened():
      raise InputError(f'{path}: OpenCV cannot open this video')
    index = 0
    kept = 0
    while max_frames is None or kept < max_frames:
      ok, frame = capture.read()
      if not ok:
        break
      if index % stride == 0:
        kept += 1
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
      index += 1
    if index == 0:
      raise InputError(f'{path}: no frame could be decoded (not a video, or '
                       'a codec OpenCV lacks)')
  finally:
    capture.release()
