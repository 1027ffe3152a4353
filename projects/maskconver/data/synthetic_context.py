"""The `context` scenario: things whose class only a distant flag tells.

Table 2 of the paper credits the ConvNeXt-UNet's blocks at stride 32 with
the long-range context a pixel decoder must supply. This scene makes the
class of some things a fact that is only visible far away from them:

* Stuff as in `shapes` (sky over a noisy horizon, ground, maybe water); no
  crowd groups.
* A flag: a bar of `FLAG_SIZE` (fractions of the image side) in one of the
  two top corners of the sky, `FLAG_MARGIN` from the edges, painted in the
  category colour of a thing class (`CATEGORIES`), its key. Its pixels are
  labelled sky (the flag is part of the sky's picture, not a segment of its
  own). The horizon never rises above 0.18 of the side, so the flag always
  lies in the sky.
* Two to five things that do not overlap. With probability `rate` a thing is
  a context thing: a shape of any of the four families in a neutral grey,
  whose class is the flag's key; its own look says nothing of its class.
  The others are the usual coloured shapes, their class set by their look.
* Every pixel of every thing lies at least `FLAG_DISTANCE` times the image
  side from every pixel of the flag (Euclidean, between pixel centres).

At 192 px the distance is 100 px, beyond the 99 px theoretical receptive
field of a ResNet-18's level 3 (stride 8; 7x7/2 conv, 3x3/2 pool, 4 + 4
3x3 convs): a level-3 cell over a context thing never sees the flag; only
levels 4 (211 px) and 5 (435 px) do, and a decoder that carries them down
to the heads.

`context_statistics` measures the scene from an image: the flag (sky pixels
at least 2 px inside the sky whose blue exceeds their red by less than 0.3;
the sky's always does by more than 0.4), its key (the class whose category
colour is nearest the flag's median colour), the grey things (median colour
of the pixels 1 px inside the thing, or of all for a thinner one, within
0.08 across channels and below 0.55; the white cross never goes below 0.6),
whether each lies `FLAG_DISTANCE` from the flag and whether its class is
the key. The insets keep JPEG's colour bleeding across edges out, and the
distance allows 1 px (`_BLEED`) of bleeding around the flag.
"""

import math
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from maskconver.data import coco_panoptic_io
from maskconver.data import synthetic_drawing as drawing
from maskconver.data.synthetic_drawing import CATEGORIES, CROSS, SKY
from maskconver.data.synthetic_drawing import THING_IDS

DEFAULT_RATE = 0.5
# Least distance from any flag pixel to any thing pixel, per image side.
FLAG_DISTANCE = 0.52
# Flag (height, width) and its margin to the top and side edges, per side.
FLAG_SIZE = (0.06, 0.15)
FLAG_MARGIN = 0.03
# Grey of the context things: a brightness drawn per thing, then the
# textures of `drawing.thing_color`.
_GREY_RANGE = (0.3, 0.45)
_TRIES = 30
# Measurement thresholds (colours in [0, 1]), see the module docstring.
_FLAG_MAX_BLUE_MINUS_RED = 0.3
_GREY_MAX_CHANNEL_SPREAD = 0.08
_GREY_MAX_BRIGHTNESS = 0.55
_BLEED = 1.0
# The flag's colour per thing class: the category colour, in [0, 1].
_KEY_COLORS = {c['id']: np.asarray(c['color'], np.float32) / 255
               for c in CATEGORIES if c['isthing']}


def flag_box(image_side: int, right: bool) -> Tuple[int, int, int, int]:
  """Rows [top, bottom) and columns [left, right) of the flag."""
  height = max(2, round(FLAG_SIZE[0] * image_side))
  width = max(3, round(FLAG_SIZE[1] * image_side))
  margin = max(1, round(FLAG_MARGIN * image_side))
  left = image_side - margin - width if right else margin
  return margin, margin + height, left, left + width


def distance_to_box(box: Tuple[int, int, int, int], yy: np.ndarray,
                    xx: np.ndarray) -> np.ndarray:
  """Euclidean distance from each pixel centre to the box's pixel centres."""
  top, bottom, left, right = box
  dy = np.maximum(np.maximum(top + 0.5 - yy, yy - (bottom - 0.5)), 0)
  dx = np.maximum(np.maximum(left + 0.5 - xx, xx - (right - 0.5)), 0)
  return np.hypot(dy, dx)


def _grey_color(rng: np.random.Generator, yy: np.ndarray,
                xx: np.ndarray) -> np.ndarray:
  """A textured neutral grey, float32 [size, size, 3].

  The shading of a random `drawing.thing_color` texture (that of the white
  cross class, averaged over channels) at a random grey level.
  """
  shade = drawing.thing_color(rng, CROSS, yy, xx).mean(axis=-1)
  shade = shade / max(float(shade.max()), 1e-6)
  return (rng.uniform(*_GREY_RANGE) * shade)[..., None] * np.ones(3)


def _interior(mask: np.ndarray, steps: int) -> np.ndarray:
  """`mask` eroded `steps` times (4-neighbours), or `mask` if that is empty."""
  inner = mask.copy()
  for _ in range(steps):
    eroded = inner.copy()
    eroded[1:] &= inner[:-1]
    eroded[:-1] &= inner[1:]
    eroded[:, 1:] &= inner[:, :-1]
    eroded[:, :-1] &= inner[:, 1:]
    eroded[0] = eroded[-1] = False
    eroded[:, 0] = eroded[:, -1] = False
    inner = eroded
  return inner if inner.any() else mask


def draw_context(rng: np.random.Generator, canvas: drawing.Canvas,
                 rate: float) -> None:
  """The `context` scene (see the module docstring)."""
  size = canvas.segments.shape[0]
  yy, xx = drawing.grid(size)
  drawing.draw_stuff(rng, canvas)
  key = THING_IDS[int(rng.integers(len(THING_IDS)))]
  box = flag_box(size, right=bool(rng.integers(2)))
  top, bottom, left, right = box
  canvas.rgb[top:bottom, left:right] = _KEY_COLORS[key]
  allowed = distance_to_box(box, yy, xx) >= FLAG_DISTANCE * size
  occupied = np.zeros((size, size), dtype=bool)
  for _ in range(int(rng.integers(2, 6))):
    context = rng.random() < rate
    look = THING_IDS[int(rng.integers(len(THING_IDS)))]
    extent = rng.uniform(max(14.0, 0.14 * size), max(20.0, 0.35 * size))
    for _ in range(_TRIES):
      angle = rng.uniform(-np.pi / 6, np.pi / 6)
      cy, cx = rng.uniform(0.2 * extent, size - 0.2 * extent, 2)
      mask = drawing.shape_mask(look, yy, xx, cy, cx, extent, angle)
      if (mask.sum() >= 0.25 * extent * extent and
          not (mask & ~allowed).any() and not (mask & occupied).any()):
        break
    else:
      continue
    occupied |= mask
    if context:
      drawing.add_segment(rng, canvas, mask, key, False,
                          _grey_color(rng, yy, xx))
    else:
      drawing.add_segment(rng, canvas, mask, look, False,
                          drawing.thing_color(rng, look, yy, xx))


_COUNTS = ('images', 'things', 'flags', 'context_things', 'context_far',
           'context_key')


def context_statistics(image: np.ndarray, segments: np.ndarray,
                       segments_info: Sequence[Mapping[str, Any]],
                       thing_ids: Sequence[int] = THING_IDS
                       ) -> Dict[str, float]:
  """The flag and the context things of one image, measured from its pixels.

  Args:
    image: uint8 [height, width, 3].
    segments: int [height, width] segment ids, 0 = void.
    segments_info: COCO `segments_info` of the image.
    thing_ids: category ids of the thing classes.

  Returns:
    Counts `images` (1), `things` (non-crowd things), `flags` (1 if a flag
    was found), `context_things` (grey things), `context_far` (grey things
    at least `FLAG_DISTANCE` times the longer side, less `_BLEED` px, from
    every flag pixel),
    `context_key` (grey things of the flag's key class), and
    `context_share` (grey things over things), `context_far_share` and
    `context_key_share` (over grey things); NaN where a divisor is 0.
  """
  rgb = image.astype(np.float32) / 255
  counts = {name: 0 for name in _COUNTS}
  counts['images'] = 1
  sky_ids = [s['id'] for s in segments_info if s['category_id'] == SKY]
  flag = _interior(np.isin(segments, sky_ids), 2) & (
      rgb[..., 2] - rgb[..., 0] < _FLAG_MAX_BLUE_MINUS_RED)
  key = None
  if flag.any():
    counts['flags'] = 1
    color = np.median(rgb[flag], axis=0)
    key = min((c for c in thing_ids if c in _KEY_COLORS),
              key=lambda c: float(np.sum((_KEY_COLORS[c] - color)**2)))
    flag_points = np.argwhere(flag).astype(np.float32)
  reach = FLAG_DISTANCE * max(segments.shape) - _BLEED
  for info in segments_info:
    mask = segments == info['id']
    if (info['category_id'] not in thing_ids or info.get('iscrowd', 0) or
        not mask.any()):
      continue
    counts['things'] += 1
    color = np.median(rgb[_interior(mask, 1)], axis=0)
    if (color.max() - color.min() > _GREY_MAX_CHANNEL_SPREAD or
        color.mean() > _GREY_MAX_BRIGHTNESS):
      continue
    counts['context_things'] += 1
    if key is None:
      continue
    counts['context_key'] += int(info['category_id'] == key)
    nearest = _nearest(flag_points, np.argwhere(mask).astype(np.float32))
    counts['context_far'] += int(nearest >= reach)
  return _with_shares(counts)


def _nearest(a: np.ndarray, b: np.ndarray) -> float:
  """Least Euclidean distance between a point of `a` and one of `b`."""
  best = math.inf
  for start in range(0, len(b), 256):
    chunk = b[start:start + 256]
    d = np.sqrt(((chunk[:, None, :] - a[None, :, :])**2).sum(-1))
    best = min(best, float(d.min()))
  return best


def _with_shares(counts: Dict[str, int]) -> Dict[str, float]:
  stats = dict(counts)
  grey = counts['context_things']
  stats['context_share'] = (grey / counts['things'] if counts['things']
                            else float('nan'))
  for name in ('context_far', 'context_key'):
    stats[f'{name}_share'] = counts[name] / grey if grey else float('nan')
  return stats


def measure(panoptic_json: str, panoptic_masks_dir: str,
            image_dir: str) -> Dict[str, float]:
  """`context_statistics` summed over a COCO panoptic split."""
  data = coco_panoptic_io.load_json(panoptic_json)
  thing_ids = [c['id'] for c in data['categories'] if c['isthing']]
  files = {i['id']: i['file_name'] for i in data['images']}
  totals = {name: 0 for name in _COUNTS}
  for annotation in data['annotations']:
    segments = coco_panoptic_io.read_segment_map(
        os.path.join(panoptic_masks_dir, annotation['file_name']))
    with Image.open(os.path.join(image_dir,
                                 files[annotation['image_id']])) as image:
      rgb = np.asarray(image.convert('RGB'))
    stats = context_statistics(rgb, segments, annotation['segments_info'],
                               thing_ids)
    for name in totals:
      totals[name] += stats[name]
  return _with_shares(totals)


def format_statistics(stats: Mapping[str, float],
                      image_side: Optional[int] = None) -> str:
  """One line of `measure`'s results."""
  distance = (f' ({FLAG_DISTANCE * image_side:.0f} px)'
              if image_side else '')
  return (f'context: {stats["flags"]} flags in {stats["images"]} images, '
          f'{stats["things"]} things, '
          f'context_share={stats["context_share"]:.3f}, of them '
          f'{FLAG_DISTANCE} side{distance} from the flag '
          f'{stats["context_far_share"]:.3f}, of the flag\'s class '
          f'{stats["context_key_share"]:.3f}')
