r"""CPU latency of an ONNX export in onnxruntime against its SavedModel.

  python -m benchmarks.onnx_latency --saved_model_dir=DIR/saved_model \
      --onnx_path=M.onnx [--signature_key=serving_default] [--num_runs=40] \
      [--rounds=5] [--num_threads=2]

Both run the same signature (network and panoptic merge, fixed batch and
size) on one random normal input in one process, timed interleaved
(`benchmarks.timing.time_interleaved`: each round runs each once untimed,
then its share of the timed runs), so that a machine whose speed drifts moves
both alike. Prints median, min and max milliseconds per call, the ratio of
the medians, and the parity of the two on that input (integer outputs
identical, largest float difference); the JSON on the last line holds the
same. --num_threads sets onnxruntime's intra-op threads and TensorFlow's
intra-op and inter-op threads alike.
"""

import json
import platform
from typing import Any, Dict, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import timing
from maskconver.common import flags as command_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string('saved_model_dir', None, 'SavedModel, fixed shapes.')
  flags.DEFINE_string('onnx_path', None,
                      'Its ONNX export (maskconver.serving.export_onnx).')
  flags.DEFINE_string('signature_key', 'serving_default',
                      'Signature of the SavedModel that the ONNX model holds.')
  flags.DEFINE_integer('num_runs', 40, 'Timed calls of each runtime.')
  flags.DEFINE_integer('rounds', 5, 'Rounds of the interleaved timing.')
  flags.DEFINE_integer('num_threads', 2, 'Threads of each runtime.')


def parity(reference: Dict[str, np.ndarray],
           other: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """Integer outputs equal (bool) and the largest float difference."""
  integers_equal = True
  float_difference = 0.0
  for key, expected in reference.items():
    if expected.dtype.kind == 'f':
      if expected.size:
        float_difference = max(float_difference, float(
            np.max(np.abs(other[key].astype(np.float64) - expected))))
    else:
      integers_equal &= bool(np.array_equal(other[key], expected))
  return {'integers_equal': integers_equal,
          'max_float_difference': float_difference}


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  if not FLAGS.saved_model_dir or not FLAGS.onnx_path:
    raise app.UsageError('--saved_model_dir and --onnx_path are required')
  if min(FLAGS.num_runs, FLAGS.rounds, FLAGS.num_threads) <= 0:
    raise app.UsageError('--num_runs, --rounds and --num_threads must be '
                         'positive')
  try:
    import onnxruntime  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise app.UsageError(f'--onnx_path: needs onnxruntime ({e}); '
                         'pip install -e .[onnx]') from e
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.num_threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.num_threads)
  signature = tf.saved_model.load(FLAGS.saved_model_dir).signatures[
      FLAGS.signature_key]
  specs = signature.structured_input_signature[1]
  options = onnxruntime.SessionOptions()
  options.intra_op_num_threads = FLAGS.num_threads
  options.inter_op_num_threads = 1
  session = onnxruntime.InferenceSession(
      FLAGS.onnx_path, options, providers=['CPUExecutionProvider'])
  rng = np.random.default_rng(0)
  feeds = {name: rng.normal(0.0, 1.0, spec.shape.as_list()).astype(
      spec.dtype.as_numpy_dtype) for name, spec in specs.items()}
  tensors = {name: tf.constant(value) for name, value in feeds.items()}
  names = [output.name for output in session.get_outputs()]

  def run_saved_model():
    return {k: v.numpy() for k, v in signature(**tensors).items()}

  def run_onnx():
    return dict(zip(names, session.run(None, feeds)))

  agreement = parity(run_saved_model(), run_onnx())
  times = timing.time_interleaved(
      {'saved_model': {'total': run_saved_model},
       'onnxruntime': {'total': run_onnx}},
      FLAGS.num_runs, warmup=3, rounds=FLAGS.rounds)
  rows = {row: parts['total'] for row, parts in times.items()}
  base = rows['saved_model']['median_ms']
  print(f'{FLAGS.saved_model_dir} [{FLAGS.signature_key}], inputs '
        f'{ {n: s.shape.as_list() for n, s in specs.items()} }, '
        f'{FLAGS.num_threads} threads, {FLAGS.num_runs} runs in '
        f'{FLAGS.rounds} rounds; {platform.processor() or platform.machine()}')
  print(f'{"runtime":<14}{"median ms":>11}{"min":>9}{"max":>9}'
        f'{"vs SavedModel":>15}')
  for row, summary in rows.items():
    print(f'{row:<14}{summary["median_ms"]:>11.2f}{summary["min_ms"]:>9.2f}'
          f'{summary["max_ms"]:>9.2f}{summary["median_ms"] / base:>15.2f}')
  print(f'parity: integer outputs identical: {agreement["integers_equal"]}, '
        f'largest float difference {agreement["max_float_difference"]:.3g}')
  print(json.dumps({'saved_model_dir': FLAGS.saved_model_dir,
                    'onnx_path': FLAGS.onnx_path,
                    'num_threads': FLAGS.num_threads,
                    'num_runs': FLAGS.num_runs, 'latency_ms': rows,
                    'parity': agreement}))
  return 0


if __name__ == '__main__':
  define_flags()
  command_flags.run_command(main)
