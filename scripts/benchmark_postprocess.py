"""Times the panoptic post-processor per image (median over runs, CPU).

Usage:
  python scripts/benchmark_postprocess.py [--size=640] [--num_instances 50 256]
      [--runs=10] [--batch=1] [--max_candidates=M]

Mask logits are at stride 4 (size / 4) and upsampled to size x size, as in
the model; prints the median milliseconds per image for each K.
"""

import argparse
import statistics
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from maskconver import keys
from maskconver.modeling import panoptic_postprocessor


def _time_one(size: int, num_instances: int, batch: int, runs: int,
              num_classes: int, num_thing_classes: int,
              max_candidates: Optional[int]) -> float:
  """Returns the median milliseconds per image."""
  layer = panoptic_postprocessor.PanopticPostprocessor(
      num_classes=num_classes, num_thing_classes=num_thing_classes,
      output_size=(size, size), max_candidates=max_candidates)
  mask_size = size // 4

  @tf.function(input_signature=[
      tf.TensorSpec([batch, mask_size, mask_size, num_instances]),
      tf.TensorSpec([batch, num_instances], tf.int32),
      tf.TensorSpec([batch, num_instances])])
  def postprocess(logits, classes, scores):
    return layer({keys.MASK_LOGITS: logits, keys.DETECTED_CLASSES: classes,
                  keys.DETECTED_SCORES: scores})

  rng = np.random.default_rng(0)
  logits = tf.constant(rng.normal(
      0, 4, size=(batch, mask_size, mask_size, num_instances)), tf.float32)
  classes = tf.constant(rng.integers(
      0, num_classes, size=(batch, num_instances)), tf.int32)
  scores = tf.constant(rng.uniform(size=(batch, num_instances)), tf.float32)
  postprocess(logits, classes, scores)  # Traces and warms up.
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    outputs = postprocess(logits, classes, scores)
    outputs[keys.PANOPTIC_SEGMENT_MAP].numpy()
    times.append((time.perf_counter() - start) * 1000.0 / batch)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', type=int, default=640,
                      help='output height and width (input resolution)')
  parser.add_argument('--num_instances', type=int, nargs='+',
                      default=[50, 256], help='K values to time')
  parser.add_argument('--runs', type=int, default=10)
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--num_classes', type=int, default=133)
  parser.add_argument('--num_thing_classes', type=int, default=80)
  parser.add_argument('--max_candidates', type=int, default=None,
                      help='PanopticPostprocessor max_candidates')
  args = parser.parse_args()
  if args.size % 4 or args.size <= 0:
    parser.error(f'--size={args.size} must be a positive multiple of 4')
  for num_instances in args.num_instances:
    median = _time_one(args.size, num_instances, args.batch, args.runs,
                       args.num_classes, args.num_thing_classes,
                       args.max_candidates)
    print(f'size={args.size} K={num_instances} batch={args.batch} '
          f'max_candidates={args.max_candidates}: '
          f'median {median:.1f} ms per image over {args.runs} runs')


if __name__ == '__main__':
  main()
