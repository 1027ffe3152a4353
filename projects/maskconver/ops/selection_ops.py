"""Exact selections and per-slot sums without sorts or integer arithmetic.

The fast panoptic merge selects cells and candidates with these: float
arithmetic on integers below 2**24 and matmuls with 0 / +-1 matrices, which
are exact in float32 and which TFLite's XNNPACK delegate runs, in place of
sorts, stable top-k and strided slices of a last axis.
"""

from typing import Tuple

import numpy as np
import tensorflow as tf


def slot_sums(values: tf.Tensor, slots: tf.Tensor, num_slots: int
              ) -> tf.Tensor:
  """float32 [batch, N]: per image, the sum of `values` of each slot.

  Args:
    values: float32 [batch, ...].
    slots: int32 [batch, ...], same shape, in [0, N]; slot N is dropped.
    num_slots: N.

  Returns:
    float32 [batch, N].
  """
  batch = values.shape[0]
  if batch is None:
    return tf.reduce_sum(
        tf.one_hot(slots, num_slots, dtype=tf.float32) * values[..., None],
        axis=list(range(1, len(values.shape))))
  # Segment b * (N + 1) + n sums image b's values of slot n. Values and
  # segments are flattened to rank 1, the one segment rank that ONNX
  # converters take; the sums are the same (flattening keeps every value).
  offsets = tf.reshape(tf.range(batch, dtype=tf.int32) * (num_slots + 1),
                       [batch] + [1] * (len(values.shape) - 1))
  sums = tf.math.unsorted_segment_sum(tf.reshape(values, [-1]),
                                      tf.reshape(slots + offsets, [-1]),
                                      batch * (num_slots + 1))
  return tf.reshape(sums, [batch, num_slots + 1])[:, :num_slots]


def columns(values: tf.Tensor) -> Tuple[tf.Tensor, ...]:
  """float32 [..., k] -> k float32 [...], each a matmul with a unit vector.

  Exact for finite values (x * 1 + y * 0) where matmuls run in float32 (CPU,
  TFLite); TPUs and TF32 GPUs round matmul inputs. Not an unstack: the int8
  converter quantizes an UNPACK of the quantized top-K values together with
  what reads it, where the TFLite export can only make slices and reshapes
  float again; a matmul reads them through a DEQUANTIZE, which the export
  bypasses.
  """
  size = values.shape[-1]
  flat = tf.reshape(values, [-1, size])
  shape = tf.shape(values)[:-1]
  return tuple(
      tf.reshape(tf.matmul(flat, tf.constant(np.eye(size, dtype=np.float32)
                                             [:, column:column + 1])), shape)
      for column in range(size))


def distinct_candidates(candidates: tf.Tensor, count: int
                        ) -> Tuple[tf.Tensor, tf.Tensor]:
  """The first `count` distinct corner candidates of each cell, by priority.

  Without sorting: pairwise differences flag first copies, their count
  before each position numbers them, and one-hot products move the first
  `count` to their slots; every step is a matmul with a 0 / +-1 matrix or
  elementwise arithmetic on integers (exact, also where matmuls round their
  inputs to bfloat16, TPUs, as long as N <= 256).

  Args:
    candidates: int32 [batch, B, 4 * k], the k best detections of each
      corner, corner by corner, best first (indices below 2**24; below 257
      where matmuls round to bfloat16).
    count: how many to keep, <= 4 * k.

  Returns:
    (int32 [batch, B, count] detections: every corner's best, then the
       second best of each corner, ..., each once; when a cell has fewer
       distinct ones, its first corner's best fills the rest,
     float32 [batch, B, count] 1 for a detection's first copy, 0 for the
       fillers).
  """
  size = candidates.shape[-1]
  cells = candidates.shape[1]
  per_corner = size // 4
  # Priority of position (corner, rank): rank-major, so that every corner's
  # best comes before any runner-up.
  priority = [rank * 4 + corner for corner in range(4)
              for rank in range(per_corner)]
  pairs = [(i, j) for j in range(size) for i in range(size)
           if priority[i] < priority[j]]
  differences = np.zeros([size, len(pairs)], np.float32)
  later = np.zeros([len(pairs), size], np.float32)
  for column, (i, j) in enumerate(pairs):
    differences[j, column], differences[i, column] = 1.0, -1.0
    later[column, j] = 1.0
  earlier = np.array([[float(priority[i] < priority[j]) for j in range(size)]
                      for i in range(size)], np.float32)
  # Position j repeated for each slot p (column j * count + p).
  spread = np.kron(np.eye(size, dtype=np.float32),
                   np.ones([1, count], np.float32))
  slot_of = np.tile(np.arange(count, dtype=np.float32), size)
  gather_slots = np.tile(np.eye(count, dtype=np.float32), [size, 1])
  first_best = np.zeros([size, count], np.float32)
  first_best[0] = 1.0

  def times(values, matrix):
    return tf.matmul(values, tf.constant(matrix))

  def nonzero(values):  # 1 where an integer-valued float is not 0.
    return tf.minimum(tf.abs(values), 1.0)

  detections = tf.reshape(tf.cast(candidates, tf.float32), [-1, size])
  first = 1.0 - nonzero(times(1.0 - nonzero(times(detections, differences)),
                              later))
  # [rows, size * count]: 1 where position j is the p-th first copy.
  moves = times(first, spread) * (
      1.0 - nonzero(times(times(first, earlier), spread) - slot_of))
  chosen_first = times(moves, gather_slots)
  chosen = (times(moves * times(detections, spread), gather_slots) +
            (1.0 - chosen_first) * times(detections, first_best))
  return (tf.reshape(tf.cast(chosen, tf.int32), [-1, cells, count]),
          tf.reshape(chosen_first, [-1, cells, count]))


def first_cells(boundary: tf.Tensor, count: int) -> tf.Tensor:
  """int32 [batch, count]: the cells of tier 2, then 1, then 0, raster order.

  What top_k(boundary, count) returns, as a permutation built from prefix
  sums and one scatter (no top_k, which is slow in TFLite on many equal
  values). Float arithmetic on integers below 2**24: exact.

  Args:
    boundary: float32 [batch, cells], values in {0, 1, 2}.
    count: how many cells, <= cells.
  """
  cells = boundary.shape[-1]
  tier2 = tf.nn.relu(boundary - 1.0)
  tier1 = boundary - 2.0 * tier2
  # Cells of tier 2 / tier 1 before each cell.
  before2 = tf.math.cumsum(tier2, axis=-1, exclusive=True)
  before1 = tf.math.cumsum(tier1, axis=-1, exclusive=True)
  count2 = tf.reduce_sum(tier2, axis=-1, keepdims=True)
  count1 = tf.reduce_sum(tier1, axis=-1, keepdims=True)
  index = tf.range(cells, dtype=tf.float32)
  position = (tier2 * before2 + tier1 * (count2 + before1) +
              (1.0 - tier1 - tier2) * (count2 + count1 + index - before1 -
                                       before2))
  batch = tf.shape(boundary)[0]
  offsets = tf.cast(tf.range(batch) * cells, tf.float32)[:, None]
  order = tf.scatter_nd(
      tf.reshape(tf.cast(position + offsets, tf.int32), [-1, 1]),
      tf.reshape(tf.zeros_like(boundary, tf.int32) + tf.range(cells), [-1]),
      tf.reshape(batch * cells, [1]))
  return tf.reshape(order, [-1, cells])[:, :count]
