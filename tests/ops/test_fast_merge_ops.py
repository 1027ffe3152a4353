"""The fast merge's stages and the sort-free ops they are made of."""

import numpy as np
import pytest
import tensorflow as tf

from maskconver.ops import cell_ops
from maskconver.ops import fast_merge_ops
from maskconver.ops import lookup_ops
from maskconver.ops import selection_ops

# Scope names of the stages, in order (fast_merge_ops module doc).
_STAGES = ('rank', 'labels', 'uniform', 'cells', 'refine', 'areas', 'paint',
           'unpack')


def test_each_stage_runs_in_its_name_scope():
  """Every stage names its ops; no stage nests in another."""
  num_masks = 4

  @tf.function(input_signature=[tf.TensorSpec([1, 6, 6, num_masks]),
                                tf.TensorSpec([1, num_masks])])
  def merge(logits, scores):
    paint, won_area, mask_area = fast_merge_ops.fast_merge(
        logits, scores, scores > 0.2, 4, 0.5, tf.sigmoid, 0.25)
    maps = lookup_ops.lookup_tables(
        [tf.zeros([1, num_masks + 1], tf.int32) + tf.range(num_masks + 1)] * 2,
        [(0, num_masks + 1)] * 2, paint)
    return maps, won_area, mask_area

  graph = merge.get_concrete_function().graph
  scopes = {op.name.split('/')[0] for op in graph.get_operations()
            if '/' in op.name}
  assert set(_STAGES) <= scopes
  outermost = [op.name.split('/')[0] for op in graph.get_operations()]
  first = [outermost.index(stage) for stage in _STAGES]
  assert first == sorted(first)


def test_stages_chain_to_the_fast_merge():
  """The stage functions, called one by one, give fast_merge's areas."""
  rng = np.random.default_rng(0)
  logits = tf.constant(rng.normal(0, 3, (2, 5, 5, 3)), tf.float32)
  scores = tf.constant(rng.uniform(0.3, 1, (2, 3)), tf.float32)
  valid = tf.constant([[True, True, False], [True, True, True]])
  _, won_area, mask_area = fast_merge_ops.fast_merge(
      logits, scores, valid, 2, 0.5, tf.sigmoid, 1.0)
  ranking = fast_merge_ops.rank_pixels(logits, scores, valid, tf.sigmoid, 1.0)
  labels = fast_merge_ops.label_pixels(ranking, 0.5, 2)
  boundary = fast_merge_ops.classify_cells(labels)
  assert boundary.shape == (2, 36)
  assert set(np.unique(boundary.numpy())) <= {0.0, 1.0, 2.0}
  selection = fast_merge_ops.select_cells(boundary, ranking.best_indices, 1.0)
  assert selection.candidates.shape == (2, 36, 5)
  refinement = fast_merge_ops.refine_cells(logits, selection, ranking.scores,
                                           tf.sigmoid, 0.5, 1.0, 2)
  assert refinement.refined_label.shape == (2, 36, 4)
  stage_won, stage_mask, _ = fast_merge_ops.correct_areas(
      labels, selection, refinement, tf.sigmoid, 0.5, 1.0, 2)
  np.testing.assert_array_equal(stage_won, won_area)
  np.testing.assert_array_equal(stage_mask, mask_area)
  # Every output pixel of image 1 goes to a detection or to void: the won
  # areas of its 3 detections sum to at most its 10 x 10 pixels.
  assert 0 < float(tf.reduce_sum(won_area[1])) <= 100.0


@pytest.mark.parametrize('ranges', [
    # Packed: 3 + 2 + 2 bits, one gather.
    [(-1, 7), (0, 3), (0, 4)],
    # 13 + 13 bits do not fit in float32's 24: one gather per table.
    [(-1, 7), (0, 2 ** 13), (0, 2 ** 13)],
])
def test_lookup_tables_equals_one_gather_per_table(ranges):
  tables = [tf.constant([[-1, 6, 0, 3], [2, -1, 5, 1]]),
            tf.constant([[0, 2, 1, 0], [1, 0, 2, 2]]),
            tf.constant([[3, 0, 1, 2], [0, 3, 3, 1]])]
  if ranges[1][1] > 4:
    tables[1] = tables[1] * 4000
    tables[2] = tables[2] * 2700 + 1
  indices = tf.constant([[[0, 1, 3], [2, 2, 1]], [[3, 0, 1], [1, 2, 0]]])
  expected = [tf.gather(t, indices, batch_dims=1).numpy() for t in tables]
  # By hand, the first table's image 1.
  np.testing.assert_array_equal(expected[0][1], [[1, 2, -1], [-1, 5, 2]])
  lookups = []

  def lookup(table):
    lookups.append(table)
    return tf.gather(table, indices, batch_dims=1)

  eager = lookup_ops.lookup_tables(tables, ranges, lookup)
  # Packed: one lookup; too wide (3 + 13 + 13 bits): one per table.
  assert len(lookups) == (1 if ranges[1][1] == 3 else 3)
  compiled = tf.function(
      lambda *tables: lookup_ops.lookup_tables(tables, ranges, lookup),
      jit_compile=True)(*tables)
  for got, xla, want in zip(eager, compiled, expected):
    assert got.dtype == tf.int32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(xla, want)
  with pytest.raises(ValueError, match='2\\*\\*24'):
    lookup_ops.lookup_tables(tables, [(0, 2 ** 25)] * 3, lookup)


def test_distinct_candidates_put_every_corners_best_first():
  # Corner by corner (best, runner-up): corners' bests 3, 3, 5, 3, then
  # runners-up 1, 2, 1, 7.
  candidates = tf.constant([[[3, 1, 3, 2, 5, 1, 3, 7],
                             [4, 9, 4, 9, 4, 9, 4, 9]]])
  slots, first = selection_ops.distinct_candidates(candidates, 5)
  np.testing.assert_array_equal(slots, [[[3, 5, 1, 2, 7], [4, 9, 4, 4, 4]]])
  np.testing.assert_array_equal(first, [[[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]])
  # With 4 the last runner-up is left out.
  slots, first = tf.function(selection_ops.distinct_candidates,
                             jit_compile=True)(candidates, 4)
  np.testing.assert_array_equal(slots, [[[3, 5, 1, 2], [4, 9, 4, 4]]])
  np.testing.assert_array_equal(first, [[[1, 1, 1, 1], [1, 1, 0, 0]]])


def test_first_cells_orders_tiers_then_raster_like_top_k():
  # Tier 2 cells 0, 3, 6 first, then tier 1 cells 2, 4 (raster order in
  # each tier), then the uniform cells 1, 5; per image of the batch.
  boundary = tf.constant([[2.0, 0.0, 1.0, 2.0, 1.0, 0.0, 2.0],
                          [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
  expected = [[0, 3, 6, 2, 4], [3, 0, 1, 2, 4]]
  for run in (selection_ops.first_cells,
              tf.function(selection_ops.first_cells, jit_compile=True)):
    np.testing.assert_array_equal(run(boundary, 5), expected)
  # As top_k (stable among equals) orders random tiers.
  tiers = tf.constant(np.random.default_rng(3).integers(0, 3, (2, 300)),
                      tf.float32)
  np.testing.assert_array_equal(selection_ops.first_cells(tiers, 120),
                                tf.math.top_k(tiers, k=120).indices)


def test_corner_pixels_clamp_at_the_edges():
  # A 2 x 3 mask: 3 x 4 cells; corners (r - 1, c - 1), (r - 1, c), (r, c - 1),
  # (r, c), clamped; pixel = row * 3 + column.
  table = cell_ops.corner_pixels(2, 3)
  assert table.shape == (12, 4)
  np.testing.assert_array_equal(table[0], [0, 0, 0, 0])    # cell (0, 0)
  np.testing.assert_array_equal(table[5], [0, 1, 3, 4])    # cell (1, 1)
  np.testing.assert_array_equal(table[7], [2, 2, 5, 5])    # cell (1, 3)
  np.testing.assert_array_equal(table[11], [5, 5, 5, 5])   # cell (2, 3)
