r"""LiteRT's own benchmark (`litert-benchmark`) over models and thread counts.

  python -m benchmarks.litert_benchmark \
      --tflite=float32=model_none.tflite --tflite=int8=model_int8.tflite \
      [--num_threads=1,2] [--num_runs=50] [--warmup_runs=5] [--rounds=3]

Runs `litert-benchmark --model=PATH --num_threads=T --num_runs=R
--warmup_runs=W --result_json=...` (ai-edge-litert's benchmark tool: the
CompiledModel API on the CPU, XNNPACK, random inputs) once per (model,
threads) cell in each of `--rounds` rounds, every cell in turn within a
round, so that a shared machine whose speed drifts moves all cells alike.
Each process reports the median of its runs; a cell's figure is the median of
its rounds' medians, with their min and max (the run-to-run spread). The
first --tflite is the reference: every cell gets the ratio of its median to
the reference's at the same thread count, with the min and max of the
per-round ratios.

Prints one `litert-benchmark` command line, a table, and on its LAST line
one JSON object: machine (CPU model and its int8-relevant instruction sets
from /proc/cpuinfo), settings, {name: {threads: {median_ms, min_ms,
max_ms, round_medians_ms, ratio, ratio_min, ratio_max}}} and the errors of
the cells whose process failed ({name: {threads: its ERROR lines}}; such a
cell is not run again).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags

from benchmarks import timing
from maskconver.common import flags as command_flags

FLAGS = flags.FLAGS
# /proc/cpuinfo flags that decide XNNPACK's int8 (QS8) and float kernels on
# x86, and the ARM dot-product / int8 matrix-multiply features.
CPU_FEATURES = ('avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni',
                'avx_vnni', 'amx_int8', 'asimddp', 'i8mm')


def define_flags() -> None:
  flags.DEFINE_multi_string(
      'tflite', [], 'NAME=PATH of a .tflite model; repeat for each. The first '
      'is the reference of the ratios.')
  flags.DEFINE_list('num_threads', ['1', '2'], 'CPU thread counts to run.')
  flags.DEFINE_integer('num_runs', 50,
                       'Timed runs of each litert-benchmark process.')
  flags.DEFINE_integer('warmup_runs', 5,
                       'Untimed runs of each litert-benchmark process.')
  flags.DEFINE_integer('rounds', 3, 'Processes per cell, interleaved.')
  flags.DEFINE_string(
      'litert_benchmark', None,
      'The litert-benchmark executable; default: the one beside this '
      'Python, else the one on PATH.')


def parse_models(values: Sequence[str]) -> List[Tuple[str, str]]:
  """[(name, path)] of the --tflite values; errors name the flag."""
  models = []
  for value in values:
    name, sep, path = value.partition('=')
    if not sep or not name or not path:
      raise app.UsageError(f'--tflite must be NAME=PATH, got {value!r}')
    if name in dict(models):
      raise app.UsageError(f'--tflite: name {name!r} given twice')
    models.append((name, path))
  if not models:
    raise app.UsageError('--tflite is required: NAME=PATH of each model')
  return models


def find_executable(explicit: Optional[str] = None) -> str:
  """The litert-benchmark to run (see --litert_benchmark)."""
  if explicit:
    return explicit
  beside = os.path.join(os.path.dirname(sys.executable), 'litert-benchmark')
  if os.access(beside, os.X_OK):
    return beside
  found = shutil.which('litert-benchmark')
  if not found:
    raise app.UsageError('litert-benchmark not found (pip install '
                         'ai-edge-litert); or pass --litert_benchmark')
  return found


def command(executable: str, model: str, num_threads: int, num_runs: int,
            warmup_runs: int, result_json: Optional[str] = None
            ) -> List[str]:
  """The litert-benchmark command line of one cell."""
  line = [executable, f'--model={model}', f'--num_threads={num_threads}',
          f'--num_runs={num_runs}', f'--warmup_runs={warmup_runs}']
  if result_json:
    line.append(f'--result_json={result_json}')
  return line


def read_median(result: Mapping[str, Any]) -> float:
  """The median ms of a litert-benchmark --result_json object."""
  try:
    return float(result['latency']['median_ms'])
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f'litert-benchmark result has no latency.median_ms: '
                     f'{result!r}') from e


def failure_message(output: str) -> str:
  """The ERROR lines of a failed litert-benchmark's output, or its last."""
  errors = [l.strip() for l in output.splitlines()
            if l.strip().startswith('ERROR')]
  if errors:
    return '; '.join(dict.fromkeys(errors))
  lines = output.strip().splitlines()
  return lines[-1] if lines else 'no output'


def run_cell(line: List[str], result_json: str) -> float:
  """Runs one litert-benchmark process; its median ms.

  Raises:
    RuntimeError: the process failed; the message holds its ERROR lines.
  """
  if os.path.exists(result_json):
    os.remove(result_json)
  done = subprocess.run(line, capture_output=True, text=True, check=False)
  if done.returncode != 0:
    raise RuntimeError(f'exit {done.returncode}: '
                       f'{failure_message(done.stdout + done.stderr)}')
  with open(result_json, encoding='utf-8') as f:
    return read_median(json.load(f))


def summarize(round_medians: Mapping[str, Mapping[int, Sequence[float]]],
              reference: str) -> Dict[str, Dict[int, Dict[str, Any]]]:
  """Per cell: median and spread of its rounds, and ratios to `reference`.

  Args:
    round_medians: {name: {threads: [median ms of round 0, 1, ...]}}, every
      cell with the same number of rounds (a cell that failed is left out).
    reference: the name whose cells are the ratios' denominators.

  Returns:
    {name: {threads: {median_ms, min_ms, max_ms, round_medians_ms, ratio,
    ratio_min, ratio_max}}} of the cells whose reference cell ran; a ratio
    per round pairs the cells' medians of that round.
  """
  summary = {}
  for name, cells in round_medians.items():
    summary[name] = {}
    for threads, values in cells.items():
      base = round_medians[reference].get(threads)
      if not base:
        continue
      ratios = [v / b for v, b in zip(values, base)]
      summary[name][threads] = {
          'median_ms': statistics.median(values), 'min_ms': min(values),
          'max_ms': max(values), 'round_medians_ms': list(values),
          'ratio': statistics.median(values) / statistics.median(base),
          'ratio_min': min(ratios), 'ratio_max': max(ratios)}
  return summary


def cpu_info(path: str = '/proc/cpuinfo') -> Dict[str, Any]:
  """CPU model name, logical CPUs and which CPU_FEATURES it has."""
  model, features = 'unknown', set()
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      for line in f:
        key, _, value = line.partition(':')
        key = key.strip()
        if key == 'model name' and model == 'unknown':
          model = value.strip()
        elif key in ('flags', 'Features'):
          features.update(value.split())
  return {'cpu': model, 'cpu_count': os.cpu_count(),
          'features': [f for f in CPU_FEATURES if f in features]}


def format_table(summary: Mapping[str, Mapping[int, Mapping[str, Any]]],
                 reference: str,
                 errors: Optional[Mapping[str, Mapping[int, str]]] = None
                 ) -> str:
  """The report: a line per (model, threads), a failed cell's error."""
  errors = errors or {}
  lines = [f'{"model":<18}{"threads":>8}{"median ms":>11}{"min":>9}'
           f'{"max":>9}{"/ " + reference:>14}{"(min-max)":>14}']
  for name in dict.fromkeys([*summary, *errors]):
    for threads, message in errors.get(name, {}).items():
      lines.append(f'{name:<18}{threads:>8}  failed: {message}')
    for threads, cell in summary.get(name, {}).items():
      lines.append(
          f'{name:<18}{threads:>8}{cell["median_ms"]:>11.2f}'
          f'{cell["min_ms"]:>9.2f}{cell["max_ms"]:>9.2f}'
          f'{cell["ratio"]:>14.2f}'
          f'{cell["ratio_min"]:>8.2f}-{cell["ratio_max"]:.2f}')
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  models = parse_models(FLAGS.tflite)
  threads = timing.parse_threads(FLAGS.num_threads)
  if min(FLAGS.num_runs, FLAGS.rounds) <= 0 or FLAGS.warmup_runs < 0:
    raise app.UsageError('--num_runs and --rounds must be positive, '
                         '--warmup_runs >= 0')
  for name, path in models:
    if not os.path.isfile(path):
      raise app.UsageError(f'--tflite={name}={path}: no such file')
  executable = find_executable(FLAGS.litert_benchmark)
  print(' '.join(command(os.path.basename(executable), models[0][1],
                         threads[0], FLAGS.num_runs, FLAGS.warmup_runs)))
  sys.stdout.flush()
  round_medians = {name: {t: [] for t in threads} for name, _ in models}
  # A cell that fails is reported and not run again.
  errors = {}
  with tempfile.TemporaryDirectory() as work_dir:
    result_json = os.path.join(work_dir, 'result.json')
    for _ in range(FLAGS.rounds):
      for name, path in models:
        for t in threads:
          if t in errors.get(name, {}):
            continue
          try:
            round_medians[name][t].append(run_cell(
                command(executable, path, t, FLAGS.num_runs,
                        FLAGS.warmup_runs, result_json), result_json))
          except RuntimeError as e:
            errors.setdefault(name, {})[t] = str(e)
            del round_medians[name][t]
  reference = models[0][0]
  summary = summarize(round_medians, reference)
  print(format_table(summary, reference, errors))
  sys.stdout.flush()
  print(json.dumps({
      'machine': cpu_info(), 'models': dict(models), 'num_threads': threads,
      'num_runs': FLAGS.num_runs, 'warmup_runs': FLAGS.warmup_runs,
      'rounds': FLAGS.rounds, 'reference': reference,
      'latency': {name: {str(t): cell for t, cell in cells.items()}
                  for name, cells in summary.items()},
      'errors': {name: {str(t): m for t, m in cells.items()}
                 for name, cells in errors.items()}}))
  return 0


if __name__ == '__main__':
  define_flags()
  command_flags.run_command(main)
