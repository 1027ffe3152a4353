"""Scenarios of the synthetic panoptic dataset, and statistics to check them.

Each scenario draws a whole scene (stuff, an optional crowd group, things) on
a `synthetic_drawing.Canvas` with the same seven categories as the default:

* `shapes` (no rate): the default dataset of `synthetic`.
* `collisions` (rate 0.5): instances of different classes share their mask
  centroid, the case where MaskConver's class embeddings must break ties.
  Things never overlap each other. Each thing placement is, with probability
  `rate`, a colliding pair instead of a single thing: either a ring (disc
  class) or square frame (square class) with a thing of another class
  (disc, square or cross) in its hole, at least 2.5 px from the hole's edge;
  or, at most once per image and for about half of the images that have a
  pair, a thing (disc, square or cross) in the middle of an elliptic lake
  (water) that lies inside the ground, away from the horizon; the lake keeps
  the thing's hole and its void border is its own outermost pixel layer.
  Both members of a pair are centrally symmetric about one centre on the
  half-pixel grid and lie inside the image, so their centroids coincide
  exactly. Other things are the usual shapes, covering nothing placed before.
* `same_size_collisions` (rate 0.5): `collisions` without lakes, and each
  ring or frame is as large as the thing in its hole: its outer reach is
  chosen so that its area equals the inner thing's (within the pixel grid's
  rounding), so both have the same size and MaskConver assigns them to the
  same head level, where only the class embedding tells their centers
  apart. In `collisions` the ring is the larger of the two and lands on
  the same level as its inner thing only when both sizes fall between the
  same level boundaries.
* `concave` (rate 0.8): stuff, crowd and placement as in `shapes` (things may
  occlude each other by the same rule), but each thing is, with probability
  `rate`, a concave variant of its class, turned by a random angle: a ring
  (disc), a C (square with a notch cut from one side past the centre), an L
  (cross) or a chevron (triangle). Their box centre mostly lies off the
  object. The C's notch is shallow enough that its centroid mostly lies on
  the object; the centroid of the ring, the L and the chevron does not (an
  L's centroid is on the object only for arms so wide that its box centre
  is too). Rate 0 renders exactly the `shapes` images.
* `context` (rate 0.5, `synthetic_context`): a thing's class is set by a
  flag far from it; see that module.

`scenario_statistics` and `measure` report how often the claims' conditions
hold in a dataset: the share of things whose centroid collides with the
centroid of a segment of another class (in all, and with one on the same
head level of `maskconver_synthetic`), and of things whose box centre or
centroid lies off the object.
"""

import dataclasses
import functools
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from maskconver.data import coco_panoptic_io
from maskconver.data import synthetic_context
from maskconver.data import synthetic_drawing as drawing
from maskconver.data.synthetic_drawing import CROSS, DISC, SQUARE
from maskconver.data.synthetic_drawing import THING_IDS, WATER

# Default rate of each scenario (`shapes` has none).
DEFAULT_RATES = {'shapes': None, 'collisions': 0.5,
                 'same_size_collisions': 0.5, 'concave': 0.8,
                 'context': synthetic_context.DEFAULT_RATE}
SCENARIOS = tuple(DEFAULT_RATES)

# Distance (px, between continuous outlines) from an inner thing to the edge
# of the hole around it: at least one whole pixel of background between them.
_GAP = 2.5
# Farthest point of a shape from its centre, per pixel of `extent`, in the
# Euclidean (ring, lake) and Chebyshev (square frame) distances.
_EUCLIDEAN_REACH = {DISC: 0.5, SQUARE: 0.425 * math.sqrt(2),
                    CROSS: 0.5 * math.hypot(1.0, 0.34)}
_CHEBYSHEV_REACH = {DISC: 0.5, SQUARE: 0.425, CROSS: 0.5}
_CENTRED_THINGS = (DISC, SQUARE, CROSS)
_LAKE_PROBABILITY = 0.5
_TRIES = 30
# Hole radius of a same-size pair, as a fraction of the image side (at least
# the first number of pixels): large enough for a ring a few pixels wide.
_SAME_SIZE_HOLE = ((10.0, 0.08), (16.0, 0.15))
# Head levels of `maskconver_synthetic` (L3-L5): an instance of size
# sqrt(area) goes one level up per boundary it reaches; the boundaries are
# its parser's `level_base_size` (24) doubled per level, for images of
# `level_reference_size` (128) px and scaled with the image side.
LEVEL_BOUNDARIES = (24.0, 48.0)
LEVEL_REFERENCE_SIZE = 128.0


def resolve_rate(scenario: str, rate: Optional[float]) -> Optional[float]:
  """Checks a scenario and its rate; returns the rate to use.

  Args:
    scenario: one of `SCENARIOS`.
    rate: a rate in [0, 1], or None for the scenario's default.

  Returns:
    `rate`, or the scenario's default if None (None for `shapes`).

  Raises:
    ValueError: unknown scenario, rate outside [0, 1], or a rate for
      `shapes`.
  """
  if scenario not in DEFAULT_RATES:
    raise ValueError(f'scenario must be one of {", ".join(SCENARIOS)}, got '
                     f'{scenario!r}')
  if rate is None:
    return DEFAULT_RATES[scenario]
  if scenario == 'shapes':
    raise ValueError(f"rate applies to scenarios other than 'shapes', got "
                     f'rate={rate}')
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f'rate must lie in [0, 1], got {rate}')
  return float(rate)


def draw_scene(rng: np.random.Generator, canvas: drawing.Canvas,
               scenario: str, rate: Optional[float]) -> None:
  """Draws stuff, maybe a crowd group, and things of one scenario.

  Args:
    rng: the image's random generator.
    canvas: an empty canvas, drawn on in place.
    scenario: one of `SCENARIOS`.
    rate: the scenario's rate from `resolve_rate`.
  """
  if scenario in ('collisions', 'same_size_collisions'):
    _draw_collisions(rng, canvas, rate,
                     same_size=scenario == 'same_size_collisions')
    return
  if scenario == 'context':
    synthetic_context.draw_context(rng, canvas, rate)
    return
  drawing.draw_stuff(rng, canvas)
  if rng.random() < drawing.CROWD_PROBABILITY:
    drawing.draw_crowd(rng, canvas)
  if scenario == 'shapes':
    drawing.draw_things(rng, canvas)
  else:
    _draw_concave_things(rng, canvas, rate)


def _concave_mask(category: int, yy: np.ndarray, xx: np.ndarray, cy: float,
                  cx: float, extent: float, angle: float, turn: float,
                  shape: float) -> np.ndarray:
  """The concave variant of `drawing.shape_mask`, turned by `turn` more.

  `shape` in [0, 1) picks the proportions: the ring's hole, the C's notch
  depth, the L's arm width, the chevron's notch depth.
  """
  cos, sin = np.cos(angle + turn), np.sin(angle + turn)
  u = (xx - cx) * cos + (yy - cy) * sin
  v = -(xx - cx) * sin + (yy - cy) * cos
  half = extent / 2
  if category == DISC:
    inner = half * (0.45 + 0.2 * shape)
    return (u * u + v * v <= half * half) & (u * u + v * v >= inner * inner)
  side = half * 0.85
  square = (np.abs(u) <= side) & (np.abs(v) <= side)
  if category == SQUARE:
    # A notch from the +u side to `depth` past the centre, 0.9 side wide.
    depth = side * (0.05 + 0.08 * shape)
    return square & ~((u > -depth) & (np.abs(v) < 0.45 * side))
  if category == CROSS:
    # Two arms of width `arm` along the -u and -v sides of the square.
    arm = side * (0.5 + 0.2 * shape)
    return square & ((u <= -side + arm) | (v <= -side + arm))
  # Chevron: the triangle of `shape_mask`, 1.25 times larger, minus a copy
  # of itself shifted towards its base.
  scale = half * 1.25

  def triangle(v_shift):
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
      normal = 2 * np.pi * k / 3 + np.pi / 2
      inside &= (u * np.cos(normal) + (v - v_shift) * np.sin(normal) <=
                 scale * 0.6)
    return inside
  return triangle(0.0) & ~triangle(scale * (0.55 + 0.25 * shape))


def _draw_concave_things(rng: np.random.Generator, canvas: drawing.Canvas,
                         rate: float) -> None:
  """`drawing.draw_things` with concave variants at `rate`."""
  size = canvas.segments.shape[0]
  yy, xx = drawing.grid(size)
  things = []
  for _ in range(int(rng.integers(2, 6))):
    category = THING_IDS[int(rng.integers(len(THING_IDS)))]
    extent = rng.uniform(max(14.0, 0.14 * size), max(20.0, 0.35 * size))
    touch = rng.random() < drawing.TOUCH_PROBABILITY
    mask_fn = drawing.shape_mask
    # No draw at rate 0, so that it renders the `shapes` images exactly.
    if rate > 0 and rng.random() < rate:
      mask_fn = functools.partial(_concave_mask,
                                  turn=rng.uniform(0, 2 * np.pi),
                                  shape=rng.uniform())
    mask = drawing.place(rng, canvas, things, yy, xx, category, extent,
                         touch, mask_fn)
    if mask is None:
      continue
    drawing.add_segment(rng, canvas, mask, category, False,
                        drawing.thing_color(rng, category, yy, xx))
    things.append(canvas.ids[-1])


def _half_pixel(rng: np.random.Generator, low: float,
                high: float) -> Optional[float]:
  """A random multiple of 0.5 in [low, high], or None if there is none.

  Every shape centred there that is symmetric under a half turn covers a
  pixel set that is too, since pixel centres lie at k + 0.5.
  """
  first, last = math.ceil(2 * low), math.floor(2 * high)
  if first > last:
    return None
  return int(rng.integers(first, last + 1)) / 2


def _outer_boundary_pixels(mask: np.ndarray) -> np.ndarray:
  """Pixels of `mask` with a 4-neighbour outside it (symmetric rule)."""
  interior = mask.copy()
  interior[1:] &= mask[:-1]
  interior[:-1] &= mask[1:]
  interior[:, 1:] &= mask[:, :-1]
  interior[:, :-1] &= mask[:, 1:]
  return mask & ~interior


@dataclasses.dataclass
class _Lake:
  mask: np.ndarray  # bool [size, size], boundary pixels included.
  cy: float
  cx: float
  radius: float     # Smaller semi-axis.


def _lake(rng: np.random.Generator, horizon: np.ndarray, yy: np.ndarray,
          xx: np.ndarray) -> Optional[_Lake]:
  """An axis-aligned ellipse in the ground 3 px below the horizon, or None."""
  size = yy.shape[0]
  top = float(horizon.max()) + 3
  low, high = 8.0, min(0.2 * size, (size - 2 - top) / 2 - 0.5)
  if high < low:
    return None
  semi_y = rng.uniform(low, high)
  semi_x = rng.uniform(semi_y, max(semi_y, min(1.8 * semi_y, 0.3 * size)))
  cy = _half_pixel(rng, top + semi_y, size - 2 - semi_y)
  cx = _half_pixel(rng, 2 + semi_x, size - 2 - semi_x)
  if cy is None or cx is None:
    return None
  mask = ((yy - cy) / semi_y)**2 + ((xx - cx) / semi_x)**2 <= 1
  return _Lake(mask, cy, cx, semi_y)


def _concentric_pair(rng: np.random.Generator, yy: np.ndarray,
                     xx: np.ndarray, occupied: np.ndarray,
                     same_size: bool = False
                     ) -> Optional[Tuple[np.ndarray, List[Tuple[int, Any]]]]:
  """A ring or square frame with another class's thing in its hole.

  With `same_size`, the hole is drawn first, then the ring (frame) takes
  the pixels outside the hole nearest the centre until it has as many as
  the inner thing, nearest by distance (the frame's: Chebyshev, then
  Euclidean within a layer) and whole groups of equidistant pixels at a
  time, so it stays centrally symmetric and its area exceeds the inner
  thing's by less than one such group (at most 8 pixels).

  Returns:
    (footprint bool [size, size], [(category, mask), (category, mask)]), or
    None if no free position was found.
  """
  size = yy.shape[0]
  outer = (DISC, SQUARE)[int(rng.integers(2))]
  choices = (SQUARE, CROSS) if outer == DISC else (DISC, CROSS)
  inner = choices[int(rng.integers(2))]
  inner_reach = (_EUCLIDEAN_REACH if outer == DISC else _CHEBYSHEV_REACH)[inner]
  if same_size:
    (low_px, low), (high_px, high) = _SAME_SIZE_HOLE
    hole = rng.uniform(max(low_px, low * size), max(high_px, high * size))
    inner_extent = (hole - _GAP) / inner_reach * rng.uniform(0.85, 1.0)
    # The inner shape's area, drawn at the middle of the image.
    middle = size / 2
    area = float(drawing.shape_mask(inner, yy, xx, middle, middle,
                                    inner_extent, 0.0).sum())
    # Ring: pi (R^2 - hole^2) = area; frame: (2R)^2 - (2 hole)^2 = area;
    # plus room for the pixel grid's rounding.
    reach = math.sqrt(hole**2 + area / (math.pi if outer == DISC else 4.0))
    reach += 1.5
  else:
    extent = rng.uniform(max(24.0, 0.25 * size), max(32.0, 0.42 * size))
    reach = extent / 2 if outer == DISC else 0.425 * extent
    hole = reach * rng.uniform(0.55, 0.7)
    inner_extent = (hole - _GAP) / inner_reach * rng.uniform(0.75, 1.0)
  for _ in range(_TRIES):
    cy = _half_pixel(rng, reach + 1, size - 1 - reach)
    cx = _half_pixel(rng, reach + 1, size - 1 - reach)
    if cy is None or cx is None:
      return None
    if outer == DISC:
      distance = np.hypot(yy - cy, xx - cx)
    else:
      distance = np.maximum(np.abs(yy - cy), np.abs(xx - cx))
    inner_mask = drawing.shape_mask(inner, yy, xx, cy, cx, inner_extent, 0.0)
    order, outer_reach = distance, reach
    if same_size:
      if outer == SQUARE:
        # Chebyshev layers are 1 px apart; Euclidean ties within one add
        # less than 1e-3 * 1.5 * size.
        order = distance + 1e-3 * np.hypot(yy - cy, xx - cx)
      ring = np.sort(order[distance >= hole])
      outer_reach = float(ring[min(int(inner_mask.sum()), ring.size) - 1])
      if outer_reach > reach:
        continue
    footprint = order <= outer_reach
    if (footprint & occupied).any():
      continue
    return footprint, [(outer, footprint & (distance >= hole)),
                       (inner, inner_mask)]
  return None


def _single_thing(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
                  occupied: np.ndarray) -> Optional[Tuple[int, np.ndarray]]:
  """A usual thing covering nothing in `occupied`, or None."""
  size = yy.shape[0]
  category = THING_IDS[int(rng.integers(len(THING_IDS)))]
  extent = rng.uniform(max(14.0, 0.14 * size), max(20.0, 0.35 * size))
  for _ in range(_TRIES):
    angle = rng.uniform(-np.pi / 6, np.pi / 6)
    cy, cx = rng.uniform(0.2 * extent, size - 0.2 * extent, 2)
    mask = drawing.shape_mask(category, yy, xx, cy, cx, extent, angle)
    if mask.sum() >= 0.25 * extent * extent and not (mask & occupied).any():
      return category, mask
  return None


def _draw_crowd_outside(rng: np.random.Generator, canvas: drawing.Canvas,
                        occupied: np.ndarray) -> None:
  """`drawing.draw_crowd`, retried until it covers nothing in `occupied`."""
  for _ in range(5):
    scratch = drawing.Canvas(canvas.rgb.copy(), canvas.segments.copy(),
                             list(canvas.ids), list(canvas.categories),
                             list(canvas.crowd))
    drawing.draw_crowd(rng, scratch)
    if len(scratch.ids) == len(canvas.ids):
      return  # Too small a group: no crowd in this image.
    if not (occupied & (scratch.segments == scratch.ids[-1])).any():
      canvas.rgb[:] = scratch.rgb
      canvas.segments[:] = scratch.segments
      for name in ('ids', 'categories', 'crowd'):
        getattr(canvas, name).append(getattr(scratch, name)[-1])
      return


def _draw_collisions(rng: np.random.Generator, canvas: drawing.Canvas,
                     rate: float, same_size: bool = False) -> None:
  """The `collisions` or `same_size_collisions` scene (module docstring)."""
  size = canvas.segments.shape[0]
  yy, xx = drawing.grid(size)
  labels, horizon = drawing.horizon_labels(rng, size)
  pairs = [rng.random() < rate for _ in range(int(rng.integers(2, 6)))]
  lake = None
  if not same_size and any(pairs) and rng.random() < _LAKE_PROBABILITY:
    lake = _lake(rng, horizon, yy, xx)
  if lake is None:
    labels = drawing.add_water_blob(rng, labels, horizon)
    border = drawing.stuff_border(labels)
  else:
    pairs.remove(True)
    border = drawing.stuff_border(labels) | _outer_boundary_pixels(lake.mask)
    labels = np.where(lake.mask, WATER, labels)
  drawing.paint_stuff(rng, canvas, labels, border)

  occupied = np.zeros((size, size), dtype=bool)
  if lake is not None:
    occupied |= lake.mask
  if rng.random() < drawing.CROWD_PROBABILITY:
    _draw_crowd_outside(rng, canvas, occupied)
    if canvas.crowd and canvas.crowd[-1]:
      occupied |= canvas.segments == canvas.ids[-1]

  placed = []
  if lake is not None:
    category = _CENTRED_THINGS[int(rng.integers(len(_CENTRED_THINGS)))]
    extent = ((lake.radius - 1 - _GAP) / _EUCLIDEAN_REACH[category] *
              rng.uniform(0.6, 1.0))
    placed.append((category, drawing.shape_mask(
        category, yy, xx, lake.cy, lake.cx, extent, 0.0)))
  for pair in pairs:
    if pair:
      found = _concentric_pair(rng, yy, xx, occupied, same_size)
      if found is not None:
        occupied |= found[0]
        placed.extend(found[1])
    else:
      found = _single_thing(rng, yy, xx, occupied)
      if found is not None:
        occupied |= found[1]
        placed.append(found)
  for category, mask in placed:
    drawing.add_segment(rng, canvas, mask, category, False,
                        drawing.thing_color(rng, category, yy, xx))


# Counts of `scenario_statistics`; its shares are over `things`.
_COUNTS = ('images', 'things', 'colliding', 'same_level_colliding',
           'box_center_off_object', 'centroid_off_object')
_SHARES = _COUNTS[2:]


def head_level(area: float, image_side: int) -> int:
  """Head level index (0 = L3) of `maskconver_synthetic` for a segment.

  Args:
    area: the segment's pixel count.
    image_side: the longer side of the image, px.
  """
  scale = image_side / LEVEL_REFERENCE_SIZE
  return sum(math.sqrt(area) >= b * scale for b in LEVEL_BOUNDARIES)


def scenario_statistics(segments: np.ndarray,
                        segments_info: Sequence[Mapping[str, Any]],
                        thing_ids: Sequence[int] = THING_IDS,
                        max_distance: float = 1.0) -> Dict[str, float]:
  """Centroid collisions and off-object centres of one image's things.

  Centroids are the mean pixel centre of a mask (pixel (i, j) spans
  [i, i + 1] x [j, j + 1]); the box centre is the middle of the mask's
  bounding box. A centre is "off the object" if the pixel it falls in (both
  coordinates floored) is not in the mask.

  Args:
    segments: int [height, width] segment ids, 0 = void.
    segments_info: COCO `segments_info` of the image (`id`, `category_id`,
      `iscrowd`).
    thing_ids: category ids of the thing classes.
    max_distance: largest centroid distance (px) that counts as colliding.

  Returns:
    Counts `images` (1), `things` (non-crowd thing instances), `colliding`
    (things whose centroid lies within `max_distance` of the centroid of any
    other segment of another category), `same_level_colliding` (those of
    them colliding with such a segment on their own `head_level`),
    `box_center_off_object`, `centroid_off_object`, and the shares of each
    count over `things` (`colliding_share`, ...; NaN without things).
  """
  side = max(segments.shape)
  centroids = {}
  for info in segments_info:
    ys, xs = np.nonzero(segments == info['id'])
    if ys.size:
      centroids[info['id']] = (ys.mean() + 0.5, xs.mean() + 0.5, ys, xs,
                               info['category_id'],
                               head_level(ys.size, side))
  counts = {name: 0 for name in _COUNTS}
  counts['images'] = 1
  for info in segments_info:
    if (info['category_id'] not in thing_ids or info.get('iscrowd', 0) or
        info['id'] not in centroids):
      continue
    cy, cx, ys, xs, category, level = centroids[info['id']]
    counts['things'] += 1
    partners = [
        other_level
        for other, (oy, ox, _, _, other_category, other_level)
        in centroids.items()
        if other != info['id'] and other_category != category and
        math.hypot(cy - oy, cx - ox) <= max_distance]
    counts['colliding'] += bool(partners)
    counts['same_level_colliding'] += level in partners
    box_y = (ys.min() + ys.max() + 1) // 2
    box_x = (xs.min() + xs.max() + 1) // 2
    counts['box_center_off_object'] += int(
        segments[box_y, box_x] != info['id'])
    counts['centroid_off_object'] += int(
        segments[int(cy), int(cx)] != info['id'])
  return _with_shares(counts)


def _with_shares(counts: Dict[str, int]) -> Dict[str, float]:
  stats = dict(counts)
  for name in _SHARES:
    stats[f'{name}_share'] = (counts[name] / counts['things']
                              if counts['things'] else float('nan'))
  return stats


def measure(panoptic_json: str, panoptic_masks_dir: str) -> Dict[str, float]:
  """`scenario_statistics` summed over a COCO panoptic split.

  Args:
    panoptic_json: the split's COCO panoptic JSON (its `categories` tell
      things from stuff).
    panoptic_masks_dir: the folder of its PNGs.

  Returns:
    The counts of `scenario_statistics` summed over all images, and the
    shares of the sums.
  """
  data = coco_panoptic_io.load_json(panoptic_json)
  thing_ids = [c['id'] for c in data['categories'] if c['isthing']]
  totals = {name: 0 for name in _COUNTS}
  for annotation in data['annotations']:
    segments = coco_panoptic_io.read_segment_map(
        os.path.join(panoptic_masks_dir, annotation['file_name']))
    stats = scenario_statistics(segments, annotation['segments_info'],
                                thing_ids)
    for name in totals:
      totals[name] += stats[name]
  return _with_shares(totals)


def format_statistics(stats: Mapping[str, float]) -> str:
  """One line of `measure`'s results."""
  return (f'statistics: {stats["images"]} images, {stats["things"]} things, '
          f'colliding_share={stats["colliding_share"]:.3f}, '
          'same_level_colliding_share='
          f'{stats["same_level_colliding_share"]:.3f}, '
          'box_center_off_object_share='
          f'{stats["box_center_off_object_share"]:.3f}, '
          f'centroid_off_object_share={stats["centroid_off_object_share"]:.3f}')
