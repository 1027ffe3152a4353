"""Panoptic overlays: coloured segments, boundaries, class names, a legend.

Stuff segments take their class colour; each thing instance gets its own
colour near its class colour (`palette.instance_color`). Colours are blended
with the image, `alpha * colour + (1 - alpha) * image`; every segment pixel
with a 4-neighbour in another segment (or void) is a boundary pixel, drawn in
`BOUNDARY_COLOR`; void pixels show the image unchanged.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from maskconver import keys
from maskconver.visualization import legend as legend_lib
from maskconver.visualization import palette

BOUNDARY_COLOR = (255, 255, 255)
DEFAULT_ALPHA = 0.55
# Overlays are drawn with the long side at most MAX_DISPLAY_SIDE; tiny images
# are enlarged towards MIN_DISPLAY_SIDE.
MAX_DISPLAY_SIDE = 1600
MIN_DISPLAY_SIDE = 256


def _check_inputs(image: np.ndarray, category_mask: np.ndarray,
                  instance_mask: np.ndarray, num_classes: int,
                  colors: np.ndarray) -> Tuple[np.ndarray, np.ndarray,
                                               np.ndarray]:
  """Validates and normalizes the arguments of `render_overlay`."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f'image must be [height, width, 3] (or gray), got shape '
                     f'{image.shape}')
  if image.dtype != np.uint8:
    raise ValueError(f'image must be uint8, got {image.dtype}')
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  category_mask = np.asarray(category_mask).astype(np.int64)
  instance_mask = np.asarray(instance_mask).astype(np.int64)
  if (category_mask.shape != image.shape[:2] or
      instance_mask.shape != image.shape[:2]):
    raise ValueError(
        f'category_mask {category_mask.shape} and instance_mask '
        f'{instance_mask.shape} must match the image size {image.shape[:2]}')
  bad = np.unique(category_mask[(category_mask < keys.VOID_CLASS) |
                                (category_mask >= num_classes)])
  if bad.size:
    raise ValueError(f'category_mask has class ids {bad.tolist()} outside '
                     f'[0, {num_classes}) (and not VOID_CLASS)')
  if np.shape(colors) != (num_classes, 3):
    raise ValueError(f'colors must be [{num_classes}, 3], got '
                     f'{np.shape(colors)}')
  return image, category_mask, instance_mask


def segment_ids(category_mask: np.ndarray, instance_mask: np.ndarray,
                is_thing: Sequence[bool]) -> np.ndarray:
  """One id per panoptic segment: a stuff class or a thing instance.

  Args:
    category_mask: int [height, width] training class ids, VOID_CLASS void.
    instance_mask: int [height, width], instance ids (ignored for stuff).
    is_thing: thing flag of each training class.

  Returns:
    int64 [height, width]: -1 on void, else an id unique per segment.
  """
  category_mask = np.asarray(category_mask).astype(np.int64)
  instance_mask = np.asarray(instance_mask).astype(np.int64)
  valid = category_mask != keys.VOID_CLASS
  thing_flags = np.asarray(is_thing, bool)
  classes = np.where(valid, category_mask, 0)
  instances = np.where(thing_flags[classes], np.maximum(instance_mask, 0), 0)
  stride = int(instances.max(initial=0)) + 1
  return np.where(valid, classes * stride + instances, -1)


def segment_boundaries(ids: np.ndarray) -> np.ndarray:
  """Segment pixels that touch another segment or void.

  Args:
    ids: int [height, width] segment ids, -1 on void (see `segment_ids`).

  Returns:
    bool [height, width]; True on non-void pixels with a 4-neighbour of a
    different id. The image border is not a boundary.
  """
  ids = np.asarray(ids)
  boundary = np.zeros(ids.shape, bool)
  vertical = ids[1:, :] != ids[:-1, :]
  horizontal = ids[:, 1:] != ids[:, :-1]
  boundary[1:, :] |= vertical
  boundary[:-1, :] |= vertical
  boundary[:, 1:] |= horizontal
  boundary[:, :-1] |= horizontal
  return boundary & (ids >= 0)


def segment_colors(category_mask: np.ndarray, instance_mask: np.ndarray,
                   is_thing: Sequence[bool], colors: np.ndarray) -> np.ndarray:
  """Display colour of every pixel: class colour, or instance colour.

  Returns:
    uint8 [height, width, 3]; void pixels are 0.
  """
  category_mask = np.asarray(category_mask).astype(np.int64)
  instance_mask = np.asarray(instance_mask).astype(np.int64)
  colors = np.asarray(colors, np.uint8)
  thing_flags = np.asarray(is_thing, bool)
  valid = category_mask != keys.VOID_CLASS
  classes = np.where(valid, category_mask, 0)
  instances = np.where(valid & thing_flags[classes],
                       np.maximum(instance_mask, 0), 0)
  stride = int(instances.max(initial=0)) + 1
  unique, inverse = np.unique(classes * stride + instances,
                              return_inverse=True)
  table = np.asarray(
      [palette.instance_color(colors[u // stride], int(u % stride))
       for u in unique], np.uint8).reshape(-1, 3)
  out = table[inverse.reshape(category_mask.shape)]
  out[~valid] = 0
  return out


def _label_anchor(mask: np.ndarray) -> Tuple[int, int, float]:
  """(row, column, distance to the border) of a mask's innermost pixel."""
  rows, cols = np.nonzero(mask)
  top, left = rows.min(), cols.min()
  crop = np.pad(mask[top:rows.max() + 1, left:cols.max() + 1], 1)
  distance = cv2.distanceTransform(crop.astype(np.uint8), cv2.DIST_L2, 3)
  row, col = np.unravel_index(np.argmax(distance), distance.shape)
  return top + row - 1, left + col - 1, float(distance[row, col])


def _draw_labels(canvas: np.ndarray, ids: np.ndarray,
                 category_mask: np.ndarray, class_names: Sequence[str],
                 pixel_colors: np.ndarray, font_size: int) -> np.ndarray:
  """Writes each large enough segment's class name inside it."""
  image = Image.fromarray(canvas)
  height, width = ids.shape
  present, counts = np.unique(ids[ids >= 0], return_counts=True)
  for segment, count in zip(present, counts):
    if count < 4 * font_size * font_size:
      continue
    mask = ids == segment
    row, col, _ = _label_anchor(mask)
    name = str(class_names[category_mask[row, col]])
    text_width, text_height = legend_lib.text_size(name, font_size)
    x = int(np.clip(col - text_width // 2, 0, max(0, width - text_width - 4)))
    y = int(np.clip(row - text_height // 2, 0,
                    max(0, height - text_height - 4)))
    background = tuple(int(c) for c in pixel_colors[row, col])
    legend_lib.draw_text_box(image, (x, y), name, font_size, background,
                             palette.contrasting_text_color(background))
  return np.asarray(image)


def render_segments(image: np.ndarray,
                    category_mask: np.ndarray,
                    instance_mask: np.ndarray,
                    class_names: Sequence[str],
                    is_thing: Sequence[bool],
                    colors: np.ndarray,
                    alpha: float = DEFAULT_ALPHA,
                    draw_boundaries: bool = True,
                    draw_labels: bool = True,
                    font_size: Optional[int] = None) -> np.ndarray:
  """Colours segments over the image; `render_overlay` without the legend.

  Args and checks: see `render_overlay`.

  Returns:
    uint8 [height, width, 3].
  """
  image, category_mask, instance_mask = _check_inputs(
      image, category_mask, instance_mask, len(class_names), colors)
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f'alpha must lie in [0, 1], got {alpha}')
  pixel_colors = segment_colors(category_mask, instance_mask, is_thing,
                                colors)
  valid = category_mask != keys.VOID_CLASS
  blended = np.round((1.0 - alpha) * image.astype(np.float32) +
                     alpha * pixel_colors.astype(np.float32))
  canvas = np.where(valid[..., None], blended, image).astype(np.uint8)
  ids = segment_ids(category_mask, instance_mask, is_thing)
  if draw_boundaries:
    canvas[segment_boundaries(ids)] = BOUNDARY_COLOR
  if draw_labels:
    if font_size is None:
      font_size = legend_lib.default_font_size(*image.shape[:2])
    canvas = _draw_labels(canvas, ids, category_mask, class_names,
                          pixel_colors, font_size)
  return canvas


def render_overlay(image: np.ndarray,
                   category_mask: np.ndarray,
                   instance_mask: np.ndarray,
                   class_names: Sequence[str],
                   is_thing: Sequence[bool],
                   colors: np.ndarray,
                   alpha: float = DEFAULT_ALPHA,
                   draw_boundaries: bool = True,
                   draw_labels: bool = True,
                   draw_legend: bool = True,
                   font_size: Optional[int] = None,
                   legend_width: Optional[int] = None) -> np.ndarray:
  """Draws a panoptic segmentation over an image.

  Args:
    image: uint8 [height, width, 3] RGB (or [height, width] gray).
    category_mask: int [height, width] training class ids, VOID_CLASS void.
    instance_mask: int [height, width], 1 .. n per thing instance, 0 for stuff
      and void.
    class_names: name of each training class (its length is num_classes).
    is_thing: thing flag of each training class.
    colors: uint8 [num_classes, 3] class colours.
    alpha: opacity of the segment colours.
    draw_boundaries: outline every segment in BOUNDARY_COLOR.
    draw_labels: write the class name inside segments large enough for it.
    draw_legend: append a legend (class colour, name, instance count) to the
      right.
    font_size: text size in pixels; default from the image size.
    legend_width: width of the legend panel; None fits its labels.

  Returns:
    uint8 [max(height, legend height), width + legend width, 3]; exactly
    [height, width, 3] without the legend. Rows below the image (when the
    legend is taller) are the legend background.

  Raises:
    ValueError: if shapes disagree, the image is not uint8 or a class id is
      outside [0, num_classes) and not VOID_CLASS.
  """
  if font_size is None:
    font_size = legend_lib.default_font_size(*np.shape(image)[:2])
  canvas = render_segments(image, category_mask, instance_mask, class_names,
                           is_thing, colors, alpha=alpha,
                           draw_boundaries=draw_boundaries,
                           draw_labels=draw_labels, font_size=font_size)
  if not draw_legend:
    return canvas
  entries = legend_lib.legend_entries(np.asarray(category_mask),
                                      np.asarray(instance_mask), class_names,
                                      is_thing, colors)
  panel = legend_lib.render_legend(entries, canvas.shape[0], font_size,
                                   width=legend_width)
  return hstack_panels([canvas, panel])


def hstack_panels(panels: Sequence[np.ndarray],
                  gap: int = 0) -> np.ndarray:
  """Places uint8 [h_i, w_i, 3] panels side by side, top-aligned.

  Shorter panels are padded at the bottom with the legend background; `gap`
  columns of background separate the panels.
  """
  height = max(p.shape[0] for p in panels)
  background = np.asarray(legend_lib.BACKGROUND_COLOR, np.uint8)
  columns = []
  for i, panel in enumerate(panels):
    padded = np.empty((height, panel.shape[1], 3), np.uint8)
    padded[:] = background
    padded[:panel.shape[0]] = panel
    if i and gap:
      spacer = np.empty((height, gap, 3), np.uint8)
      spacer[:] = background
      columns.append(spacer)
    columns.append(padded)
  return np.concatenate(columns, axis=1)


def display_size(height: int, width: int,
                 max_side: int = MAX_DISPLAY_SIDE,
                 min_side: int = MIN_DISPLAY_SIDE) -> Tuple[int, int]:
  """(height, width) to draw an image at: long side capped at `max_side`.

  Images whose long side is below `min_side` are enlarged by the largest
  integer factor keeping it at most `min_side` (pixels stay square blocks).
  """
  long_side = max(height, width)
  if long_side > max_side:
    scale = max_side / long_side
    return max(1, round(height * scale)), max(1, round(width * scale))
  factor = max(1, min_side // long_side)
  return height * factor, width * factor
