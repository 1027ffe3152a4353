"""Reading and writing the COCO panoptic format (PNG + JSON).

A COCO panoptic annotation is a JSON file with `images`, `annotations` and
`categories`, and one RGB PNG per image whose pixel value encodes a segment id
as `R + 256 * G + 256**2 * B` (0 = void). Each annotation lists the segments of
one image (`segments_info`: `id`, `category_id`, `iscrowd`, `area`, `bbox`).
Ground truth and predictions share the format.
"""

import json
import os
from typing import Any, Dict, List, Sequence

import numpy as np
from PIL import Image

from maskconver import keys


class PanopticFormatError(ValueError):
  """A COCO panoptic file is missing, unreadable or inconsistent."""


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
  """Decodes segment ids from a COCO panoptic RGB array.

  Args:
    rgb: uint8 [height, width, 3].

  Returns:
    int32 [height, width] segment ids.
  """
  rgb = rgb.astype(np.int32)
  base = keys.LABEL_BASE
  return rgb[..., 0] + base * rgb[..., 1] + base * base * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
  """Encodes segment ids as a COCO panoptic RGB array.

  Args:
    ids: integer [height, width] segment ids in [0, 256**3).

  Returns:
    uint8 [height, width, 3].
  """
  ids = np.asarray(ids)
  if ids.size and (ids.min() < 0 or ids.max() >= keys.LABEL_BASE**3):
    raise ValueError(
        f'segment ids must lie in [0, {keys.LABEL_BASE**3}), got '
        f'[{ids.min()}, {ids.max()}]')
  # The three low bytes of each little-endian id are R, G and B.
  as_bytes = ids.astype('<u4', order='C').view(np.uint8).reshape(
      ids.shape + (4,))
  return np.ascontiguousarray(as_bytes[..., :3])


def read_segment_map(path: str) -> np.ndarray:
  """Reads a COCO panoptic PNG as int32 [height, width] segment ids.

  The ids of `rgb_to_id`, decoded through RGBA: the little-endian uint32 of
  bytes R, G, B, A is R + 256 G + 256**2 B + 256**3 A, and masking off A
  leaves the id, with no per-channel arithmetic.
  """
  try:
    with Image.open(path) as image:
      rgba = np.ascontiguousarray(image.convert('RGBA'))
  except FileNotFoundError as e:
    raise PanopticFormatError(f'{path}: panoptic PNG not found') from e
  except OSError as e:
    raise PanopticFormatError(f'{path}: not a readable PNG ({e})') from e
  ids = rgba.view('<u4')[..., 0]
  return (ids & np.uint32(keys.LABEL_BASE**3 - 1)).astype(np.int32)


def write_segment_map(path: str, segment_map: np.ndarray) -> None:
  """Writes int [height, width] segment ids as a COCO panoptic PNG."""
  Image.fromarray(id_to_rgb(segment_map)).save(path, format='PNG')


def load_json(path: str) -> Dict[str, Any]:
  """Loads a JSON file, naming the file in any error."""
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise PanopticFormatError(f'{path}: file not found') from e
  except json.JSONDecodeError as e:
    raise PanopticFormatError(f'{path}: invalid JSON ({e})') from e


def write_json(path: str, data: Any) -> None:
  """Writes JSON atomically: a crash never leaves a truncated file."""
  tmp_path = f'{path}.tmp-{os.getpid()}'
  with open(tmp_path, 'w', encoding='utf-8') as f:
    json.dump(data, f)
  os.replace(tmp_path, path)


def segments_info_from_map(
    segment_map: np.ndarray,
    categories: Sequence[int],
    is_crowd: Sequence[bool] = (),
    segment_ids: Sequence[int] = (),
) -> List[Dict[str, Any]]:
  """Builds COCO `segments_info` (area, bbox) for the segments of a map.

  Args:
    segment_map: int [height, width] segment ids, 0 = void.
    categories: category id of each segment.
    is_crowd: crowd flag of each segment (default: none is crowd).
    segment_ids: id of each segment (default: 1 .. len(categories)).

  Returns:
    One dict per segment present in the map, in the order given; segments with
    no pixel are left out, as COCO leaves them out.
  """
  segment_ids = list(segment_ids) or list(range(1, len(categories) + 1))
  is_crowd = list(is_crowd) or [False] * len(categories)
  segment_map = np.asarray(segment_map)
  infos = []
  for segment_id, category, crowd in zip(segment_ids, categories, is_crowd):
    # One bool [h, w] temporary per segment (no pixel index arrays), so
    # large images stay cheap.
    mask = segment_map == segment_id
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
      continue
    cols = np.flatnonzero(mask.any(axis=0))
    x0, y0 = int(cols[0]), int(rows[0])
    infos.append({
        'id': int(segment_id),
        'category_id': int(category),
        'iscrowd': int(bool(crowd)),
        'area': int(np.count_nonzero(mask)),
        'bbox': [x0, y0, int(cols[-1]) - x0 + 1, int(rows[-1]) - y0 + 1],
    })
  return infos
