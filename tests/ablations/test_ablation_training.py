"""Each ablation YAML trains 20 steps, and its header's measured size holds.

Slow (about 1-2 min per row on 2 cores). The run is the interface the
YAMLs promise:

  python -m maskconver.train --experiment=NAME \\
      --config_file=configs/experiments/ablations/<row>.yaml \\
      --params_override=<SYNTHETIC>

where SYNTHETIC only points the run at the session's synthetic TFRecords and
makes it fit a CPU: the 7 synthetic classes, 128x128 inputs, batch 2, float32
on one device, 20 steps. The row's own switch (decoder, heads, class
embedding, centers, augmentation) is left as the YAML sets it; the backbone
and widths stay the recipe's (Table 6's schedules are the exception: 20
steps replace 150k / 270k, which test_ablation_yamls checks instead).
"""

import json
import math
import os
import re
import subprocess
import sys

import pytest

import ablation_rows

_PATHS = ablation_rows.all_paths()
_IDS = [os.path.basename(p)[:-len('.yaml')] for p in _PATHS]
TRAIN_STEPS = 20
# The smallest input the R50 rows' L3-L7 target grid takes (a multiple of
# 2**7); the 64x64 synthetic images are scaled up.
INPUT_SIZE = 128


def _synthetic_override(records):
  data = {
      'input_path': None,
      'label_map_path': records.label_map_path,
      'global_batch_size': 2,
      'parser': {'max_instances': 24, 'level_reference_size': 128.0,
                 'level_base_size': 24.0,
                 'eval_groundtruth_padded_size': [INPUT_SIZE, INPUT_SIZE]},
  }
  train = dict(data, input_path=records.train_pattern, shuffle_buffer_size=8)
  val = dict(data, input_path=records.val_pattern)
  return {
      'runtime': {'distribution_strategy': 'one_device', 'num_gpus': 0,
                  'mixed_precision_dtype': 'float32'},
      'task': {
          'init_checkpoint': None,
          'model': {'num_classes': 7, 'num_thing_classes': 4,
                    'input_size': [INPUT_SIZE, INPUT_SIZE, 3]},
          'train_data': train,
          'validation_data': val,
      },
      'trainer': {
          'train_steps': TRAIN_STEPS, 'steps_per_loop': 10,
          'summary_interval': 10, 'checkpoint_interval': TRAIN_STEPS,
          'validation_interval': TRAIN_STEPS,
          'optimizer_config': {
              'learning_rate': {'cosine': {'decay_steps': TRAIN_STEPS}},
              'warmup': {'linear': {'warmup_steps': 5}}},
      },
  }


def _run(args, log_path, timeout=900):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  with open(log_path, 'w') as log:
    result = subprocess.run([sys.executable, '-m', *args], stdout=log,
                            stderr=subprocess.STDOUT, env=env,
                            timeout=timeout, check=False)
  with open(log_path) as f:
    text = f.read()
  assert result.returncode == 0, f'{args}: rc {result.returncode}\n' + (
      text[-4000:])
  return text


@pytest.mark.slow
@pytest.mark.parametrize('path', _PATHS, ids=_IDS)
def test_ablation_yaml_trains_20_steps(path, training_records, tmp_path):
  row = ablation_rows.parse(path)
  model_dir = str(tmp_path / 'model')
  log = _run(['maskconver.train', f'--experiment={row.experiment}',
              '--mode=train', f'--model_dir={model_dir}',
              f'--config_file={path}',
              '--params_override=' +
              json.dumps(_synthetic_override(training_records))],
             str(tmp_path / 'train.log'))
  assert os.path.isfile(os.path.join(model_dir, f'ckpt-{TRAIN_STEPS}.index'))
  # Model Garden logs 'train | step: N | ... output: {..., 'training_loss':
  # np.float32(x)}' (twice: absl and print).
  losses = {int(step): float(value) for step, value in re.findall(
      r"train \| step:\s+(\d+) \| steps/sec:[^\n]*\n\s*\{[^}]*"
      r"'training_loss': np\.float32\(([^)]+)\)", log)}
  assert sorted(losses) == [10, 20], log[-3000:]
  assert all(math.isfinite(v) for v in losses.values()), losses
  print(f'{row.name}: training_loss at steps 10, 20: '
        f'{losses[10]:.3f}, {losses[20]:.3f}')


@pytest.mark.slow
@pytest.mark.parametrize('path', _PATHS, ids=_IDS)
def test_header_parameter_count_is_what_model_stats_measures(path, tmp_path):
  row = ablation_rows.parse(path)
  size = f'{row.input_size[0]}x{row.input_size[1]}'
  out = _run(['maskconver.tools.model_stats', f'--experiment={row.experiment}',
              f'--config_file={path}', f'--input_size={size}'],
             str(tmp_path / 'stats.log'))
  stats = json.loads(out.strip().splitlines()[-1])
  assert round(stats['params_on_path'] / 1e6, 2) == row.params_millions
  assert round(stats['params'] / 1e6, 2) == row.built_params_millions
  # The header gives the measured FLOPs rounded to 0.01B.
  assert abs(stats['flops'] / 1e9 - row.flops_billions) <= 0.005 + 1e-9, (
      stats['flops'], row.flops_billions)
