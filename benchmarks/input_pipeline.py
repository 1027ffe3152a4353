"""Measures training input throughput: decode + parse + batch, images/s.

Usage:
  python -m benchmarks.input_pipeline [--records='/path/train*']
      [--image_size=640] [--num_images=16] [--batch=8] [--runs=5]
      [--batches_per_run=8] [--threads=0]

Without --records it writes a small synthetic dataset
(`maskconver.data.synthetic`, converted by
`maskconver.data.convert_coco_panoptic`) of `--num_images` square images into
a temporary directory. The records are read in a loop without caching, so
every image is decoded (JPEG + panoptic PNG) and parsed each time. The
synthetic stuff classes are shifted to COCO's layout (80 things, 133 classes)
so heatmaps have COCO's channel count.

Configurations timed (training mode, paper augmentation: scale jitter
0.05-2.9, flip; K = the recipe's: 256 for R50, 50 for mobile):
  1280 R50 heads:    1280x1280, levels 3..7, K 256
  640 R50 heads:     640x640, levels 3..7, K 256
  640 mobile:        640x640, level 3
  640 + copy-paste:  640x640, level 3, copy_paste_prob 1
  256 mobile:        256x256, level 3
Prints a table (median, min and max images/s over the timed runs, and the
median process CPU milliseconds per image, which is robust to other load on
the machine), then one JSON line with the same numbers.
"""

import json
import os
import statistics
import sys
import tempfile
import time
from typing import List, Optional, Tuple

from absl import flags
import tensorflow as tf

from maskconver.common import flags as command_flags
from maskconver.data import synthetic
from maskconver.dataloaders import copy_paste
from maskconver.dataloaders import parser as parser_lib
from maskconver.dataloaders import targets
from maskconver.dataloaders import tf_example_decoder
from maskconver.tools import scale_report

COCO_NUM_CLASSES = 133
COCO_NUM_THINGS = 80
# name, output size, min level, max level, copy-paste probability, K, and
# whether the image leaves as its padded source (resized on the device,
# `parser.source_padded_size`; the R50 recipe's choice).
CONFIGS = (
    ('1280 R50 heads', 1280, 3, 7, 0.0, 256, False),
    ('1280 R50, device', 1280, 3, 7, 0.0, 256, True),
    ('640 R50 heads', 640, 3, 7, 0.0, 256, False),
    ('640 mobile', 640, 3, 3, 0.0, 50, False),
    ('640 + copy-paste', 640, 3, 3, 1.0, 50, False),
    ('256 mobile', 256, 3, 3, 0.0, 50, False),
)


def _dataset(files: List[str], output_size: int, min_level: int,
             max_level: int, copy_paste_prob: float, max_instances: int,
             source_padded_size: Optional[List[int]], batch: int,
             threads: int) -> tf.data.Dataset:
  decoder = tf_example_decoder.TfExampleDecoder()
  parser = parser_lib.Parser(
      output_size=[output_size, output_size], min_level=min_level,
      max_level=max_level, num_classes=COCO_NUM_CLASSES,
      num_thing_classes=COCO_NUM_THINGS, max_instances=max_instances,
      aug_rand_hflip=True, aug_scale_min=0.05, aug_scale_max=2.9,
      copy_paste_prob=copy_paste_prob, source_padded_size=source_padded_size)
  dataset = tf.data.TFRecordDataset(files).repeat()
  dataset = dataset.map(decoder.decode, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.map(scale_report.synthetic_class_layout(
      len(synthetic.THING_IDS), COCO_NUM_THINGS))
  if copy_paste_prob > 0:
    dataset = copy_paste.pair_examples(dataset)
  dataset = dataset.map(parser.parse_fn(is_training=True),
                        num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(batch, drop_remainder=True)
  dataset = dataset.prefetch(tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = False
  if threads:
    options.threading.private_threadpool_size = threads
  return dataset.with_options(options)


def _time(dataset: tf.data.Dataset, batch: int, runs: int,
          batches_per_run: int) -> Tuple[List[float], List[float]]:
  """Images/s (wall clock) and process CPU ms per image of each run.

  CPU time per image is robust to other processes sharing the machine;
  images/s is what a trainer sees.
  """
  iterator = iter(dataset)
  for _ in range(3):  # Warm-up: tracing, thread pools, autotuning.
    next(iterator)
  rates, cpu_ms = [], []
  for _ in range(runs):
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(batches_per_run):
      images, _ = next(iterator)
    images.numpy()
    num_images = batch * batches_per_run
    rates.append(num_images / (time.perf_counter() - start))
    cpu_ms.append((time.process_time() - start_cpu) * 1000.0 / num_images)
  return rates, cpu_ms


def define_flags(values: command_flags.FlagValues) -> None:
  """Defines the benchmark's flags on `values`."""
  flags.DEFINE_string('records', '', 'Comma-separated TFRecord globs; '
                      'default: synthetic records written to a temp dir.',
                      flag_values=values)
  flags.DEFINE_integer('image_size', 640, 'Side of the synthetic source '
                       'images.', lower_bound=1, flag_values=values)
  flags.DEFINE_integer('num_images', 16, 'Synthetic source images.',
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer('batch', 8, 'Batch size.', lower_bound=1,
                       flag_values=values)
  flags.DEFINE_integer('runs', 5, 'Timed runs (the median is reported).',
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer('batches_per_run', 8, 'Batches per timed run.',
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer('source_padded_size', 640, 'Side the device-resize '
                       'row pads sources to (at least the largest image).',
                       lower_bound=1, flag_values=values)
  flags.DEFINE_integer('threads', 0, 'tf.data private thread pool size '
                       '(0: the TensorFlow default).', lower_bound=0,
                       flag_values=values)


def benchmark(args: command_flags.FlagValues) -> int:
  """Times the parser configurations; prints a table and a JSON line."""
  with tempfile.TemporaryDirectory() as directory:
    patterns = args.records or ','.join(scale_report.write_synthetic_records(
        directory, args.num_images, args.image_size))
    files = sorted(f for p in patterns.split(',') for f in tf.io.gfile.glob(p))
    if not files:
      print(f'error: --records={args.records!r} matches no file',
            file=sys.stderr)
      return command_flags.EXIT_USAGE
    results = []
    for name, size, min_level, max_level, paste, k, on_device in CONFIGS:
      source = [args.source_padded_size] * 2 if on_device else None
      rates, cpu_ms = _time(_dataset(files, size, min_level, max_level, paste,
                                     k, source, args.batch, args.threads),
                    args.batch, args.runs, args.batches_per_run)
      results.append({
          'config': name, 'output_size': size,
          'levels': f'{min_level}..{max_level}', 'copy_paste_prob': paste,
          'images_per_s': round(statistics.median(rates), 1),
          'min_images_per_s': round(min(rates), 1),
          'max_images_per_s': round(max(rates), 1),
          'cpu_ms_per_image': round(statistics.median(cpu_ms), 1),
          'label_mb': round(targets.label_bytes((size, size), min_level, k)
                            / 1e6, 3),
      })

  print(f'{"config":<18} {"levels":>6} {"img/s median":>13} {"min":>7} '
        f'{"max":>7} {"CPU ms/img":>11} {"label MB":>9}')
  for r in results:
    print(f'{r["config"]:<18} {r["levels"]:>6} {r["images_per_s"]:>13.1f} '
          f'{r["min_images_per_s"]:>7.1f} {r["max_images_per_s"]:>7.1f} '
          f'{r["cpu_ms_per_image"]:>11.1f} {r["label_mb"]:>9.3f}')
  print(json.dumps({
      'benchmark': 'input_pipeline', 'source': args.records or
      f'synthetic {args.num_images} x {args.image_size}px',
      'batch': args.batch, 'runs': args.runs,
      'batches_per_run': args.batches_per_run, 'cpu_count': os.cpu_count(),
      'load_average_1min_after': round(os.getloadavg()[0], 2),
      'results': results}))
  return 0


if __name__ == '__main__':
  command_flags.run_flag_command(benchmark, define_flags)
