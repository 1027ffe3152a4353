"""Drawing primitives of the synthetic panoptic dataset.

The categories, a canvas of colours and segment ids, the stuff background
(sky, ground, water), the four thing shapes with their textures, crowd groups
and the default placement of things. `synthetic` renders its default `shapes`
scenario with these, and `synthetic_scenarios` builds its scenarios on them.
Every function draws from the `rng` it is given, so a scene is a deterministic
function of the generator's seed and the order of calls.
"""

import dataclasses
from typing import Callable, List, Optional, Tuple

import numpy as np
from PIL import Image

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
_WATER_PROBABILITY = 0.6
CROWD_PROBABILITY = 0.5
TOUCH_PROBABILITY = 0.3
# An occluded thing keeps at least this fraction of its visible pixels.
_MIN_VISIBLE_FRACTION = 0.5
_PLACEMENT_TRIES = 20


@dataclasses.dataclass
class Canvas:
  """The image being drawn: colours, segment ids and segment metadata."""
  rgb: np.ndarray        # float32 [size, size, 3] in [0, 1]
  segments: np.ndarray   # int64 [size, size], 0 = void
  ids: List[int] = dataclasses.field(default_factory=list)
  categories: List[int] = dataclasses.field(default_factory=list)
  crowd: List[bool] = dataclasses.field(default_factory=list)


def grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
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


def _new_segment_id(rng: np.random.Generator, canvas: Canvas) -> int:
  while True:
    segment_id = int(rng.integers(1, 256**3))
    if segment_id not in canvas.ids:
      return segment_id


def add_segment(rng: np.random.Generator, canvas: Canvas, mask: np.ndarray,
                category: int, crowd: bool, color: np.ndarray) -> None:
  """Paints bool [size, size] `mask` with `color` [size, size, 3] as a segment.

  The segment covers whatever was drawn there before.
  """
  segment_id = _new_segment_id(rng, canvas)
  canvas.segments[mask] = segment_id
  canvas.rgb[mask] = color[mask]
  canvas.ids.append(segment_id)
  canvas.categories.append(category)
  canvas.crowd.append(crowd)


def horizon_labels(rng: np.random.Generator, size: int
                   ) -> Tuple[np.ndarray, np.ndarray]:
  """Sky over a noisy horizon: labels int [size, size], horizon [size]."""
  yy, xx = grid(size)
  phase = rng.uniform(0, 2 * np.pi, 3)
  amplitude = size * rng.uniform(0.5, 1.0, 3) * np.array([0.07, 0.035, 0.015])
  horizon = size * rng.uniform(0.3, 0.55) + sum(
      a * np.sin(2 * np.pi * f * xx[0] / size + p)
      for a, f, p in zip(amplitude, (1, 2, 5), phase))
  return np.where(yy < horizon[None, :], SKY, GROUND), horizon


def add_water_blob(rng: np.random.Generator, labels: np.ndarray,
                   horizon: np.ndarray) -> np.ndarray:
  """Maybe turns an irregular blob of the ground into water."""
  yy, xx = grid(labels.shape[0])
  size = labels.shape[0]
  if rng.random() < _WATER_PROBABILITY:
    cy = rng.uniform(horizon.max() + 0.15 * size, 0.9 * size)
    cx = rng.uniform(0.25, 0.75) * size
    theta = np.arctan2(yy - cy, xx - cx)
    wobble = sum(rng.uniform(0.05, 0.2) * np.sin(k * theta + rng.uniform(0, 7))
                 for k in (2, 3, 5))
    radius = size * rng.uniform(0.12, 0.2) * (1 + wobble)
    water = np.hypot(yy - cy, xx - cx) < radius
    labels = np.where(water & (labels == GROUND), WATER, labels)
  return labels


def stuff_border(labels: np.ndarray) -> np.ndarray:
  """COCO-like thin void borders where two stuff regions meet, bool."""
  border = np.zeros(labels.shape, dtype=bool)
  border[:-1] |= labels[:-1] != labels[1:]
  border[:, :-1] |= labels[:, :-1] != labels[:, 1:]
  return border


def paint_stuff(rng: np.random.Generator, canvas: Canvas,
                labels: np.ndarray, border: np.ndarray) -> None:
  """Adds the stuff segments of `labels` with void `border` pixels."""
  size = canvas.segments.shape[0]
  yy, xx = grid(size)
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
      add_segment(rng, canvas, mask, category, False,
                  np.broadcast_to(color, canvas.rgb.shape))
  canvas.segments[border] = 0
  canvas.rgb[border] = canvas.rgb[border] * 0.85


def draw_stuff(rng: np.random.Generator, canvas: Canvas) -> None:
  """Sky over a noisy horizon, textured ground, maybe a water blob."""
  labels, horizon = horizon_labels(rng, canvas.segments.shape[0])
  labels = add_water_blob(rng, labels, horizon)
  paint_stuff(rng, canvas, labels, stuff_border(labels))


def shape_mask(category: int, yy: np.ndarray, xx: np.ndarray, cy: float,
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


def thing_color(rng: np.random.Generator, category: int, yy: np.ndarray,
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


def place(rng: np.random.Generator, canvas: Canvas, things: List[int],
          yy: np.ndarray, xx: np.ndarray, category: int, extent: float,
          touch: bool, mask_fn: Callable[..., np.ndarray] = shape_mask
          ) -> Optional[np.ndarray]:
  """Finds a position that occludes no earlier thing too much, or None.

  Args:
    rng: the image's random generator.
    canvas: the image drawn so far.
    things: segment ids of the things placed so far.
    yy: pixel-centre y coordinates from `grid`.
    xx: pixel-centre x coordinates from `grid`.
    category: thing category id.
    extent: size of the shape in pixels.
    touch: whether to put the shape next to one of `things`.
    mask_fn: draws the shape, with the signature of `shape_mask`.

  Returns:
    The bool [size, size] mask of the placed shape, or None if 20 tries
    all failed.
  """
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
    mask = mask_fn(category, yy, xx, cy, cx, extent, angle)
    if mask.sum() < 0.5 * extent * extent * 0.5:
      continue
    if all(np.sum((canvas.segments == t) & ~mask) >=
           _MIN_VISIBLE_FRACTION * np.sum(canvas.segments == t)
           for t in things):
      return mask
  return None


def draw_crowd(rng: np.random.Generator, canvas: Canvas) -> None:
  """A tight cluster of small same-class shapes, one iscrowd segment."""
  size = canvas.segments.shape[0]
  yy, xx = grid(size)
  category = THING_IDS[int(rng.integers(len(THING_IDS)))]
  cy, cx = rng.uniform(0.2, 0.8, 2) * size
  spread = size * 0.07
  mask = np.zeros(canvas.segments.shape, dtype=bool)
  color = thing_color(rng, category, yy, xx)
  for _ in range(int(rng.integers(8, 17))):
    extent = rng.uniform(max(4.0, 0.035 * size), max(6.0, 0.055 * size))
    my, mx = rng.normal((cy, cx), spread)
    mask |= shape_mask(category, yy, xx, my, mx, extent,
                       rng.uniform(-0.5, 0.5))
  if mask.sum() >= 30:
    add_segment(rng, canvas, mask, category, True, color)


def draw_things(rng: np.random.Generator, canvas: Canvas) -> None:
  """Two to five things that may touch and partly occlude each other."""
  size = canvas.segments.shape[0]
  yy, xx = grid(size)
  things = []
  for _ in range(int(rng.integers(2, 6))):
    category = THING_IDS[int(rng.integers(len(THING_IDS)))]
    extent = rng.uniform(max(14.0, 0.14 * size), max(20.0, 0.35 * size))
    touch = rng.random() < TOUCH_PROBABILITY
    mask = place(rng, canvas, things, yy, xx, category, extent, touch)
    if mask is None:
      continue
    add_segment(rng, canvas, mask, category, False,
                thing_color(rng, category, yy, xx))
    things.append(canvas.ids[-1])
