"""A training killed with SIGKILL resumes from its last checkpoint.

`python -m maskconver.train` runs the tiny experiment with a checkpoint
after every step and EMA on; the test kills it as soon as a checkpoint
exists, re-runs the same command and checks, from the log and from the
checkpoints on both sides of the restart (step N by the killed run, N + 1 by
the resumed one), that

* the resumed run restored ckpt-N and trained from step N to the end;
* the global step and AdamW's iteration count continue (N + 1);
* AdamW's moments continue: v(N+1) = beta_2 v(N) + (1 - beta_2) g^2 with the
  g that m(N+1) = beta_1 m(N) + (1 - beta_1) g implies (fresh moments break
  this: v(N) is then missing);
* the EMA weights continue: avg(N+1) = avg(N) - (1 - d)(avg(N) - w(N+1)),
  with Model Garden's dynamic decay d = min(0.9, (1 + t) / (10 + t)) at
  t = N + 1 (fresh EMA weights start from zeros);
* the weights continue: one warm-up step moves them by far less than a new
  random initialization would.
"""

import os
import re
import subprocess
import time

import numpy as np
import tensorflow as tf

import training_runs

TRAIN_STEPS = 12
EMA_DECAY = 0.9
# Model Garden's TensorFlow checkpoint keys.
VALUE = '/.ATTRIBUTES/VARIABLE_VALUE'
SLOT = '/.OPTIMIZER_SLOT/optimizer/'
BASE = 'optimizer/ema_base_optimizer/'


def _start_and_kill_after_first_checkpoint(command, model_dir, log_path,
                                           timeout=600.0):
  """Starts the command and SIGKILLs it once a checkpoint is complete."""
  with open(log_path, 'w') as log:
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env=training_runs.subprocess_env())
  deadline = time.time() + timeout
  try:
    while tf.train.latest_checkpoint(model_dir) is None:
      assert process.poll() is None, (
          f'training ended (rc {process.returncode}) before a checkpoint; '
          f'log: {open(log_path).read()[-3000:]}')
      assert time.time() < deadline, 'no checkpoint before the timeout'
      time.sleep(0.05)
  finally:
    process.kill()  # SIGKILL, no chance to clean up.
    process.wait()
  assert process.returncode == -9, process.returncode


def _step(path):
  return int(path.rsplit('-', 1)[1])


def test_sigkilled_training_resumes_with_optimizer_and_ema_state(
    training_records, tmp_path):
  model_dir = str(tmp_path / 'model')
  overrides = training_runs.merge(training_runs.data_overrides(
      training_records), {'trainer': {
          'train_steps': TRAIN_STEPS, 'steps_per_loop': 1,
          'checkpoint_interval': 1, 'max_to_keep': TRAIN_STEPS + 5,
          'optimizer_config': {'ema': {'average_decay': EMA_DECAY,
                                       'trainable_weights_only': False}}}})
  command = training_runs.train_command(model_dir, overrides)

  _start_and_kill_after_first_checkpoint(command, model_dir,
                                         str(tmp_path / 'killed.log'))
  killed_at = tf.train.latest_checkpoint(model_dir)
  n = _step(killed_at)
  assert 1 <= n < TRAIN_STEPS, f'killed at step {n}: nothing left to resume'

  log = training_runs.run(command, str(tmp_path / 'resumed.log'),
                          timeout=600)
  assert f'restored model from {killed_at}.' in log
  assert re.search(
      rf'train \| step:\s+{n} \| training until step {TRAIN_STEPS}\.\.\.',
      log), log[-3000:]
  final = tf.train.latest_checkpoint(model_dir)
  assert _step(final) == TRAIN_STEPS
  assert tf.train.load_checkpoint(final).get_tensor(
      'global_step' + VALUE) == TRAIN_STEPS

  before = tf.train.load_checkpoint(killed_at)
  after = tf.train.load_checkpoint(os.path.join(model_dir, f'ckpt-{n + 1}'))
  for reader, step in ((before, n), (after, n + 1)):
    assert reader.get_tensor('global_step' + VALUE) == step
    assert reader.get_tensor(BASE + 'iter' + VALUE) == step
  beta_1 = float(before.get_tensor(BASE + 'beta_1' + VALUE))
  beta_2 = float(before.get_tensor(BASE + 'beta_2' + VALUE))
  t = n + 1
  decay = min(EMA_DECAY, (1.0 + t) / (10.0 + t))

  names = list(after.get_variable_to_shape_map())
  averaged = [k[:-len(SLOT + 'average' + VALUE)] for k in names
              if k.endswith(SLOT + 'average' + VALUE)]
  with_moments = [k[:-len(SLOT + 'ema_base_optimizer/m' + VALUE)]
                  for k in names
                  if k.endswith(SLOT + 'ema_base_optimizer/m' + VALUE)]
  assert len(averaged) > len(with_moments) > 50

  largest_average = 0.0
  for variable in averaged:
    average_key = variable + SLOT + 'average' + VALUE
    average_before = before.get_tensor(average_key).astype(np.float64)
    expected = average_before - (1.0 - decay) * (
        average_before - after.get_tensor(variable + VALUE))
    np.testing.assert_allclose(after.get_tensor(average_key), expected,
                               rtol=1e-5, atol=1e-6, err_msg=variable)
    largest_average = max(largest_average,
                          float(np.max(np.abs(average_before))))
  # Restarted EMA weights (zeros) would miss decay * avg(N), at least this.
  assert decay * largest_average > 0.1

  largest_step = 0.0
  for variable in with_moments:
    m0, m1, v0, v1 = (
        reader.get_tensor(variable + SLOT + f'ema_base_optimizer/{slot}'
                          + VALUE).astype(np.float64)
        for reader, slot in ((before, 'm'), (after, 'm'), (before, 'v'),
                             (after, 'v')))
    gradient = (m1 - beta_1 * m0) / (1.0 - beta_1)
    np.testing.assert_allclose(
        v1, beta_2 * v0 + (1.0 - beta_2) * gradient**2, rtol=1e-4,
        atol=1e-14, err_msg=variable)
    assert np.max(v0) > 0.0, variable
    w0 = before.get_tensor(variable + VALUE)
    w1 = after.get_tensor(variable + VALUE)
    largest_step = max(largest_step, float(np.max(np.abs(w1 - w0))))
  # One warm-up step of AdamW (lr 2e-3 * t / 100) moved no weight by more
  # than 2e-5 (measured at t = 2); a new initialization moves them by ~0.1.
  assert 0.0 < largest_step < 1e-2
