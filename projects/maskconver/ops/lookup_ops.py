"""Several per-detection lookups as one, through float32 bit fields."""

from typing import Callable, Sequence, Tuple

import numpy as np
import tensorflow as tf

# float32 represents every integer below 2**24 exactly.
FLOAT_INTEGER_BITS = 24


def lookup_tables(tables: Sequence[tf.Tensor],
                  ranges: Sequence[Tuple[int, int]],
                  lookup: Callable[[tf.Tensor], tf.Tensor]
                  ) -> Tuple[tf.Tensor, ...]:
  """Looks up several per-detection tables with one (big) lookup.

  Output maps cost a per-pixel lookup each (TFLite's GATHER copies element
  by element). When the tables' values fit together in 24 bits, they are
  packed into one float32 table (bit fields, the first table highest),
  looked up once, and unpacked (in the name scope 'unpack') with exact float
  arithmetic (products with powers of two, floor, differences of integers
  below 2**24), which XNNPACK runs.

  Args:
    tables: int32 [batch, M] each.
    ranges: per table, Python ints (low, high): its values lie in
      [low, high).
    lookup: float32 [batch, M] -> float32 [batch, ...], each output the
      value of some index of the table, exact for integers below 2**24 (a
      gather, or the fast merge's painter).

  Returns:
    int32 [batch, ...] per table, as lookup(table) would give.

  Raises:
    ValueError: if a range reaches beyond +-2**24.
  """
  bits = [max(1, int(np.ceil(np.log2(high - low)))) for low, high in ranges]
  if max(max(abs(low), abs(high)) for low, high in ranges) > (
      2 ** FLOAT_INTEGER_BITS):
    raise ValueError(f'table values must lie within +-2**24, got {ranges}')
  if sum(bits) > FLOAT_INTEGER_BITS:
    # Too wide to pack: one lookup per table.
    return tuple(tf.cast(lookup(tf.cast(table, tf.float32)), tf.int32)
                 for table in tables)
  packed = tf.zeros_like(tables[0], tf.float32)
  for table, (low, _), field in zip(tables, ranges, bits):
    packed = packed * float(2 ** field) + tf.cast(table - low, tf.float32)
  value = lookup(packed)
  with tf.name_scope('unpack'):
    fields = []
    for field in reversed(bits[1:]):
      high = tf.floor(value * (1.0 / 2 ** field))
      fields.append(value - high * float(2 ** field))
      value = high
    fields.append(value)
    return tuple(tf.cast(field + float(low) if low else field, tf.int32)
                 for field, (low, _) in zip(reversed(fields), ranges))
