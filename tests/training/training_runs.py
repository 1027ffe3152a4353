"""Helpers of the training tests: commands, overrides, logs and checkpoints.

Runs go through `python -m maskconver.train` (or tests/training/
seeded_train.py, its seeded twin) in subprocesses, with the tiny experiment
of tiny_maskconver.yaml on the session's `training_records`.
"""

import glob
import json
import os
import socket
import subprocess
import sys
from typing import Any, Dict, List, Mapping, Optional

import tensorflow as tf

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams

from maskconver import registry_imports  # pylint: disable=unused-import

HERE = os.path.dirname(os.path.abspath(__file__))
TINY_CONFIG = os.path.join(HERE, 'tiny_maskconver.yaml')
SEEDED_TRAIN = os.path.join(HERE, 'seeded_train.py')
EXPERIMENT = 'maskconver_synthetic'

# Same examples in the same order on any replica split: no shuffling, no
# augmentation (the records are one shard, see tests/conftest.py).
DETERMINISTIC_INPUT = {
    'shuffle_buffer_size': 1,
    'seed': 1,
    'parser': {'aug_rand_hflip': False, 'aug_scale_min': 1.0,
               'aug_scale_max': 1.0},
}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
  """Recursively merges nested dicts; `extra` wins."""
  result = dict(base)
  for key, value in extra.items():
    if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
      result[key] = merge(result[key], value)
    else:
      result[key] = value
  return result


def data_overrides(records) -> Dict[str, Any]:
  """Points the tiny experiment at the session's TFRecords."""
  return {'task': {'train_data': {'input_path': records.train_pattern},
                   'validation_data': {'input_path': records.val_pattern}}}


def tiny_params(records, overrides: Optional[Mapping[str, Any]] = None
                ) -> cfg.ExperimentConfig:
  """The tiny experiment on `records`, in this process, plus overrides."""
  params = exp_factory.get_exp_config(EXPERIMENT)
  params = hyperparams.override_params_dict(params, TINY_CONFIG,
                                            is_strict=True)
  params.override(merge(data_overrides(records), overrides or {}),
                  is_strict=True)
  params.validate()
  return params


def train_command(model_dir: str, overrides: Mapping[str, Any],
                  mode: str = 'train', seed: Optional[int] = None,
                  logical_cpus: int = 1) -> List[str]:
  """The training command line; seeded_train.py when a seed is given."""
  if seed is None:
    program = ['-m', 'maskconver.train']
  else:
    program = [SEEDED_TRAIN, f'--seed={seed}',
               f'--logical_cpus={logical_cpus}']
  return [sys.executable, *program, f'--experiment={EXPERIMENT}',
          f'--mode={mode}', f'--model_dir={model_dir}',
          f'--config_file={TINY_CONFIG}',
          f'--params_override={json.dumps(overrides)}']


def subprocess_env(tf_config: Optional[Mapping[str, Any]] = None
                   ) -> Dict[str, str]:
  """The environment of a training subprocess (quiet TF C++ logs)."""
  env = dict(os.environ)
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env.pop('TF_CONFIG', None)
  if tf_config is not None:
    env['TF_CONFIG'] = json.dumps(tf_config)
  return env


def run(command: List[str], log_path: str, timeout: float,
        env: Optional[Mapping[str, str]] = None) -> str:
  """Runs a command to completion; returns its log, fails with its tail."""
  with open(log_path, 'w') as log:
    result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                            env=env or subprocess_env(), timeout=timeout,
                            check=False)
  with open(log_path) as f:
    text = f.read()
  assert result.returncode == 0, (
      f'{" ".join(command)} exited with {result.returncode}:\n{text[-5000:]}')
  return text


def read_scalars(model_dir: str) -> Dict[str, Dict[str, Dict[int, float]]]:
  """{event file: {tag: {step: value}}} of the train summaries."""
  result = {}
  for path in sorted(glob.glob(os.path.join(model_dir, 'train',
                                            'events.out.tfevents.*'))):
    scalars = {}
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = float(
            tf.make_ndarray(value.tensor))
    result[path] = scalars
  return result


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]
