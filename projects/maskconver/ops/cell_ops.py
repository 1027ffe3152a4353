"""Output cells of an integer-factor bilinear upsampling, and their corners.

Upsampling an [h, w] map by an integer factor f (bilinear, half-pixel
centers, as `tf.image.resize` does) reads, for each output pixel, 2 x 2 input
pixels: its cell's corners. The output splits into (h + 1) x (w + 1) cells of
f x f pixels (the border cells lie partly outside the image) that share
their corners; on the edges a corner repeats, as the resize clamps. Cell
(r, c) has corners at input rows r - 1, r and columns c - 1, c, in the order
of `CORNERS`.
"""

from typing import Callable, Tuple

import numpy as np
import tensorflow as tf

# Corner order of a cell: (row, column) offsets on the edge-padded input grid.
CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def subpixel_constants(factor: int) -> Tuple[int, np.ndarray, np.ndarray]:
  """Where the f * f pixels of a cell sit between its corners.

  With half-pixel centers, output row y samples input row
  (y + 0.5) / f - 0.5. The first cell starts `offset` pixels before the
  image; its pixel a (0 .. f - 1) lies at fraction (a - offset + 0.5) / f +
  0.5 between the cell's two corner rows, and its nearest corner row is the
  second one when a >= offset.

  Args:
    factor: the upsampling factor f >= 1.

  Returns:
    (offset,
     float32 [4, f * f] bilinear weight of each corner at each pixel
       (pixel index a_y * f + a_x, the depth_to_space order),
     float32 [4, f * f] 1 where the corner is the pixel's nearest).
  """
  offset = (factor + 1) // 2
  fractions = [(a - offset + 0.5) / factor + 0.5 for a in range(factor)]
  weights = np.zeros([4, factor * factor], np.float32)
  nearest = np.zeros([4, factor * factor], np.float32)
  for corner, (dy, dx) in enumerate(CORNERS):
    for a_y in range(factor):
      for a_x in range(factor):
        weight_y = fractions[a_y] if dy else 1.0 - fractions[a_y]
        weight_x = fractions[a_x] if dx else 1.0 - fractions[a_x]
        weights[corner, a_y * factor + a_x] = weight_y * weight_x
        nearest[corner, a_y * factor + a_x] = float(
            (a_y >= offset) == bool(dy) and (a_x >= offset) == bool(dx))
  return offset, weights, nearest


def inside_pixels(height: int, width: int, factor: int,
                  offset: int) -> np.ndarray:
  """float32 [cells, f * f], 1 for the pixels of each cell inside the image.

  Args:
    height: input rows h.
    width: input columns w.
    factor: the upsampling factor f.
    offset: the first cell's pixels before the image (`subpixel_constants`).
  """
  rows = np.arange((height + 1) * factor) - offset
  cols = np.arange((width + 1) * factor) - offset
  ok_rows = ((rows >= 0) & (rows < factor * height)).reshape(height + 1,
                                                             factor)
  ok_cols = ((cols >= 0) & (cols < factor * width)).reshape(width + 1, factor)
  inside = ok_rows[:, None, :, None] & ok_cols[None, :, None, :]
  return inside.reshape((height + 1) * (width + 1),
                        factor * factor).astype(np.float32)


def corner_pixels(height: int, width: int) -> np.ndarray:
  """int32 [cells, 4]: the input pixel (row * width + column) of each corner.

  Cell (r, c) has corners at input rows r - 1, r and columns c - 1, c,
  clamped to the input as the resize clamps.
  """
  rows = np.arange(height + 1)[:, None, None]
  cols = np.arange(width + 1)[None, :, None]
  corner_rows = np.clip(rows + np.array([dy - 1 for dy, _ in CORNERS]), 0,
                        height - 1)
  corner_cols = np.clip(cols + np.array([dx - 1 for _, dx in CORNERS]), 0,
                        width - 1)
  return (corner_rows * width + corner_cols).reshape(
      (height + 1) * (width + 1), 4).astype(np.int32)


def corner_views(values: tf.Tensor) -> Tuple[tf.Tensor, ...]:
  """[batch, ..., h, w] -> the 4 corners of each cell, 4 x [..., h+1, w+1].

  Edge-padded, as the resize clamps: a border cell's outer corners repeat
  its inner ones. Concatenated slices, which TFLite's XNNPACK delegate runs
  (it does not run MIRROR_PAD).
  """
  height, width = values.shape[-2:]
  row = values.shape.rank - 2
  padded = tf.concat([values[..., :1, :], values, values[..., -1:, :]],
                     axis=row)
  padded = tf.concat([padded[..., :1], padded, padded[..., -1:]],
                     axis=row + 1)
  return tuple(padded[..., dy:dy + height + 1, dx:dx + width + 1]
               for dy, dx in CORNERS)


def corner_reduce(reduce: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
                  views: Tuple[tf.Tensor, ...]) -> tf.Tensor:
  """Min or max of the 4 corner views, elementwise (XNNPACK runs these)."""
  return reduce(reduce(views[0], views[1]), reduce(views[2], views[3]))
