"""A diverging run stops (or recovers) without a non-finite checkpoint.

Model Garden checks the mean training loss after every loop of
`trainer.steps_per_loop` steps (`official.core.actions.RecoveryCondition`,
added by `train_lib` for `trainer.recovery_max_trials >= 0`): a NaN loss, or
one above `trainer.loss_upper_bound`, either stops training with a
RuntimeError (`recovery_max_trials: 0`, the default) or restores the latest
checkpoint and trains on, up to `recovery_max_trials` times. The checkpoint
of a loop is saved after that check, so a diverged loop never becomes the
latest checkpoint.

These tests run Model Garden's own runner (`train_lib.OrbitExperimentRunner`,
what `maskconver.train` runs) on the MaskConver task at a tiny size. To make
a chosen loop diverge, `_PoisonableTask` multiplies a weight of the model by
a variable before each train step (1, or NaN / inf in the poisoned loops):
the outputs, the loss and then every weight become non-finite, as in a real
blow-up, whatever the task's images and losses look like. One trainer (one
traced train loop) serves every test; each test starts from a copy of the
same step-2 checkpoint, which the runner restores.
"""

import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from official.core import train_lib

from maskconver.tasks import maskconver_task

import training_runs

STEPS_PER_LOOP = 2
BASE_STEP = 2
# The mobile recipe's structure (DeepLabv3+, heads on L3 only) at 32x32 and
# 8 channels: the cheapest MaskConver to trace.
_SMALL = {
    'task': {
        'model': {
            'input_size': [32, 32, 3], 'embedding_size': 8,
            'num_instances': 4, 'min_level': 3, 'max_level': 3,
            'mask_feature_levels': [3],
            'backbone': {'resnet': {'model_id': 10,
                                    'depth_multiplier': 0.25}},
            'decoder': {'type': 'deeplabv3plus', 'deeplabv3plus': {
                'aspp_level': 4, 'dilation_rates': [],
                'aspp_num_filters': 8, 'low_level': 3,
                'low_level_num_filters': 8, 'num_filters': 8}},
            'center_head': {'num_blocks': 1, 'num_filters': 8},
            'mask_head': {'num_blocks': 1, 'num_filters': 8},
        },
        'train_data': {'global_batch_size': 2, 'shuffle_buffer_size': 2},
    },
    'trainer': {'steps_per_loop': STEPS_PER_LOOP,
                'checkpoint_interval': STEPS_PER_LOOP,
                'summary_interval': STEPS_PER_LOOP, 'max_to_keep': 20},
}


class _PoisonableTask(maskconver_task.MaskConverTask):
  """The MaskConver task with a weight multiplied by `poison` each step."""

  def __init__(self, params, logging_dir=None, name=None):
    super().__init__(params, logging_dir=logging_dir, name=name)
    # Outside the model and optimizer: checkpoints neither save nor restore
    # it.
    self.poison = tf.Variable(1.0, trainable=False, name='poison')

  def train_step(self, inputs, model, optimizer, metrics=None):
    weight = model.trainable_variables[0]
    weight.assign(weight * tf.cast(self.poison, weight.dtype))
    return super().train_step(inputs, model, optimizer, metrics)


class _PoisonLoops:
  """Orbit train action: poisons the loops numbered in `loops` (1-based).

  Orbit calls train actions after each loop, this one before Model
  Garden's recovery action, so it sets the poison of the next loop.
  """

  def __init__(self, poison: tf.Variable, loops, value: float):
    self._poison = poison
    self._loops = set(loops)
    self._value = value
    self.loops_run = 0
    poison.assign(value if 1 in self._loops else 1.0)

  def __call__(self, output):
    del output
    self.loops_run += 1
    next_loop = self.loops_run + 1
    self._poison.assign(self._value if next_loop in self._loops else 1.0)


class _Shared:
  """One trainer and the step-2 checkpoint every test starts from."""

  def __init__(self, records, root):
    self.records = records
    params = self.params(train_steps=BASE_STEP, recovery_max_trials=0)
    self.strategy = tf.distribute.get_strategy()
    with self.strategy.scope():
      self.task = _PoisonableTask(params.task)
    self.base_dir = os.path.join(root, 'base')
    runner = train_lib.OrbitExperimentRunner(
        distribution_strategy=self.strategy, task=self.task, mode='train',
        params=params, model_dir=self.base_dir)
    runner.run()
    self.trainer = runner.trainer

  def params(self, train_steps, recovery_max_trials):
    return training_runs.tiny_params(self.records, training_runs.merge(
        _SMALL, {'trainer': {'train_steps': train_steps,
                             'recovery_max_trials': recovery_max_trials}}))

  def run(self, model_dir, train_steps, recovery_max_trials, poisoned_loops,
          value=math.nan):
    """Trains from the step-2 checkpoint, poisoning some loops."""
    shutil.copytree(self.base_dir, model_dir)
    params = self.params(train_steps, recovery_max_trials)
    poison = _PoisonLoops(self.task.poison, poisoned_loops, value)
    runner = train_lib.OrbitExperimentRunner(
        distribution_strategy=self.strategy, task=self.task, mode='train',
        params=params, model_dir=model_dir, trainer=self.trainer,
        train_actions=[poison])
    try:
      runner.run()
    finally:
      self.task.poison.assign(1.0)
    return poison


@pytest.fixture(scope='module')
def shared(training_records, tmp_path_factory):
  return _Shared(training_records, str(tmp_path_factory.mktemp('diverge')))


def _checkpoint_steps(model_dir):
  state = tf.train.get_checkpoint_state(model_dir)
  return [int(p.rsplit('-', 1)[1])
          for p in state.all_model_checkpoint_paths]


def _assert_finite(checkpoint_path):
  reader = tf.train.load_checkpoint(checkpoint_path)
  floating = 0
  for name, dtype in reader.get_variable_to_dtype_map().items():
    if dtype.is_floating:
      floating += 1
      assert np.all(np.isfinite(reader.get_tensor(name))), (checkpoint_path,
                                                           name)
  assert floating > 50  # Model, optimizer slots: not a vacuous check.


def test_base_checkpoint_is_finite(shared):
  assert _checkpoint_steps(shared.base_dir) == [BASE_STEP]
  _assert_finite(tf.train.latest_checkpoint(shared.base_dir))


@pytest.mark.parametrize('value', [math.nan, math.inf])
def test_diverging_loop_stops_training_without_checkpoint(shared, tmp_path,
                                                          value):
  model_dir = str(tmp_path / 'model')
  with pytest.raises(RuntimeError, match=r'The loss value is (NaN|inf)'):
    shared.run(model_dir, train_steps=8, recovery_max_trials=0,
               poisoned_loops=[1], value=value)
  # It stopped at the end of the first loop after the checkpoint ...
  assert int(shared.trainer.global_step.numpy()) == BASE_STEP + STEPS_PER_LOOP
  # ... whose weights had diverged (not a vacuous poisoning) ...
  assert not all(np.all(np.isfinite(w.numpy()))
                 for w in shared.trainer.model.trainable_weights)
  # ... and the checkpoint before it is still the latest, and finite.
  assert _checkpoint_steps(model_dir) == [BASE_STEP]
  _assert_finite(tf.train.latest_checkpoint(model_dir))


def test_recovery_restores_the_last_checkpoint_and_trains_on(shared, tmp_path,
                                                             caplog):
  model_dir = str(tmp_path / 'model')
  poison = shared.run(model_dir, train_steps=8, recovery_max_trials=2,
                      poisoned_loops=[1])
  # Loop 1 diverged and was undone; loops 2-4 trained steps 3 .. 8 again.
  assert poison.loops_run == 4
  assert int(shared.trainer.global_step.numpy()) == 8
  assert (f'Recovering the model from checkpoint: '
          f'{os.path.join(model_dir, "ckpt-2")}' in caplog.text)
  assert _checkpoint_steps(model_dir) == [2, 4, 6, 8]
  for step in (4, 6, 8):
    _assert_finite(os.path.join(model_dir, f'ckpt-{step}'))


def test_recovery_gives_up_after_max_trials(shared, tmp_path):
  model_dir = str(tmp_path / 'model')
  with pytest.raises(RuntimeError, match='happens 2 times'):
    shared.run(model_dir, train_steps=8, recovery_max_trials=1,
               poisoned_loops=range(1, 10))
  assert _checkpoint_steps(model_dir) == [BASE_STEP]
  _assert_finite(tf.train.latest_checkpoint(model_dir))
