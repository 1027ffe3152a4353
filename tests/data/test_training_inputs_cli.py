"""Training on bad input files: named, nothing lost.

Uses the tiny experiment of tests/training/tiny_maskconver.yaml on the
session's synthetic records (tests/conftest.py). The start-up refusal runs
Model Garden's `run_experiment` in this process, in the default suite; the
corrupt-shard and class-id runs are `python -m maskconver.train` subprocesses
that train a few steps, marked slow (three and one runs: about 160 s and
40 s on 2 shared cores).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from official.core import exp_factory
from official.core import task_factory
from official.core import train_lib
from official.modeling import hyperparams

from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.dataloaders import record_files

_TRAINING = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'training')
_TINY_CONFIG = os.path.join(_TRAINING, 'tiny_maskconver.yaml')


def _train(model_dir, train_pattern, val_pattern, trainer=None, model=None,
           timeout=900):
  overrides = {'task': {'train_data': {'input_path': train_pattern},
                        'validation_data': {'input_path': val_pattern}},
               'trainer': trainer or {}}
  if model:
    overrides['task']['model'] = model
  command = [sys.executable, '-m', 'maskconver.train',
             '--experiment=maskconver_synthetic', '--mode=train',
             f'--model_dir={model_dir}', f'--config_file={_TINY_CONFIG}',
             f'--params_override={json.dumps(overrides)}']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(command, capture_output=True, text=True, env=env,
                        timeout=timeout, check=False)


def test_prefix_glob_matching_the_label_map_stops_at_start_up(
    training_records, tmp_path):
  # In this process, through Model Garden's `run_experiment` (what
  # `maskconver.train` runs): the trainer builds the inputs before any step.
  prefix = training_records.train_pattern.split('-*')[0]
  params = exp_factory.get_exp_config('maskconver_synthetic')
  params = hyperparams.override_params_dict(params, _TINY_CONFIG,
                                            is_strict=True)
  params.override({'task': {
      'train_data': {'input_path': prefix + '*'},
      'validation_data': {'input_path': training_records.val_pattern}}},
                  is_strict=True)
  model_dir = str(tmp_path / 'model')
  task = task_factory.get_task(params.task, logging_dir=model_dir)
  with pytest.raises(record_files.RecordFileError) as error:
    train_lib.run_experiment(
        distribution_strategy=tf.distribute.get_strategy(), task=task,
        mode='train', params=params, model_dir=model_dir)
  assert str(error.value).startswith(
      f'task.train_data.input_path: {prefix}_label_map.json: not a TFRecord '
      'file')
  assert f'{prefix}-*-of-*.tfrecord' in str(error.value)
  assert tf.train.latest_checkpoint(model_dir) is None


def _steps(model_dir):
  state = tf.train.get_checkpoint_state(str(model_dir))
  return [int(p.rsplit('-', 1)[1]) for p in state.all_model_checkpoint_paths]


@pytest.mark.slow
def test_corrupt_shard_stops_names_it_and_resumes_once_fixed(
    training_records, tmp_path):
  shard = tmp_path / 'train-00000-of-00001.tfrecord'
  original = training_records.train_pattern.replace('*', '00000')
  shutil.copy(original, shard)
  model_dir = tmp_path / 'model'
  trainer = {'train_steps': 2, 'steps_per_loop': 2, 'checkpoint_interval': 2}
  first = _train(model_dir, str(shard), training_records.val_pattern, trainer)
  assert first.returncode == 0, first.stderr[-3000:]
  assert _steps(model_dir) == [2]

  # Damage the data of record 1 (record 0 takes its length + 16 bytes).
  data = bytearray(shard.read_bytes())
  length = int.from_bytes(data[:8], 'little')
  offset = length + 16
  data[offset + 12 + 100] ^= 0xFF
  shard.write_bytes(bytes(data))
  trainer['train_steps'] = 6
  failed = _train(model_dir, str(shard), training_records.val_pattern,
                  trainer)
  assert failed.returncode != 0
  assert (f'{shard}: corrupted or truncated record 1 at byte offset '
          f'{offset} (the file has {len(data)} bytes)' in failed.stderr), (
              failed.stderr[-3000:])
  assert 'maskconver.dataloaders.check_records' in failed.stderr
  assert _steps(model_dir) == [2]  # The last checkpoint is intact.

  shutil.copy(original, shard)  # Fixed: the same command resumes.
  resumed = _train(model_dir, str(shard), training_records.val_pattern,
                   trainer)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'restored model from {model_dir}/ckpt-2.' in (resumed.stdout +
                                                         resumed.stderr)
  assert _steps(model_dir) == [2, 4, 6]


@pytest.mark.slow
def test_class_ids_reaching_num_classes_stop_training(training_records,
                                                      tmp_path):
  # Shards without their label map beside them: only the records tell
  # that class 6 exists; the model has 6 classes.
  shard = tmp_path / 'train-00000-of-00001.tfrecord'
  shutil.copy(training_records.train_pattern.replace('*', '00000'), shard)
  model_dir = tmp_path / 'model'
  result = _train(model_dir, str(shard), training_records.val_pattern,
                  {'train_steps': 2}, model={'num_classes': 6})
  assert result.returncode != 0
  assert 'num_classes=6' in result.stderr, result.stderr[-3000:]
  assert tf.train.latest_checkpoint(str(model_dir)) is None
