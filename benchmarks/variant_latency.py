r"""CPU latency of variants of one experiment, side by side in one run.

  python -m benchmarks.variant_latency --experiment=maskconver_r50_coco \
      --variant=centers=configs/experiments/ablations/table7_stuff_centers.yaml \
      --variant=regions=configs/experiments/ablations/table7_stuff_regions.yaml \
      --input_size=640x640 [--formats=saved_model,tflite_float32] \
      [--num_threads=2] [--num_runs=10] [--warmup=2] [--rounds=3] \
      [--repeats=2]

Each --variant is NAME=YAML (several YAMLs joined by '+', applied in order
after --config_file). Every variant is built with random weights (latency
only; the merge's time depends on how many detections pass the score
threshold, which random weights leave arbitrary) at batch 1 and
--input_size, and exported like `benchmarks.benchmark` does: a SavedModel
with a `tflite` signature (normalized float image -> panoptic maps) and a
`network` one (image -> mask logits and detections), and the float32 TFLite
conversion of both. The formats:

* keras: the Keras model and post-processing layer, called eagerly;
* saved_model: the SavedModel's signatures, run by TensorFlow;
* tflite_float32: their TFLite models, XNNPACK, --num_threads threads.

All (variant, format, part) rows run on one random normal image, timed
interleaved (`benchmarks.timing.time_interleaved`, --rounds rounds), and
the whole timing is done --repeats times (the warmup runs before the first
only). Prints per repeat the median ms of network and total
of every row and each variant's ratio to the first variant's, then the
median over repeats with the min and max, and the JSON on its LAST line.
"""

import json
import os
import statistics
import sys
import tempfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from benchmarks import timing
from maskconver import experiment_loading
from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.common import flags as command_flags
from maskconver.inference import tflite_runtime
from maskconver.serving import export_module
from maskconver.serving import export_saved_model
from maskconver.serving import tflite_conversion
from maskconver.tools import model_stats

FLAGS = flags.FLAGS
FORMATS = ('keras', 'saved_model', 'tflite_float32')
PARTS = ('network', 'total')
# Signature of each part in the SavedModel.
_SIGNATURES = {'network': 'network', 'total': 'tflite'}


def define_flags() -> None:
  command_flags.define_experiment_flags()
  flags.DEFINE_multi_string(
      'variant', [], "NAME=YAML[+YAML...]: a variant of --experiment; repeat "
      'for each. The first is the reference of the ratios.')
  flags.DEFINE_string('input_size', None,
                      "Network input HxW, e.g. 640x640; default: the "
                      "experiment's task.model.input_size.")
  flags.DEFINE_list('formats', ['saved_model', 'tflite_float32'],
                    f'Formats among {", ".join(FORMATS)}.')
  flags.DEFINE_integer('num_threads', 2,
                       'Threads of TensorFlow and of the TFLite runtime.')
  flags.DEFINE_integer('num_runs', 10, 'Timed runs per row and repeat.')
  flags.DEFINE_integer('warmup', 2, 'Untimed runs per row before timing.')
  flags.DEFINE_integer('rounds', 3, 'Rounds of each interleaved timing.')
  flags.DEFINE_integer('repeats', 2, 'Interleaved timings, one after another.')
  flags.DEFINE_string('work_dir', None,
                      'Where to keep the SavedModels and .tflite files; '
                      'default: a temporary directory.')


def parse_variants(values: Sequence[str]) -> List[List[Any]]:
  """[[name, [yaml, ...]]] of the --variant values; errors name the flag."""
  variants = []
  for value in values:
    name, sep, files = value.partition('=')
    if not sep or not name or not files:
      raise app.UsageError(f'--variant must be NAME=YAML[+YAML...], got '
                           f'{value!r}')
    if name in dict(variants):
      raise app.UsageError(f'--variant: name {name!r} given twice')
    variants.append([name, files.split('+')])
  if not variants:
    raise app.UsageError('--variant is required: NAME=YAML of each variant')
  return variants


def parse_formats(values: Sequence[str]) -> List[str]:
  unknown = [v for v in values if v not in FORMATS]
  if unknown or not values:
    raise app.UsageError(f'--formats: unknown format(s) {unknown}; choose '
                         f'from {", ".join(FORMATS)}')
  return list(values)


def _numpy(outputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  return {k: np.asarray(v) for k, v in outputs.items()}


def build_rows(module: export_module.MaskConverModule, image: np.ndarray,
               formats: Sequence[str], num_threads: int, work_dir: str
               ) -> Dict[str, Dict[str, Callable[[], Any]]]:
  """{format: {part: call}} of one variant."""
  rows = {}
  tensor = tf.constant(image)
  if 'keras' in formats:
    rows['keras'] = {
        'network': lambda: _numpy(module.network(tensor)),
        'total': lambda: _numpy(module.serve_normalized(tensor))}
  if not set(formats) & {'saved_model', 'tflite_float32'}:
    return rows
  saved_model_dir = export_saved_model.save_module(
      module, {'tflite': 'tflite', 'network': 'network'},
      os.path.join(work_dir, 'saved_model'))
  if 'saved_model' in formats:
    loaded = tf.saved_model.load(saved_model_dir)
    signatures = {part: loaded.signatures[name]
                  for part, name in _SIGNATURES.items()}
    rows['saved_model'] = {
        part: (lambda s=signature: _numpy(s(inputs=tensor)))
        for part, signature in signatures.items()}
  if 'tflite_float32' in formats:
    rows['tflite_float32'] = {}
    for part, signature in _SIGNATURES.items():
      model = tflite_conversion.convert(saved_model_dir, None,
                                        signature_key=signature)
      tflite_conversion.write_atomic(
          os.path.join(work_dir, f'float32_{part}.tflite'), model)
      runner = tflite_runtime.make_interpreter(
          model, num_threads=num_threads).get_signature_runner(signature)
      rows['tflite_float32'][part] = (
          lambda r=runner: r(inputs=image))
  return rows


def summarize(repeats: Sequence[Mapping[str, Mapping[str, Mapping[str, Any]]]],
              variants: Sequence[str], formats: Sequence[str]
              ) -> Dict[str, Any]:
  """Medians over repeats, with min / max, and ratios to variants[0].

  Args:
    repeats: per repeat, {'<variant>/<format>': {part: {median_ms, ...}}}.
    variants: the variant names, reference first.
    formats: the formats timed.

  Returns:
    {'latency': {row: {part: {median_ms, min_ms, max_ms}}} over the repeats'
    medians, 'ratio': {'<variant>/<format>': {part: {median, min, max}}} of
    the per-repeat ratios to the reference variant's same format and part}.
  """
  latency, ratio = {}, {}
  for row in repeats[0]:
    latency[row] = {}
    for part in PARTS:
      values = [r[row][part]['median_ms'] for r in repeats]
      latency[row][part] = {'median_ms': statistics.median(values),
                            'min_ms': min(values), 'max_ms': max(values)}
  for variant in variants[1:]:
    for fmt in formats:
      row, base = f'{variant}/{fmt}', f'{variants[0]}/{fmt}'
      ratio[row] = {}
      for part in PARTS:
        values = [r[row][part]['median_ms'] / r[base][part]['median_ms']
                  for r in repeats]
        ratio[row][part] = {'median': statistics.median(values),
                            'min': min(values), 'max': max(values)}
  return {'latency': latency, 'ratio': ratio}


def format_table(summary: Mapping[str, Any], reference: str) -> str:
  lines = [f'{"row":<32}' + ''.join(
      f'{part + " ms (med/min/max)":>28}' for part in PARTS)]
  for row, parts in summary['latency'].items():
    lines.append(f'{row:<32}' + ''.join(
        f'{p["median_ms"]:>12.1f} /{p["min_ms"]:>6.1f} /{p["max_ms"]:>6.1f}'
        for p in (parts[part] for part in PARTS)))
  lines.append('')
  lines.append(f'ratio to {reference} (median over repeats, min-max):')
  for row, parts in summary['ratio'].items():
    lines.append(f'{row:<32}' + ''.join(
        f'{part} {r["median"]:.3f} ({r["min"]:.3f}-{r["max"]:.3f})  '
        for part, r in parts.items()))
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  variants = parse_variants(FLAGS.variant)
  formats = parse_formats(FLAGS.formats)
  if min(FLAGS.num_runs, FLAGS.rounds, FLAGS.repeats,
         FLAGS.num_threads) <= 0 or FLAGS.warmup < 0:
    raise app.UsageError('--num_runs, --rounds, --repeats and --num_threads '
                         'must be positive, --warmup >= 0')
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.num_threads)
  tf.config.threading.set_inter_op_parallelism_threads(FLAGS.num_threads)
  result = {'experiment': FLAGS.experiment, 'variants': dict(variants),
            'formats': formats, 'num_threads': FLAGS.num_threads,
            'num_runs': FLAGS.num_runs, 'repeats': FLAGS.repeats,
            'weights': 'random', 'params': {}, 'flops': {}}
  runs = {}
  with tempfile.TemporaryDirectory() as temporary:
    work_dir = FLAGS.work_dir or temporary
    image = None
    for name, files in variants:
      try:
        params = experiment_loading.load_experiment(
            FLAGS.experiment, list(FLAGS.config_file or []) + files,
            FLAGS.params_override or '')
        size = (command_flags.parse_input_size(FLAGS.input_size)
                if FLAGS.input_size else list(params.task.model.input_size[:2]))
      except ValueError as e:
        raise app.UsageError(str(e)) from e
      if image is None:
        result['input_size'] = size
        image = np.random.default_rng(0).standard_normal(
            [1, *size, 3]).astype(np.float32)
      module = export_module.MaskConverModule(
          params, batch_size=1, input_image_size=size, input_type='tflite')
      result['params'][name] = module.model.count_params()
      result['flops'][name] = model_stats.count_flops(module.model, *size)
      rows = build_rows(module, image, formats, FLAGS.num_threads,
                        os.path.join(work_dir, name))
      runs.update({f'{name}/{fmt}': parts for fmt, parts in rows.items()})
    repeats = []
    for index in range(FLAGS.repeats):
      repeats.append(timing.time_interleaved(
          runs, FLAGS.num_runs, FLAGS.warmup if not index else 0,
          rounds=FLAGS.rounds))
      print(f'repeat {index + 1}: ' + ', '.join(
          f'{row} {parts["total"]["median_ms"]:.1f}'
          for row, parts in repeats[-1].items()))
      sys.stdout.flush()
  summary = summarize(repeats, [v[0] for v in variants], formats)
  print(format_table(summary, variants[0][0]))
  sys.stdout.flush()
  result.update(summary, per_repeat=repeats)
  print(json.dumps(result))
  return 0


if __name__ == '__main__':
  define_flags()
  command_flags.run_command(main)
