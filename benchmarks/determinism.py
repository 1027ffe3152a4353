"""Measures what op determinism costs in training: steps/s with and without.

Usage:
  python -m benchmarks.determinism --work_dir=DIR [--steps=300] [--repeats=2]
      [--experiment=maskconver_synthetic]
      [--config_file=configs/experiments/maskconver_synthetic.yaml]

Writes the quickstart's synthetic dataset and records into --work_dir (reused
when present), then trains the experiment from scratch with
`--seed=0 --nodeterministic` and with `--seed=0` (op determinism on),
alternating the two for --repeats rounds so that a drift of the machine's
speed reaches both alike. Each run's rate is
its steps/s from the end of its first logged loop (which holds the XLA
compile and the input warm-up) to its last, timed by the log's clock. Prints
each run, the median per variant, their ratio and the run-to-run spread
within each variant, then one JSON line.
Every file goes under --work_dir.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List

from absl import flags

from maskconver.common import flags as command_flags

_WORK_DIR = flags.DEFINE_string('work_dir', None,
                                'Folder for the dataset, records and runs.')
_STEPS = flags.DEFINE_integer('steps', 300, 'Training steps per run.',
                              lower_bound=20)
_STEPS_PER_LOOP = flags.DEFINE_integer(
    'steps_per_loop', 25, 'Steps between two logged rates.', lower_bound=1)
_REPEATS = flags.DEFINE_integer('repeats', 2, 'Runs per variant.',
                                lower_bound=1)
_EXPERIMENT = flags.DEFINE_string('experiment', 'maskconver_synthetic',
                                  'Experiment to train.')
_CONFIG_FILE = flags.DEFINE_string(
    'config_file', 'configs/experiments/maskconver_synthetic.yaml',
    'YAML recipe passed to maskconver.train.')

# absl's line prefix (time of day) and the trainer's loop line.
_LOOP = re.compile(r'^I\d{4} (\d\d):(\d\d):(\d\d\.\d+) .*train \| step:\s*(\d+) \|'
                   r' steps/sec', re.MULTILINE)
_VARIANTS = {'seeded': ['--seed=0', '--nodeterministic'],
             'deterministic': ['--seed=0']}


def _prepare_records(work_dir: str) -> str:
  """The quickstart's dataset as TFRecords under work_dir; their prefix."""
  data = os.path.join(work_dir, 'data')
  records = os.path.join(work_dir, 'records')
  if not os.path.exists(os.path.join(data, 'annotations',
                                     'panoptic_val.json')):
    subprocess.run([sys.executable, '-m', 'maskconver.data.synthetic',
                    f'--output_dir={data}', '--num_train=400',
                    '--num_val=50', '--image_size=128', '--seed=0'],
                   check=True, capture_output=True)
  for split in ('train', 'val'):
    if not os.path.exists(os.path.join(records, f'{split}_label_map.json')):
      subprocess.run([
          sys.executable, '-m', 'maskconver.data.convert_coco_panoptic',
          f'--image_dir={data}/{split}',
          f'--panoptic_json={data}/annotations/panoptic_{split}.json',
          f'--panoptic_masks_dir={data}/annotations/panoptic_{split}',
          f'--output_prefix={records}/{split}', '--num_shards=2'],
                     check=True, capture_output=True)
  return records


def _train(model_dir: str, records: str, extra: List[str]) -> Dict[str, float]:
  """One training run from scratch; its loop rates and wall time."""
  overrides = ','.join([
      f'task.train_data.input_path={records}/train-*',
      f'task.validation_data.input_path={records}/val-*',
      f'trainer.train_steps={_STEPS.value}',
      f'trainer.steps_per_loop={_STEPS_PER_LOOP.value}',
      f'trainer.summary_interval={_STEPS_PER_LOOP.value}',
      f'trainer.checkpoint_interval={_STEPS.value}'])
  command = [sys.executable, '-m', 'maskconver.train',
             f'--experiment={_EXPERIMENT.value}', '--mode=train',
             f'--model_dir={model_dir}', f'--config_file={_CONFIG_FILE.value}',
             f'--params_override={overrides}', *extra]
  start = time.perf_counter()
  run = subprocess.run(command, capture_output=True, text=True, check=False)
  wall = time.perf_counter() - start
  if run.returncode:
    raise SystemExit(f'error: {" ".join(command)} failed:\n'
                     f'{run.stderr[-3000:]}')
  loops = [(3600 * int(h) + 60 * int(m) + float(sec), int(step))
           for h, m, sec, step in _LOOP.findall(run.stderr + run.stdout)]
  # From the end of the first loop (compile, warm-up) to the last one.
  loops = [loop for loop in loops if loop[1] >= _STEPS_PER_LOOP.value]
  if len(loops) < 2:
    raise SystemExit(f'error: fewer than 2 timed loops in the log of '
                     f'{model_dir}')
  (start_s, start_step), (end_s, end_step) = loops[0], loops[-1]
  return {'steps_per_s': (end_step - start_step) / (end_s - start_s),
          'wall_s': wall}


def main(_) -> int:
  if not _WORK_DIR.value:
    print('error: --work_dir is required', file=sys.stderr)
    return command_flags.EXIT_USAGE
  work_dir = os.path.abspath(_WORK_DIR.value)
  os.makedirs(work_dir, exist_ok=True)
  records = _prepare_records(work_dir)
  runs = {name: [] for name in _VARIANTS}
  stamp = time.strftime('%Y%m%d-%H%M%S')
  for repeat in range(_REPEATS.value):
    for name, extra in _VARIANTS.items():
      model_dir = os.path.join(work_dir, 'runs', f'{stamp}-{name}-{repeat}')
      result = _train(model_dir, records, extra)
      runs[name].append(result)
      print(f'{name:14s} run {repeat}: {result["steps_per_s"]:.2f} steps/s, '
            f'{result["wall_s"]:.0f} s wall', flush=True)
  summary = {}
  for name, results in runs.items():
    rates = [r['steps_per_s'] for r in results]
    summary[name] = {
        'median_steps_per_s': statistics.median(rates),
        'spread': (max(rates) - min(rates)) / statistics.median(rates),
        'median_wall_s': statistics.median(r['wall_s'] for r in results)}
  ratio = (summary['deterministic']['median_steps_per_s'] /
           summary['seeded']['median_steps_per_s'])
  print(f'\n{"variant":14s} {"steps/s":>8s} {"spread":>7s} {"wall s":>7s}')
  for name, row in summary.items():
    print(f'{name:14s} {row["median_steps_per_s"]:8.2f} '
          f'{100 * row["spread"]:6.1f}% {row["median_wall_s"]:7.0f}')
  print(f'deterministic / seeded steps/s: {ratio:.3f}')
  print(json.dumps({'steps': _STEPS.value, 'runs': runs, 'summary': summary,
                    'deterministic_over_seeded': ratio}))
  return 0


if __name__ == '__main__':
  command_flags.run_command(main)
