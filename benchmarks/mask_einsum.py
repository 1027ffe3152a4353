r"""TFLite latency of the mask einsum's two forms, float32 and int8.

  python -m benchmarks.mask_einsum [--mask_size=64] [--channels=256] \
      [--num_masks=50] [--num_runs=30]

The mask logits are features [1, H, W, C] times K embeddings [1, K, C]
(`maskconver.modeling.layers.mask_projection.MaskProjection`). Its default
form is an einsum, which TFLite runs as a BATCH_MATMUL; its fully connected
form (batch 1, the int8 twin of the TFLite exports) a FULLY_CONNECTED with
runtime weights. This benchmark converts both forms alone to float32 and to
int8 (calibrated on random normal inputs) and prints, for each, the median
milliseconds of `--num_runs` invokes with XNNPACK and with TFLite's own
kernels, 1 and 2 threads, and the ratio to the float32 einsum with the same
kernels and threads; the JSON on the last line holds the same. The defaults
are the MobileNet-MH recipe at 256x256 (mask 64x64, 256 channels, K = 50).
"""

import json
from typing import Any, Dict, Iterator, List, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import timing
from maskconver.common import flags as command_flags
from maskconver.inference import tflite_runtime
from maskconver.modeling.layers import mask_projection

FLAGS = flags.FLAGS
THREADS = (1, 2)


def define_flags() -> None:
  flags.DEFINE_integer('mask_size', 64, 'H = W of the mask features.')
  flags.DEFINE_integer('channels', 256, 'C, the mask feature channels.')
  flags.DEFINE_integer('num_masks', 50, 'K, the number of masks.')
  flags.DEFINE_integer('num_runs', 30, 'Timed invokes per measurement.')


def convert(fully_connected: bool, quantized: bool,
            shapes: Sequence[List[int]]) -> bytes:
  """One form of the projection alone as a TFLite model."""
  layer = mask_projection.MaskProjection(fully_connected=fully_connected)
  function = tf.function(layer, input_signature=[
      tf.TensorSpec(shape, tf.float32) for shape in shapes])
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [function.get_concrete_function()], layer)
  if quantized:
    rng = np.random.default_rng(0)

    def calibration() -> Iterator[List[np.ndarray]]:
      for _ in range(8):
        yield [rng.normal(size=shape).astype(np.float32) for shape in shapes]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  return converter.convert()


def measure(model: bytes, num_runs: int) -> Dict[str, float]:
  """{'<kernels>:<threads>t': median ms} on random normal inputs."""
  rng = np.random.default_rng(1)
  times = {}
  for kernels in tflite_runtime.KERNELS:
    for threads in THREADS:
      interpreter = tflite_runtime.make_interpreter(model, threads, kernels)
      for detail in interpreter.get_input_details():
        value = rng.normal(size=detail['shape']).astype(np.float32)
        interpreter.set_tensor(detail['index'], value)
      times[f'{kernels}:{threads}t'] = timing.time_runs(
          interpreter.invoke, num_runs, warmup=2)['median_ms']
  return times


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  if min(FLAGS.mask_size, FLAGS.channels, FLAGS.num_masks,
         FLAGS.num_runs) <= 0:
    raise app.UsageError('--mask_size, --channels, --num_masks and '
                         '--num_runs must be positive')
  shapes = [[1, FLAGS.mask_size, FLAGS.mask_size, FLAGS.channels],
            [1, FLAGS.num_masks, FLAGS.channels]]
  results: Dict[str, Any] = {}
  for form, fully_connected in (('einsum', False), ('fully_connected', True)):
    for dtype, quantized in (('float32', False), ('int8', True)):
      results[f'{form}:{dtype}'] = measure(
          convert(fully_connected, quantized, shapes), FLAGS.num_runs)
  base = results['einsum:float32']
  columns = list(base)
  print(f'features {shapes[0]} x embeddings {shapes[1]}, median ms '
        '(ratio to the float32 einsum)')
  print(f'{"form":<24}' + ''.join(f'{c:>20}' for c in columns))
  for name, times in results.items():
    print(f'{name:<24}' + ''.join(
        f'{times[c]:>11.2f} ({times[c] / base[c]:5.2f})' for c in columns))
  print(json.dumps({'features': shapes[0], 'embeddings': shapes[1],
                    'median_ms': results}))
  return 0


if __name__ == '__main__':
  define_flags()
  command_flags.run_command(main)
