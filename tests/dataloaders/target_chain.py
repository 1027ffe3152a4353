"""The whole target chain of one example, for tests: host description, then
the device expansion (`maskconver.ops.target_ops.dense_targets`) on a batch
of one, with the batch dimension removed again."""

import tensorflow as tf

from maskconver import keys
from maskconver.dataloaders import targets
from maskconver.ops import target_ops


def build_targets(segment_map, segment_ids, segment_classes, segment_is_crowd,
                  *, heatmap_ignore_fraction=0.5, **options):
  """describe_targets + dense_targets; returns compact and dense keys."""
  compact = targets.describe_targets(segment_map, segment_ids,
                                     segment_classes, segment_is_crowd,
                                     **options)
  return expand(compact, num_classes=options['num_classes'],
                num_thing_classes=options['num_thing_classes'],
                min_level=options['min_level'],
                max_level=options['max_level'],
                heatmap_ignore_fraction=heatmap_ignore_fraction)


def expand(compact, **options):
  """dense_targets on one example's compact labels (batch of one)."""
  batched = tf.nest.map_structure(lambda t: tf.convert_to_tensor(t)[None],
                                  dict(compact))
  dense = target_ops.dense_targets(batched, **options)
  out = dict(compact)
  out.update(tf.nest.map_structure(lambda t: t[0], dense))
  return out
