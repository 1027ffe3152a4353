"""`train --seed=S` twice writes bit-identical checkpoints (op determinism).

The tiny experiment with the recipe's randomness on: shuffled input, random
flip, scale jitter and copy-paste (parser ops with stateful random draws in a
parallel map), AdamW updates on multi-threaded CPU kernels. Every variable of
the last checkpoint, optimizer slots and step counter included, must be equal
to the bit. With --nodeterministic the same two runs differ (multi-threaded
CPU kernels and the input maps' draws run in varying order); that is not
asserted here, since a run may happen to match.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

import training_runs

STEPS = 4
SEED = 3


def _overrides(records):
  return training_runs.merge(training_runs.data_overrides(records), {
      'task': {'train_data': {'parser': {'copy_paste_prob': 0.5,
                                         'aug_scale_min': 0.5,
                                         'aug_scale_max': 2.0}}},
      'trainer': {'train_steps': STEPS, 'steps_per_loop': 2,
                  'summary_interval': 2, 'checkpoint_interval': STEPS},
  })


def _checkpoint_values(model_dir):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


@pytest.fixture(scope='module')
def two_runs(training_records, tmp_path_factory):
  runs = []
  for index in range(2):
    model_dir = str(tmp_path_factory.mktemp(f'deterministic_{index}'))
    command = training_runs.train_command(
        model_dir, _overrides(training_records))
    command.append(f'--seed={SEED}')
    training_runs.run(command, os.path.join(model_dir, 'train.log'),
                      timeout=600)
    runs.append(_checkpoint_values(model_dir))
  return runs


def test_two_seeded_deterministic_runs_write_identical_checkpoints(two_runs):
  first, second = two_runs
  assert set(first) == set(second)
  steps = [v for k, v in first.items() if k.startswith('global_step')]
  assert steps and int(steps[0]) == STEPS
  slots = [k for k in first if '.OPTIMIZER_SLOT' in k]
  assert slots  # Adam's moments are compared too.
  different = [k for k in first if not np.array_equal(first[k], second[k])]
  assert not different, different[:10]
