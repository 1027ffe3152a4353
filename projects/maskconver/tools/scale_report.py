"""What a recipe needs at the paper's scale: wire bytes, host CPU, compile, FLOPs.

  python -m maskconver.tools.scale_report --experiment=maskconver_r50_coco \\
      [--global_batch_size=128] [--steps_per_second=1,2,4] [--skip_compile]
      [--compile_batch_size=4]

For the recipe's input size and global batch it prints:

* bytes per example and per step on the wire (uint8 image; compact labels,
  `dataloaders.targets.label_bytes`), the two things a TPU host feeds;
* host CPU milliseconds per example of decode + parse with the recipe's own
  parser (augmentation, copy-paste), measured as process CPU time over
  synthetic COCO-layout records (`--source_size` px square images, classes
  moved to the recipe's thing/stuff layout); this is robust to other load;
* the host cores needed to feed `--steps_per_second` training steps;
* the XLA compile time of the recipe's train step on this CPU
  (`tf.function(jit_compile=True)`, the recipe's precision,
  `--compile_batch_size` examples per replica): first call minus a steady
  call, or the time to the step's allocation where the compiled step needs
  more memory than the machine has (then that memory is reported);
* the train step's FLOPs per example: 3x the forward multiply-adds of
  `tools.model_stats` (forward + backward, the usual estimate).

The last line is one JSON object with every figure.
"""

import json
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.modeling import performance

from maskconver import experiment_loading
from maskconver import keys
from maskconver.common import flags as command_flags
from maskconver.data import convert_coco_panoptic
from maskconver.data import synthetic
from maskconver.dataloaders import copy_paste
from maskconver.dataloaders import targets
from maskconver.dataloaders import tf_example_decoder
from maskconver.tasks import maskconver_task
from maskconver.tools import model_stats

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  command_flags.define_experiment_flags()
  flags.DEFINE_integer('global_batch_size', 0,
                       'Global training batch; 0: the recipe\'s.')
  flags.DEFINE_string('steps_per_second', '1,2,4',
                      'Comma-separated training step rates to size the '
                      'input hosts for.')
  flags.DEFINE_integer('num_examples', 24,
                       'Examples parsed for the host CPU figure.')
  flags.DEFINE_integer('source_size', 640,
                       'Side of the synthetic source images (COCO: ~640).')
  flags.DEFINE_bool('skip_compile', False,
                    'Skip the XLA compile of the train step (slow for R50).')
  flags.DEFINE_integer('compile_batch_size', 1,
                       'Examples per replica of the compiled train step (the '
                       'R50 recipe: 4, its batch of 128 on 32 TPU cores).')


def wire_bytes(model_config, parser_config) -> Dict[str, int]:
  """Bytes of one training example as the input pipeline sends it."""
  height, width = model_config.input_size[:2]
  max_instances = parser_config.max_instances or model_config.num_instances
  image_height, image_width = parser_config.source_padded_size or (height,
                                                                   width)
  return {
      'image': image_height * image_width * 3,
      'labels': targets.label_bytes((height, width), model_config.min_level,
                                    max_instances, parser_config.mask_stride),
  }


def write_synthetic_records(directory: str, num_images: int,
                            image_size: int) -> List[str]:
  """Synthetic training records (square images) in `directory`."""
  paths = synthetic.generate(os.path.join(directory, 'synthetic'),
                             num_train=num_images, num_val=0,
                             image_size=image_size, seed=0)
  train = paths['train']
  result = convert_coco_panoptic.convert(
      train['image_dir'], train['panoptic_json'], train['panoptic_masks_dir'],
      os.path.join(directory, 'train'), num_shards=1, num_workers=0,
      progress=False)
  return list(result.shard_paths)


def synthetic_class_layout(num_dataset_things: int, num_things: int):
  """Moves the synthetic stuff ids behind the recipe's thing ids."""
  def remap(decoded):
    decoded = dict(decoded)
    classes = decoded[keys.SEGMENT_CLASS_LIST]
    decoded[keys.SEGMENT_CLASS_LIST] = tf.where(
        classes >= num_dataset_things,
        classes - num_dataset_things + num_things, classes)
    return decoded
  return remap


def host_dataset(params, files: Sequence[str]) -> tf.data.Dataset:
  """The recipe's training decode + parse over `files`, unbatched."""
  task_config = params.task
  data_config = task_config.train_data
  parser = maskconver_task.build_parser(task_config.model, data_config)
  dataset = tf.data.TFRecordDataset(list(files)).repeat()
  dataset = dataset.map(tf_example_decoder.TfExampleDecoder().decode)
  dataset = dataset.map(synthetic_class_layout(len(synthetic.THING_IDS),
                                      task_config.model.num_thing_classes))
  if data_config.parser.copy_paste_prob > 0:
    dataset = copy_paste.pair_examples(dataset)
  return dataset.map(parser.parse_fn(is_training=True))


def host_cpu_ms(dataset: tf.data.Dataset, num_examples: int) -> float:
  """Median process CPU ms per example over three timed passes."""
  iterator = iter(dataset)
  for _ in range(2):  # Warm-up: tracing.
    next(iterator)
  samples = []
  for _ in range(3):
    start = time.process_time()
    for _ in range(num_examples):
      next(iterator)
    samples.append((time.process_time() - start) * 1000.0 / num_examples)
  return statistics.median(samples)


def compile_seconds(params, dataset: tf.data.Dataset,
                    batch_size: int = 1) -> Dict[str, Optional[float]]:
  """XLA compile time of the train step at `batch_size` examples.

  The first call compiles and runs, a second call only runs; the compile
  time is their difference. When the compiled step needs more memory than
  the machine has, the first call fails after compiling, at the step's
  allocation: the time to that failure is the compile time, and the bytes
  XLA asked for are reported instead of a step time.
  """
  performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
  try:
    task = task_factory.get_task(params.task)
    model = task.build_model()
    optimizer = task.create_optimizer(params.trainer.optimizer_config,
                                      params.runtime)
    if hasattr(optimizer, 'shadow_copy'):
      optimizer.shadow_copy(model)
    batch = next(iter(dataset.batch(batch_size)))
    step = tf.function(lambda b: task.train_step(b, model, optimizer),
                       jit_compile=True)
    start = time.perf_counter()
    try:
      step(batch)
    except tf.errors.ResourceExhaustedError as e:
      needed = re.search(r'allocate (\d+) bytes', str(e))
      return {'compile_s': time.perf_counter() - start, 'step_s': None,
              'out_of_memory_bytes': int(needed.group(1)) if needed else -1}
    first = time.perf_counter() - start
    start = time.perf_counter()
    step(batch)
    steady = time.perf_counter() - start
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  return {'compile_s': first - steady, 'step_s': steady,
          'out_of_memory_bytes': None}


def report(params, global_batch: int, rates: Sequence[float],
           num_examples: int, source_size: int,
           compile_step: bool, compile_batch_size: int = 1
           ) -> Dict[str, object]:
  """Every figure of the report, as a dict."""
  model_config = params.task.model
  wire = wire_bytes(model_config, params.task.train_data.parser)
  per_example = wire['image'] + wire['labels']
  with tempfile.TemporaryDirectory() as directory:
    files = write_synthetic_records(directory, max(4, min(num_examples, 16)),
                           source_size)
    dataset = host_dataset(params, files)
    cpu_ms = host_cpu_ms(dataset, num_examples)
    compiled = (compile_seconds(params, dataset, compile_batch_size)
                if compile_step else None)
  height, width = model_config.input_size[:2]
  forward = model_stats.model_stats(model_config, [height, width])['flops']
  return {
      'experiment': None,
      'input_size': [height, width],
      'global_batch_size': global_batch,
      'bytes_per_example': {'image': wire['image'], 'labels': wire['labels'],
                            'total': per_example},
      'bytes_per_step': per_example * global_batch,
      'host_cpu_ms_per_example': round(cpu_ms, 1),
      'host_cores_needed': {str(r): round(r * global_batch * cpu_ms / 1000.0,
                                          1) for r in rates},
      'xla_compile_s': (round(compiled['compile_s'], 1) if compiled
                        else None),
      'xla_step_s_cpu': (round(compiled['step_s'], 2)
                         if compiled and compiled['step_s'] else None),
      'xla_step_out_of_memory_bytes': (compiled['out_of_memory_bytes']
                                       if compiled else None),
      'compile_batch_size': compile_batch_size if compiled else None,
      'precision': params.runtime.mixed_precision_dtype,
      'train_flops_per_example': 3 * forward,
      'forward_flops_per_example': forward,
  }


def _megabytes(value: float) -> str:
  return f'{value / 1e6:.3f} MB'


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  logging.set_verbosity(logging.ERROR)
  try:
    params = experiment_loading.load_experiment(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
    rates = [float(r) for r in FLAGS.steps_per_second.split(',') if r]
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  if (FLAGS.global_batch_size < 0 or FLAGS.num_examples <= 0 or
      FLAGS.compile_batch_size <= 0):
    raise app.UsageError('--global_batch_size must be >= 0, --num_examples '
                         'and --compile_batch_size > 0')
  global_batch = (FLAGS.global_batch_size or
                  params.task.train_data.global_batch_size)
  result = report(params, global_batch, rates, FLAGS.num_examples,
                  FLAGS.source_size, not FLAGS.skip_compile,
                  FLAGS.compile_batch_size)
  result['experiment'] = FLAGS.experiment
  size = result['input_size']
  wire = result['bytes_per_example']
  print(f'experiment                 {FLAGS.experiment}')
  print(f'input, global batch        {size[0]}x{size[1]}, {global_batch}')
  print(f'wire bytes / example       image {_megabytes(wire["image"])} + '
        f'labels {_megabytes(wire["labels"])} = '
        f'{_megabytes(wire["total"])}')
  print(f'wire bytes / step          {result["bytes_per_step"] / 1e6:.1f} MB')
  print(f'host CPU / example         {result["host_cpu_ms_per_example"]} ms '
        '(decode + parse, this CPU)')
  for rate, cores in result['host_cores_needed'].items():
    print(f'host cores for {rate:>4} step/s {cores}')
  if result['xla_compile_s'] is not None:
    if result['xla_step_s_cpu'] is not None:
      step = f'one step {result["xla_step_s_cpu"]} s'
    else:
      step = (f'the step needs '
              f'{result["xla_step_out_of_memory_bytes"] / 1e9:.1f} GB, more '
              'than this machine has')
    print(f'XLA compile, train step    {result["xla_compile_s"]} s '
          f'({result["precision"]}, {result["compile_batch_size"]} per '
          f'replica, this CPU; {step})')
  print(f'train FLOPs / example      '
        f'{result["train_flops_per_example"] / 1e9:.1f} B multiply-adds '
        '(3x forward)')
  sys.stdout.flush()
  print(json.dumps(result))
  return 0


def run() -> None:
  """Console entry point (`maskconver-scale-report`)."""
  define_flags()
  command_flags.run_command(main)


if __name__ == '__main__':
  run()
