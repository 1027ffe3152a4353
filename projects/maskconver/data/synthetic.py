"""A small synthetic panoptic dataset in the COCO panoptic layout.

Writes::

  OUTPUT_DIR/train/*.jpg
  OUTPUT_DIR/val/*.jpg
  OUTPUT_DIR/annotations/panoptic_train.json
  OUTPUT_DIR/annotations/panoptic_train/*.png
  OUTPUT_DIR/annotations/panoptic_val.json
  OUTPUT_DIR/annotations/panoptic_val/*.png

Each image shows three stuff classes (`sky` above a noisy horizon, textured
`ground` below it, sometimes an irregular `water` blob) separated by thin void
borders, and four thing classes, each with its own shape and colour family
(red `disc`, yellow `square`, magenta `triangle`, white `cross`), in varied
sizes, rotations and textures. Things overlap (a later shape occludes an
earlier one, whose mask loses the covered pixels) and some touch. About half
the images hold one crowd segment: a tight cluster of small shapes of one
class annotated as a single `iscrowd=1` segment. Category ids are not
contiguous, so the training-id mapping is exercised, and segment ids are
random 24-bit values, so every channel of the PNG encoding is used.

The output is a deterministic function of the arguments (same seed, same
bytes). Usage::

  python -m maskconver.data.synthetic --output_dir=/tmp/synthetic \
      --num_train=400 --num_val=50 --image_size=128 --seed=0
"""

import argparse
import dataclasses
import io
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from maskconver.data import coco_panoptic_io

# COCO-style categories. Ids are deliberately non-contiguous.
CATEGORIES = (
    {'id': 1, 'name': 'disc', 'isthing': 1, 'color': [220, 40, 30],
     'supercategory': 'shape'},
    {'id': 2, 'name': 'square', 'isthing': 1, 'color': [240, 210, 40],
     'supercategory': 'shape'},
    {'id': 3, 'name': 'triangle', 'isthing': 1, 'color': [190, 50, 200],
     'supercategory': 'shape'},
    {'id': 5, 'name': 'cross', 'isthing': 1, 'color': [235, 235, 235],
     'supercategory': 'shape'},
    {'id': 20, 'name': 'sky', 'isthing': 0, 'color': [90, 140, 230],
     'supercategory': 'scene'},
    {'id': 21, 'name': 'ground', 'isthing': 0, 'color': [120, 90, 50],
     'supercategory': 'scene'},
    {'id': 22, 'name': 'water', 'isthing': 0, 'color': [20, 90, 120],
     'supercategory': 'scene'},
)
DISC, SQUARE, TRIANGLE, CROSS = 1, 2, 3, 5
SKY, GROUND, WATER = 20, 21, 22
THING_IDS = (DISC, SQUARE, TRIANGLE, CROSS)

# Base colour (RGB in [0, 1]) of each thing class; objects vary around it.
_THING_COLORS = {
    DISC: (0.88, 0.18, 0.12),
    SQUARE: (0.95, 0.84, 0.15),
    TRIANGLE: (0.75, 0.2, 0.82),
    CROSS: (0.94, 0.94, 0.94),
}
_SPLIT_SEEDS = {'train': 1, 'val': 2}
_SPLIT_ID_OFFSETS = {'train': 0, 'val': 1_000_000}
_WATER_PROBABILITY = 0.6
_CROWD_PROBABILITY = 0.5
_TOUCH_PROBABILITY = 0.3
# An occluded thing keeps at least this fraction of its visible pixels.
_MIN_VISIBLE_FRACTION = 0.5
_PLACEMENT_TRIES = 20


@dataclasses.dataclass
class _Canvas:
  """The image being drawn: colours, segment ids and segment metadata."""
  rgb: np.ndarray        # float32 [size, size, 3] in [0, 1]
  segments: np.ndarray   # int64 [size, size], 0 = void
  ids: List[int] = dataclasses.field(default_factory=list)
  categories: List[int] = dataclasses.field(default_factory=list)
  crowd: List[bool] = dataclasses.field(default_factory=list)


def _grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates (y, x), each float32 [size, size]."""
  coords = np.arange(size, dtype=np.float32) + 0.5
  return np.meshgrid(coords, coords, indexing='ij')


def _smooth_noise(rng: np.random.Generator, size: int,
                  cells: int) -> np.ndarray:
  """Low-frequency noise in [0, 1], float32 [size, size]."""
  coarse = rng.random((cells, cells), dtype=np.float32)
  image = Image.fromarray(coarse).resize((size, size),
                                                   Image.Resampling.BILINEAR)
  return np.asarray(image, dtype=np.float32)


def _new_segment_id(rng: np.random.Generator, canvas: _Canvas) -> int:
  while True:
    segment_id = int(rng.integers(1, 256**3))
    if segment_id not in canvas.ids:
      return segment_id


def _add_segment(rng, canvas, mask, category, crowd, color):
  segment_id = _new_segment_id(rng, canvas)
  canvas.segments[mask] = segment_id
  canvas.rgb[mask] = color[mask]
  canvas.ids.append(segment_id)
  canvas.categories.append(category)
  canvas.crowd.append(crowd)


def _draw_stuff(rng: np.random.Generator, canvas: _Canvas) -> None:
  """Sky over a noisy horizon, textured ground, maybe a water blob."""
  size = canvas.segments.shape[0]
  yy, xx = _grid(size)
  phase = rng.uniform(0, 2 * np.pi, 3)
  amplitude = size * rng.uniform(0.5, 1.0, 3) * np.array([0.07, 0.035, 0.015])
  horizon = size * rng.uniform(0.3, 0.55) + sum(
      a * np.sin(2 * np.pi * f * xx[0] / size + p)
      for a, f, p in zip(amplitude, (1, 2, 5), phase))
  labels = np.where(yy < horizon[None, :], SKY, GROUND)
  if rng.random() < _WATER_PROBABILITY:
    cy = rng.uniform(horizon.max() + 0.15 * size, 0.9 * size)
    cx = rng.uniform(0.25, 0.75) * size
    theta = np.arctan2(yy - cy, xx - cx)
    wobble = sum(rng.uniform(0.05, 0.2) * np.sin(k * theta + rng.uniform(0, 7))
                 for k in (2, 3, 5))
    radius = size * rng.uniform(0.12, 0.2) * (1 + wobble)
    water = np.hypot(yy - cy, xx - cx) < radius
    labels = np.where(water & (labels == GROUND), WATER, labels)

  # Colours: a blue gradient with soft clouds, grainy striped earth, and
  # water with ripples.
  clouds = _smooth_noise(rng, size, 5)[..., None]
  sky_top = np.array([0.25, 0.45, 0.9]) + rng.uniform(-0.05, 0.05, 3)
  sky = (sky_top + (yy[..., None] / size) * np.array([0.2, 0.25, 0.1]) +
         0.25 * np.clip(clouds - 0.6, 0, 1))
  earth = np.array([0.45, 0.36, 0.2]) + rng.uniform(-0.06, 0.06, 3)
  grain = rng.normal(0, 0.07, (size, size, 1))
  stripes = 0.06 * np.sign(np.sin((xx + 2 * yy) * 2 * np.pi / 7))[..., None]
  ground = earth * (1 + stripes) + grain
  ripples = np.sin(2 * np.pi * yy / 4.5 + 0.6 * np.sin(xx / 5))[..., None]
  water_color = np.array([0.08, 0.33, 0.45]) + 0.08 * ripples
  for category, color in ((SKY, sky), (GROUND, ground), (WATER, water_color)):
    mask = labels == category
    if mask.any():
      _add_segment(rng, canvas, mask, category, False,
                   np.broadcast_to(color, canvas.rgb.shape))

  # COCO-like thin void borders where two stuff regions meet.
  border = np.zeros(labels.shape, dtype=bool)
  border[:-1] |= labels[:-1] != labels[1:]
  border[:, :-1] |= labels[:, :-1] != labels[:, 1:]
  canvas.segments[border] = 0
  canvas.rgb[border] = canvas.rgb[border] * 0.85


def _shape_mask(category: int, yy: np.ndarray, xx: np.ndarray, cy: float,
                cx: float, extent: float, angle: float) -> np.ndarray:
  """Boolean mask of a shape `extent` pixels across, centred at (cy, cx)."""
  cos, sin = np.cos(angle), np.sin(angle)
  u = (xx - cx) * cos + (yy - cy) * sin
  v = -(xx - cx) * sin + (yy - cy) * cos
  half = extent / 2
  if category == DISC:
    return u * u + v * v <= half * half
  if category == SQUARE:
    return (np.abs(u) <= half * 0.85) & (np.abs(v) <= half * 0.85)
  if category == CROSS:
    arm = half * 0.34
    return (((np.abs(u) <= half) & (np.abs(v) <= arm)) |
            ((np.abs(v) <= half) & (np.abs(u) <= arm)))
  # Triangle: three half-planes whose inner normals point at the centre.
  inside = np.ones_like(u, dtype=bool)
  for k in range(3):
    normal = 2 * np.pi * k / 3 + np.pi / 2
    inside &= u * np.cos(normal) + v * np.sin(normal) <= half * 0.6
  return inside


def _thing_color(rng: np.random.Generator, category: int, yy: np.ndarray,
                 xx: np.ndarray) -> np.ndarray:
  """A textured colour field of one thing, float32 [size, size, 3]."""
  base = np.array(_THING_COLORS[category]) + rng.uniform(-0.08, 0.08, 3)
  base = np.clip(base * rng.uniform(0.85, 1.05), 0, 1)
  texture = rng.integers(3)
  if texture == 0:  # Plain with a soft shading.
    shade = 1 - 0.15 * (yy + xx) / (yy.shape[0] * 2)
  elif texture == 1:  # Stripes.
    period = rng.uniform(3, 6)
    angle = rng.uniform(0, np.pi)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    shade = 0.78 + 0.22 * (np.sin(2 * np.pi * phase) > 0)
  else:  # Checks.
    period = int(rng.integers(3, 6))
    shade = 0.8 + 0.2 * ((xx // period + yy // period) % 2)
  return base * shade[..., None]


def _place(rng, canvas, things, yy, xx, category, extent, touch):
  """Finds a position that occludes no earlier thing too much, or None."""
  size = yy.shape[0]
  for _ in range(_PLACEMENT_TRIES):
    angle = rng.uniform(-np.pi / 6, np.pi / 6)
    if touch and things:
      other = things[int(rng.integers(len(things)))]
      ys, xs = np.nonzero(canvas.segments == other)
      if ys.size == 0:
        continue
      side = int(rng.integers(4))
      offset = rng.uniform(-0.3, 0.3) * extent
      if side == 0:
        cy, cx = ys.min() - extent / 2, xs.mean() + offset
      elif side == 1:
        cy, cx = ys.max() + 1 + extent / 2, xs.mean() + offset
      elif side == 2:
        cy, cx = ys.mean() + offset, xs.min() - extent / 2
      else:
        cy, cx = ys.mean() + offset, xs.max() + 1 + extent / 2
      angle = 0.0
    else:
      cy, cx = rng.uniform(0.2 * extent, size - 0.2 * extent, 2)
    mask = _shape_mask(category, yy, xx, cy, cx, extent, angle)
    if mask.sum() < 0.5 * extent * extent * 0.5:
      continue
    if all(np.sum((canvas.segments == t) & ~mask) >=
           _MIN_VISIBLE_FRACTION * np.sum(canvas.segments == t)
           for t in things):
      return mask
  return None


def _draw_crowd(rng: np.random.Generator, canvas: _Canvas) -> None:
  """A tight cluster of small same-class shapes, one iscrowd segment."""
  size = canvas.segments.shape[0]
  yy, xx = _grid(size)
  category = THING_IDS[int(rng.integers(len(THING_IDS)))]
  cy, cx = rng.uniform(0.2, 0.8, 2) * size
  spread = size * 0.07
  mask = np.zeros(canvas.segments.shape, dtype=bool)
  color = _thing_color(rng, category, yy, xx)
  for _ in range(int(rng.integers(8, 17))):
    extent = rng.uniform(max(4.0, 0.035 * size), max(6.0, 0.055 * size))
    my, mx = rng.normal((cy, cx), spread)
    mask |= _shape_mask(category, yy, xx, my, mx, extent,
                        rng.uniform(-0.5, 0.5))
  if mask.sum() >= 30:
    _add_segment(rng, canvas, mask, category, True, color)


def _draw_things(rng: np.random.Generator, canvas: _Canvas) -> None:
  size = canvas.segments.shape[0]
  yy, xx = _grid(size)
  things = []
  for _ in range(int(rng.integers(2, 6))):
    category = THING_IDS[int(rng.integers(len(THING_IDS)))]
    extent = rng.uniform(max(14.0, 0.14 * size), max(20.0, 0.35 * size))
    touch = rng.random() < _TOUCH_PROBABILITY
    mask = _place(rng, canvas, things, yy, xx, category, extent, touch)
    if mask is None:
      continue
    _add_segment(rng, canvas, mask, category, False,
                 _thing_color(rng, category, yy, xx))
    things.append(canvas.ids[-1])


def render_image(seed: int, split: str, index: int, image_size: int
                 ) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
  """Renders one image of a split.

  Args:
    seed: dataset seed.
    split: 'train' or 'val'.
    index: index of the image within its split.
    image_size: height and width in pixels.

  Returns:
    (image uint8 [size, size, 3], segment ids int64 [size, size] with 0 for
    void, COCO `segments_info` list).
  """
  rng = np.random.default_rng([seed, _SPLIT_SEEDS[split], index])
  canvas = _Canvas(rgb=np.zeros((image_size, image_size, 3), np.float32),
                   segments=np.zeros((image_size, image_size), np.int64))
  _draw_stuff(rng, canvas)
  if rng.random() < _CROWD_PROBABILITY:
    _draw_crowd(rng, canvas)
  _draw_things(rng, canvas)
  rgb = canvas.rgb + rng.normal(0, 0.015, canvas.rgb.shape)
  image = np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
  infos = coco_panoptic_io.segments_info_from_map(
      canvas.segments, canvas.categories, canvas.crowd, canvas.ids)
  return image, canvas.segments, infos


def _write_split(output_dir: str, split: str, num_images: int,
                 image_size: int, seed: int) -> None:
  image_dir = os.path.join(output_dir, split)
  mask_dir = os.path.join(output_dir, 'annotations', f'panoptic_{split}')
  os.makedirs(image_dir, exist_ok=True)
  os.makedirs(mask_dir, exist_ok=True)
  images, annotations = [], []
  for index in range(num_images):
    image_id = _SPLIT_ID_OFFSETS[split] + index + 1
    image, segments, infos = render_image(seed, split, index, image_size)
    file_name = f'{image_id:012d}.jpg'
    png_name = f'{image_id:012d}.png'
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=92)
    with open(os.path.join(image_dir, file_name), 'wb') as f:
      f.write(buffer.getvalue())
    coco_panoptic_io.write_segment_map(os.path.join(mask_dir, png_name),
                                       segments)
    images.append({'id': image_id, 'file_name': file_name,
                   'height': image_size, 'width': image_size})
    annotations.append({'image_id': image_id, 'file_name': png_name,
                        'segments_info': infos})
  coco_panoptic_io.write_json(
      os.path.join(output_dir, 'annotations', f'panoptic_{split}.json'), {
          'info': {'description': 'maskconver synthetic panoptic shapes',
                   'seed': seed, 'split': split},
          'licenses': [],
          'images': images,
          'annotations': annotations,
          'categories': [dict(c) for c in CATEGORIES],
      })


def generate(output_dir: str, num_train: int, num_val: int,
             image_size: int = 128, seed: int = 0) -> Dict[str, Dict[str, str]]:
  """Writes the synthetic dataset.

  Args:
    output_dir: dataset root, created if missing.
    num_train: number of training images.
    num_val: number of validation images.
    image_size: height and width of every image, at least 32.
    seed: any non-negative integer; the output depends only on the arguments.

  Returns:
    {'train': paths, 'val': paths}, where paths has 'image_dir',
    'panoptic_json' and 'panoptic_masks_dir', ready for the converter.
  """
  if image_size < 32:
    raise ValueError(f'image_size must be at least 32, got {image_size}')
  if num_train < 0 or num_val < 0 or seed < 0:
    raise ValueError('num_train, num_val and seed must be non-negative, got '
                     f'{num_train}, {num_val}, {seed}')
  paths = {}
  for split, count in (('train', num_train), ('val', num_val)):
    _write_split(output_dir, split, count, image_size, seed)
    paths[split] = split_paths(output_dir, split)
  return paths


def split_paths(output_dir: str, split: str) -> Dict[str, str]:
  """The converter inputs of one split of a COCO panoptic layout."""
  return {
      'image_dir': os.path.join(output_dir, split),
      'panoptic_json': os.path.join(output_dir, 'annotations',
                                    f'panoptic_{split}.json'),
      'panoptic_masks_dir': os.path.join(output_dir, 'annotations',
                                         f'panoptic_{split}'),
  }


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--output_dir', required=True)
  parser.add_argument('--num_train', type=int, default=400)
  parser.add_argument('--num_val', type=int, default=50)
  parser.add_argument('--image_size', type=int, default=128)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  try:
    generate(args.output_dir, args.num_train, args.num_val, args.image_size,
             args.seed)
  except ValueError as e:
    parser.error(str(e))
  print(f'Wrote {args.num_train} train and {args.num_val} val images to '
        f'{args.output_dir} in {time.perf_counter() - start:.1f} s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
