"""Flattening per-level maps into one index space (see keys.py)."""

from typing import Mapping

import tensorflow as tf


def flatten_levels(maps: Mapping[str, tf.Tensor], min_level: int,
                   max_level: int) -> tf.Tensor:
  """Concatenates per-level maps, each flattened row-major.

  Args:
    maps: {str(level): [batch, h_l, w_l, channels]}.
    min_level: first level.
    max_level: last level.

  Returns:
    [batch, sum_l h_l * w_l, channels]; row `offset(l) + y * w_l + x` holds
    cell (y, x) of level l, the center-index convention of keys.py.
  """
  flat = []
  for level in range(min_level, max_level + 1):
    x = maps[str(level)]
    flat.append(tf.reshape(x, [tf.shape(x)[0], -1, x.shape[-1]]))
  return flat[0] if len(flat) == 1 else tf.concat(flat, axis=1)
