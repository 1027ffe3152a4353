r"""Parameters, FLOPs and CPU latency of MaskConver in each export format.

  python -m benchmarks.benchmark --experiment=maskconver_mnmh_coco_256 \
      --input_size=256x256 \
      --formats=keras,saved_model,tflite_float32,tflite_dynamic,tflite_int8 \
      [--num_threads=1,2] [--tflite_kernels=xnnpack,builtin] \
      [--num_runs=20 --warmup=3]

For each format it times, at batch 1 on one fixed random image, after
`--warmup` untimed runs, `--num_runs` runs of

* network: normalized image -> mask logits and top-K detections;
* postprocess: those -> panoptic maps at the network input size (the
  `PanopticPostprocessor` merge);
* total: both in one model (image -> panoptic maps), as deployed;

and reports the median, min and max in milliseconds. The runs are
interleaved: every format, kernel set and thread count is built first, then
5 rounds each time a block of consecutive runs of every (row, part) in
turn (after one untimed run), so that the speed of a shared or throttled
machine drifting during the benchmark moves all rows alike and their ratios
stay comparable, while each block runs warm, as an app calling the model
frame after frame does. The formats:

* keras: the Keras model and post-processing layer called eagerly;
* saved_model: the `export_module` SavedModel (its `tflite`, `network` and
  `postprocess` signatures), run by TensorFlow;
* tflite_float32 / tflite_fp16 / tflite_dynamic / tflite_int8: that
  SavedModel converted by `tflite_conversion.convert` with quant_type none /
  fp16 / default (dynamic range, int8 weights) / int8_full (int8 weights
  and activations, uint8 quantized input; its merge part, all float, as
  int8_full_fp32_io), run by LiteRT (ai-edge-litert) when installed, else
  tf.lite. The int8 model calibrates on random normal images (latency does
  not depend on the calibration; PQ does: use export_tflite with validation
  data for a model to ship).

Every TFLite format runs with each kernel set of `--tflite_kernels`
(`xnnpack`: the default XNNPACK delegate; `builtin`: TFLite's own kernels,
no delegate) and each thread count of `--num_threads`; TensorFlow (keras,
saved_model) runs with the first thread count. With a single (kernels,
threads) pair a TFLite row is named after its format, else
`<format>:<kernels>:<threads>t`.

With --checkpoint_path the model holds the checkpoint's moving-average (EMA)
weights when it has them (--nouse_ema: the raw ones); the table's `weights`
line says which. Without it the weights are random, which is fine for latency
(the post-processing time depends on how many detections pass the score
threshold; random weights give an arbitrary number of them). FLOPs count
one multiply-add as one FLOP (maskconver.tools.model_stats). `--input_size`
is written HxW (H,W works too). Other jobs on
the machine move absolute times; compare within one run (the ratios).

Prints a table and, on its LAST line, one JSON object with the experiment,
input size, machine, params, FLOPs and {row: {part: {median_ms, min_ms,
max_ms}}} (or {row: {"error": message}} if a format failed), the ratio of
every row's medians to those of tflite_float32 with the same kernels and
threads (`ratio_to_tflite_float32`; TensorFlow rows against the first
pair), the merge's share of each row's total (`merge_share`) and
`int8_float_ratio` (tflite_int8 / tflite_float32, first pair).
"""

import json
import os
import platform
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from benchmarks import timing
from maskconver import experiment_loading
from maskconver import keys
from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.common import flags as command_flags
from maskconver.inference import tflite_runtime
from maskconver.serving import export_module
from maskconver.serving import export_saved_model
from maskconver.serving import tflite_conversion
from maskconver.tools import model_stats

FLAGS = flags.FLAGS
FORMATS = ('keras', 'saved_model', 'tflite_float32', 'tflite_fp16',
           'tflite_dynamic', 'tflite_int8')
# Quantization type of each TFLite format (tflite_conversion.QUANT_TYPES).
TFLITE_QUANT_TYPES = {
    'tflite_float32': None,
    'tflite_fp16': 'fp16',
    'tflite_dynamic': 'default',
    'tflite_int8': 'int8_full',
}
TFLITE_KERNELS = tflite_runtime.KERNELS
PARTS = ('network', 'postprocess', 'total')
# Signature of each part in the benchmark's SavedModel.
_SIGNATURES = {'total': 'tflite', 'network': 'network',
               'postprocess': 'postprocess'}
_CALIBRATION_STEPS = 8


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program).

  Without --checkpoint_path the weights are random.
  """
  command_flags.define_experiment_flags()
  command_flags.define_checkpoint_flags()
  flags.DEFINE_string(
      'input_size', None,
      'Network input HxW, e.g. 256x256 (H,W works too); default: the '
      "experiment's task.model.input_size.")
  flags.DEFINE_list('formats', list(FORMATS),
                    f'Comma-separated formats among {", ".join(FORMATS)}.')
  flags.DEFINE_integer('num_runs', 20, 'Timed runs per part and format.')
  flags.DEFINE_integer('warmup', 3, 'Untimed runs before timing.')
  flags.DEFINE_list('num_threads', ['1'],
                    'CPU thread counts of the TFLite runtime (each is timed); '
                    'TensorFlow uses the first.')
  flags.DEFINE_list('tflite_kernels', ['xnnpack'],
                    'TFLite kernel sets to time: xnnpack (default delegate) '
                    'and / or builtin (no delegate).')
  flags.DEFINE_string('work_dir', None,
                      'Where to keep the SavedModel and .tflite files; '
                      'default: a temporary directory, deleted afterwards.')


def machine_info() -> Dict[str, Any]:
  """CPU model name and logical CPU count of this machine."""
  cpu = platform.processor() or platform.machine()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  return {'cpu': cpu, 'cpu_count': os.cpu_count()}


def _numpy(outputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  return {k: np.asarray(v) for k, v in outputs.items()}


def _keras_parts(module: export_module.MaskConverModule, image: np.ndarray,
                 network_outputs: Mapping[str, np.ndarray]
                 ) -> Dict[str, Callable[[], Any]]:
  image = tf.constant(image)
  network_outputs = {k: tf.constant(v) for k, v in network_outputs.items()}
  return {
      'network': lambda: _numpy(module.network(image)),
      'postprocess': lambda: _numpy(module.postprocess(network_outputs)),
      'total': lambda: _numpy(module.serve_normalized(image)),
  }


def _postprocess_inputs(network_outputs: Mapping[str, np.ndarray]
                        ) -> Dict[str, np.ndarray]:
  return {'mask_logits': network_outputs[keys.MASK_LOGITS],
          'detected_classes': network_outputs[keys.DETECTED_CLASSES],
          'detected_scores': network_outputs[keys.DETECTED_SCORES]}


def _saved_model_parts(saved_model_dir: str, image: np.ndarray,
                       network_outputs: Mapping[str, np.ndarray]
                       ) -> Dict[str, Callable[[], Any]]:
  loaded = tf.saved_model.load(saved_model_dir)
  image = tf.constant(image)
  post_inputs = {k: tf.constant(v)
                 for k, v in _postprocess_inputs(network_outputs).items()}
  signatures = {part: loaded.signatures[name]
                for part, name in _SIGNATURES.items()}
  return {
      'network': lambda: _numpy(signatures['network'](inputs=image)),
      'postprocess': lambda: _numpy(signatures['postprocess'](**post_inputs)),
      'total': lambda: _numpy(signatures['total'](inputs=image)),
  }


def _tflite_models(saved_model_dir: str, quant_type: Optional[str],
                   work_dir: str, name: str, image: np.ndarray,
                   postprocess_calibration: List[Dict[str, np.ndarray]]
                   ) -> Dict[str, bytes]:
  """Converts the three signatures: {part: TFLite model}."""
  image_calibration = tflite_conversion.random_calibration_dataset(
      image.shape, _CALIBRATION_STEPS)
  calibration = {
      'network': image_calibration,
      'total': image_calibration,
      'postprocess': lambda: iter([dict(d) for d in postprocess_calibration]),
  }
  models = {}
  for part, signature in _SIGNATURES.items():
    part_quant_type = quant_type
    if part == 'postprocess' and quant_type == 'int8_full':
      # The merge stays float in every int8 type; its inputs are no image.
      part_quant_type = 'int8_full_fp32_io'
    start = time.perf_counter()
    model = tflite_conversion.convert(
        saved_model_dir, part_quant_type,
        calibration[part] if quant_type and quant_type.startswith('int8')
        else None, signature_key=signature)
    logging.info('%s %s: converted in %.1f s, %.2f MB', name, part,
                 time.perf_counter() - start, len(model) / 1e6)
    tflite_conversion.write_atomic(
        os.path.join(work_dir, f'{name}_{part}.tflite'), model)
    models[part] = model
  return models


def _tflite_parts(models: Mapping[str, bytes], kernels: str,
                  num_threads: int, image: np.ndarray,
                  network_outputs: Mapping[str, np.ndarray]
                  ) -> Dict[str, Callable[[], Any]]:
  """The timed calls of converted models with a kernel set and threads."""
  inputs = {'network': {'inputs': image}, 'total': {'inputs': image},
            'postprocess': _postprocess_inputs(network_outputs)}
  parts = {}
  for part, signature in _SIGNATURES.items():
    interpreter = tflite_runtime.make_interpreter(
        models[part], num_threads=num_threads, kernels=kernels)
    runner = interpreter.get_signature_runner(signature)
    feed = tflite_runtime.quantize_inputs(runner, inputs[part])
    parts[part] = (lambda runner=runner, feed=feed: runner(**feed))
  return parts


def row_name(name: str, kernels: str, num_threads: int,
             single_config: bool) -> str:
  """A TFLite row's name (module doc)."""
  return name if single_config else f'{name}:{kernels}:{num_threads}t'


def benchmark(params: Any, input_size: Sequence[int], formats: Sequence[str],
              num_runs: int, warmup: int, num_threads: Sequence[int],
              work_dir: str, checkpoint_path: Optional[str] = None,
              use_ema: bool = True,
              tflite_kernels: Sequence[str] = ('xnnpack',)
              ) -> Dict[str, Any]:
  """Measures every format; see the module doc for the result."""
  if isinstance(num_threads, int):
    num_threads = [num_threads]
  configs = [(k, t) for k in tflite_kernels for t in num_threads]
  single = len(configs) == 1
  height, width = input_size
  module = export_module.MaskConverModule(
      params, batch_size=1, input_image_size=[height, width],
      input_type='tflite')
  weights = 'random'
  if checkpoint_path:
    weights = experiment_loading.restore_model_weights(
        module.model, checkpoint_path, use_ema=use_ema).description
  rng = np.random.default_rng(0)
  image = rng.standard_normal([1, height, width, 3]).astype(np.float32)
  network_outputs = _numpy(module.network(tf.constant(image)))
  postprocess_calibration = [
      _postprocess_inputs(_numpy(module.network(tf.constant(
          rng.standard_normal([1, height, width, 3]).astype(np.float32)))))
      for _ in range(_CALIBRATION_STEPS)]
  result = {
      'input_size': [height, width],
      'weights': weights,
      'machine': dict(machine_info(), num_threads=list(num_threads),
                      tflite_kernels=list(tflite_kernels)),
      'params': module.model.count_params(),
      'flops': model_stats.count_flops(module.model, height, width),
      'merge_method': module.postprocessor.merge_method,
      'detections_above_threshold': int(np.sum(
          network_outputs[keys.DETECTED_SCORES] >=
          module.postprocessor.score_threshold)),
      'latency': {},
  }
  saved_model_dir = None
  if any(f != 'keras' for f in formats):
    saved_model_dir = export_saved_model.save_module(
        module, {'tflite': 'tflite', 'network': 'network',
                 'postprocess': 'postprocess'},
        os.path.join(work_dir, 'saved_model'))
  # Rows in the order of the formats: a failed format's error now, the
  # others' latencies once all are timed.
  latency = result['latency']
  runs = {}
  for name in formats:
    logging.info('Preparing %s', name)
    try:
      if name == 'keras':
        built = {name: _keras_parts(module, image, network_outputs)}
      elif name == 'saved_model':
        built = {name: _saved_model_parts(saved_model_dir, image,
                                          network_outputs)}
      else:
        models = _tflite_models(saved_model_dir, TFLITE_QUANT_TYPES[name],
                                work_dir, name, image,
                                postprocess_calibration)
        built = {row_name(name, kernels, threads, single): _tflite_parts(
            models, kernels, threads, image, network_outputs)
                 for kernels, threads in configs}
    except (ValueError, RuntimeError) as e:
      # A format that cannot be built is reported, the others still run.
      logging.error('%s failed: %s', name, e)
      latency[name] = {'error': str(e).splitlines()[0]}
      continue
    runs.update(built)
    latency.update(dict.fromkeys(built))
  logging.info('Timing %d rows, interleaved', len(runs))
  latency.update(timing.time_interleaved(
      {row: {part: parts[part] for part in PARTS}
       for row, parts in runs.items()}, num_runs, warmup))
  result['ratio_to_tflite_float32'] = {}
  for row in result['latency']:
    base = 'tflite_float32'
    if ':' in row:
      base = 'tflite_float32:' + row.split(':', 1)[1]
    elif not row.startswith('tflite_') and not single:
      base = row_name('tflite_float32', *configs[0], single)
    ratio = latency_ratios(result['latency'], row, base)
    if ratio:
      result['ratio_to_tflite_float32'][row] = ratio
  result['merge_share'] = {
      row: parts['postprocess']['median_ms'] / parts['total']['median_ms']
      for row, parts in result['latency'].items() if 'error' not in parts}
  first = configs[0]
  result['int8_float_ratio'] = latency_ratios(
      result['latency'], row_name('tflite_int8', *first, single),
      row_name('tflite_float32', *first, single))
  return result


def latency_ratios(latency: Mapping[str, Any], numerator: str,
                   denominator: str) -> Optional[Dict[str, float]]:
  """{part: median(numerator) / median(denominator)}, None if one is absent."""
  top, bottom = latency.get(numerator), latency.get(denominator)
  if not top or not bottom or 'error' in top or 'error' in bottom:
    return None
  return {part: top[part]['median_ms'] / bottom[part]['median_ms']
          for part in PARTS}


def format_table(result: Mapping[str, Any]) -> str:
  """The human-readable report."""
  machine = result['machine']
  threads = machine['num_threads']
  threads = threads if isinstance(threads, list) else [threads]
  lines = [
      f'experiment   {result.get("experiment")}',
      f'input size   {result["input_size"][0]}x{result["input_size"][1]}',
      f'weights      {result.get("weights", "random")}',
      f'machine      {machine["cpu"]}, {machine["cpu_count"]} CPUs, '
      f'{",".join(str(t) for t in threads)} thread(s) used',
      f'params       {result["params"] / 1e6:.2f} M',
      f'FLOPs        {result["flops"] / 1e9:.2f} B (multiply-adds, network)',
      '',
      f'{"format":<30}' + ''.join(
          f'{part + " ms (med/min/max)":>30}' for part in PARTS) +
      f'{"merge %":>9}{"/ tflite_float32":>18}',
  ]
  ratios = result.get('ratio_to_tflite_float32') or {}
  shares = result.get('merge_share') or {}
  for name, parts in result['latency'].items():
    if 'error' in parts:
      lines.append(f'{name:<30}  failed: {parts["error"]}')
      continue
    ratio = ratios.get(name)
    lines.append(
        f'{name:<30}' + ''.join(
            f'{p["median_ms"]:>14.1f} /{p["min_ms"]:>6.1f} /'
            f'{p["max_ms"]:>6.1f}' for p in (parts[part] for part in PARTS)) +
        (f'{100 * shares[name]:>8.0f}%' if name in shares else ' ' * 9) +
        (f'{ratio["total"]:>18.2f}' if ratio else ''))
  ratio = result.get('int8_float_ratio')
  if ratio:
    lines.append('')
    lines.append('int8 / float32 latency: ' + ', '.join(
        f'{part} {value:.2f}' for part, value in ratio.items()))
  return '\n'.join(lines)


def parse_kernels(values: Sequence[str]) -> List[str]:
  """Checks the --tflite_kernels list; errors name the flag."""
  unknown = [v for v in values if v not in TFLITE_KERNELS]
  if unknown or not values:
    raise app.UsageError(f'--tflite_kernels: unknown kernel set(s) {unknown}; '
                         f'choose from {", ".join(TFLITE_KERNELS)}')
  return list(values)


def parse_formats(formats: Sequence[str]) -> List[str]:
  """Checks the --formats list; errors name the flag."""
  unknown = [f for f in formats if f not in FORMATS]
  if unknown or not formats:
    raise app.UsageError(f'--formats: unknown format(s) {unknown}; choose '
                         f'from {", ".join(FORMATS)}')
  return list(formats)


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  logging.set_verbosity(logging.WARNING)
  formats = parse_formats(FLAGS.formats)
  if FLAGS.num_runs <= 0 or FLAGS.warmup < 0:
    raise app.UsageError('--num_runs must be positive and --warmup >= 0')
  num_threads = timing.parse_threads(FLAGS.num_threads)
  tflite_kernels = parse_kernels(FLAGS.tflite_kernels)
  tf.config.threading.set_intra_op_parallelism_threads(num_threads[0])
  tf.config.threading.set_inter_op_parallelism_threads(num_threads[0])
  params = export_saved_model.load_params(
      FLAGS.experiment, FLAGS.config_file, FLAGS.params_override or '')
  try:
    input_size = (command_flags.parse_input_size(FLAGS.input_size)
                  if FLAGS.input_size else
                  list(params.task.model.input_size[:2]))
    checkpoint_path = (experiment_loading.resolve_checkpoint(
        FLAGS.checkpoint_path) if FLAGS.checkpoint_path else None)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  with tempfile.TemporaryDirectory() as temporary:
    work_dir = FLAGS.work_dir or temporary
    result = benchmark(params, input_size, formats, FLAGS.num_runs,
                       FLAGS.warmup, num_threads, work_dir,
                       checkpoint_path, FLAGS.use_ema, tflite_kernels)
  result = dict(experiment=FLAGS.experiment, **result)
  print(format_table(result))
  sys.stdout.flush()
  print(json.dumps(result))
  return 0


def run() -> None:
  """Runs the command (`python -m benchmarks.benchmark`)."""
  define_flags()
  command_flags.run_command(main)


if __name__ == '__main__':
  run()
