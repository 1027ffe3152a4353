"""Measures the training step rate of an experiment on this machine, images/s.

Usage:
  python -m benchmarks.train_step --experiment=maskconver_mnmh_coco_256
      [--batch=8] [--steps=10] [--warmup=2]

Runs the real task's train_step (forward, losses, backward, AdamW update) on
one synthetic batch shaped like the parser's output, so the number is the
model's side of the comparison with benchmarks.input_pipeline: the
input pipeline is not the bottleneck when it delivers more images/s than this.
Prints the median, min and max step time and images/s, then one JSON line.
"""

import json
import statistics
import time

from absl import flags
import numpy as np
import tensorflow as tf

from official.core import exp_factory
from official.core import task_factory

from maskconver import keys
from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.common import flags as command_flags
from maskconver.dataloaders import targets


def _batch(model_config, parser_config, batch: int):
  """A batch with the shapes and dtypes of the parser's training output.

  uint8 images and compact labels (keys.py): the step builds the dense
  targets on the device, as in training.
  """
  height, width = model_config.input_size[:2]
  num_classes = model_config.num_classes
  k = parser_config.max_instances or model_config.num_instances
  stride = parser_config.mask_stride
  min_level, max_level = model_config.min_level, model_config.max_level
  rng = np.random.default_rng(0)
  cell = 2**min_level
  labels = {
      keys.SLOT_MAP: tf.constant(
          rng.integers(0, k + 2, [batch, height // stride, width // stride]),
          targets.slot_map_dtype(k)),
      keys.HEATMAP_IGNORE_COUNT: tf.zeros(
          [batch, height // cell, width // cell],
          targets.ignore_count_dtype(min_level)),
      keys.CLASSES: tf.constant(rng.integers(0, num_classes, [batch, k]),
                                tf.int32),
      keys.CENTERS: tf.constant(
          rng.uniform(0, 1, [batch, k, 2]) * [height, width], tf.float32),
      keys.LEVELS: tf.constant(
          rng.integers(min_level, max_level + 1, [batch, k]), tf.int32),
      keys.GAUSSIAN_RADII: tf.constant(rng.integers(0, 4, [batch, k]),
                                       tf.int32),
      keys.NUM_INSTANCES: tf.fill([batch], k),
  }
  images = tf.constant(rng.integers(0, 256, [batch, height, width, 3]),
                       tf.uint8)
  return images, labels


def define_flags(values: command_flags.FlagValues) -> None:
  """Defines the benchmark's flags on `values`."""
  flags.DEFINE_string('experiment', None, 'Registered experiment name.',
                      required=True, flag_values=values)
  flags.DEFINE_integer('batch', 8, 'Batch size.', lower_bound=1,
                       flag_values=values)
  flags.DEFINE_integer('steps', 10, 'Timed steps.', lower_bound=1,
                       flag_values=values)
  flags.DEFINE_integer('warmup', 2, 'Untimed steps first (tracing).',
                       lower_bound=0, flag_values=values)


def benchmark(args: command_flags.FlagValues) -> int:
  """Times the experiment's train step; prints a line and a JSON line."""
  params = exp_factory.get_exp_config(args.experiment)
  task = task_factory.get_task(params.task)
  model = task.build_model()
  optimizer = task.create_optimizer(params.trainer.optimizer_config,
                                    params.runtime)
  if hasattr(optimizer, 'shadow_copy'):  # EMA, as Model Garden's trainer does.
    optimizer.shadow_copy(model)
  inputs = _batch(params.task.model, params.task.train_data.parser, args.batch)
  step = tf.function(lambda: task.train_step(inputs, model, optimizer))
  for _ in range(args.warmup):
    step()
  seconds = []
  for _ in range(args.steps):
    start = time.perf_counter()
    logs = step()
    float(logs[task.loss])
    seconds.append(time.perf_counter() - start)
  median = statistics.median(seconds)
  result = {
      'experiment': args.experiment,
      'input_size': params.task.model.input_size[:2],
      'batch': args.batch,
      'median_step_s': median,
      'min_step_s': min(seconds),
      'max_step_s': max(seconds),
      'images_per_s': args.batch / median,
  }
  print(f'{args.experiment} batch {args.batch}: step median {median:.3f} s '
        f'(min {min(seconds):.3f}, max {max(seconds):.3f}), '
        f'{args.batch / median:.1f} images/s')
  print(json.dumps(result))
  return 0


if __name__ == '__main__':
  command_flags.run_flag_command(benchmark, define_flags)
