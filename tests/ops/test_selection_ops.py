"""selection_ops.slot_sums against per-slot sums computed with numpy."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.modeling import performance

from maskconver.ops import selection_ops


def _numpy_slot_sums(values, slots, num_slots):
  """Per image, np.add.at over slots; slot num_slots is dropped."""
  batch = values.shape[0]
  sums = np.zeros([batch, num_slots + 1], np.float64)
  for image in range(batch):
    np.add.at(sums[image], slots[image].ravel(),
              values[image].ravel().astype(np.float64))
  return sums[:, :num_slots]


def _case(shape, num_slots, seed, integer_values):
  rng = np.random.default_rng(seed)
  slots = rng.integers(0, num_slots + 1, shape).astype(np.int32)
  if integer_values:
    values = rng.integers(-3, 4, shape).astype(np.float32)
  else:
    values = rng.normal(0.0, 1.0, shape).astype(np.float32)
  return values, slots


@pytest.mark.parametrize('shape', [(2, 5), (2, 3, 4), (3, 2, 4, 5)])
def test_integer_sums_are_exact(shape):
  values, slots = _case(shape, 6, seed=len(shape), integer_values=True)
  sums = selection_ops.slot_sums(tf.constant(values), tf.constant(slots), 6)
  np.testing.assert_array_equal(sums.numpy(),
                                _numpy_slot_sums(values, slots, 6))


def test_float_sums_match_to_rounding():
  values, slots = _case((2, 7, 9), 5, seed=3, integer_values=False)
  sums = selection_ops.slot_sums(tf.constant(values), tf.constant(slots), 5)
  # At most 63 float32 terms of magnitude < 5 per slot: float32 rounding
  # stays far below 1e-4.
  np.testing.assert_allclose(sums.numpy(), _numpy_slot_sums(values, slots, 5),
                             rtol=0, atol=1e-4)


def test_unknown_batch_gives_the_same_sums():
  values, slots = _case((3, 4, 4), 4, seed=5, integer_values=True)
  spec = [tf.TensorSpec([None, 4, 4], tf.float32),
          tf.TensorSpec([None, 4, 4], tf.int32)]
  sums = tf.function(lambda v, s: selection_ops.slot_sums(v, s, 4),
                     input_signature=spec)(values, slots)
  np.testing.assert_array_equal(sums.numpy(),
                                _numpy_slot_sums(values, slots, 4))


def test_segment_ids_are_rank_1():
  """The form ONNX converters take: one rank-1 segment id per value."""
  graph = tf.function(
      lambda v, s: selection_ops.slot_sums(v, s, 3)).get_concrete_function(
          tf.TensorSpec([2, 4, 4], tf.float32),
          tf.TensorSpec([2, 4, 4], tf.int32)).graph
  segment_ops = [op for op in graph.get_operations()
                 if op.type == 'UnsortedSegmentSum']
  assert segment_ops
  for op in segment_ops:
    assert op.inputs[1].shape.rank == 1
    assert op.inputs[0].shape.rank == 1


@pytest.fixture(params=['float32', 'bfloat16'])
def precision(request):
  performance.set_mixed_precision_policy(request.param)
  yield request.param
  tf_keras.mixed_precision.set_global_policy('float32')


def test_compiles_with_xla(precision):
  """Under XLA, in the policy's compute dtype: small integers sum exactly."""
  del precision
  dtype = tf_keras.mixed_precision.global_policy().compute_dtype
  values, slots = _case((2, 6, 5), 7, seed=7, integer_values=True)
  sums = tf.function(lambda v, s: selection_ops.slot_sums(v, s, 7),
                     jit_compile=True)(tf.cast(values, dtype), slots)
  assert sums.dtype == dtype
  np.testing.assert_array_equal(tf.cast(sums, tf.float32).numpy(),
                                _numpy_slot_sums(values, slots, 7))
