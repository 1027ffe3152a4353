"""Distributed training matches single-device training step by step.

The tiny experiment trains 3 steps of global batch 4 through
`maskconver.train`'s main (tests/training/seeded_train.py: same flags, plus
a seed and logical CPUs) on one device, under MirroredStrategy over two
logical CPUs (2 replicas x 2 images) and, in the slow suite, under
MultiWorkerMirroredStrategy with two worker processes on localhost (TF_CONFIG,
1 replica x 2 images each). Everything that could tell the runs apart is
fixed: the seed (identical initial weights), the input (one shard, no
shuffling, no augmentation: each step's global batch holds the same four
images), synchronized batch norm (per-replica batch statistics would differ
from the statistics of the global batch by design).

The logged losses of steps 1-3 must agree within a relative 2e-5. What is
left is float32 summation order (all-reduce of gradients and of the loss
normalizers, sync-BN moments): measured at most 2e-7. Plain SGD (constant lr
0.02) makes the later steps sensitive to the size of the summed gradients,
which Adam's normalization would hide. The losses are normalized by the
global counts of centers and masks: per-replica counts make step 1 differ by
about 6e-4.
"""

import json
import os
import subprocess

import pytest

import training_runs

STEPS = 3
RTOL = 2e-5
SEED = 1
TAGS = ('training_loss', 'heatmap_loss', 'mask_bce_loss', 'mask_dice_loss')
MIRRORED_DEVICES = ("Using MirroredStrategy with devices "
                    "('/job:localhost/replica:0/task:0/device:CPU:0', "
                    "'/job:localhost/replica:0/task:0/device:CPU:1')")


def _overrides(records, strategy):
  return training_runs.merge(training_runs.data_overrides(records), {
      'runtime': {'distribution_strategy': strategy, 'num_gpus': 0},
      'task': {
          'train_data': training_runs.DETERMINISTIC_INPUT,
          'model': {'norm_activation': {'use_sync_bn': True}},
      },
      'trainer': {
          'train_steps': STEPS, 'steps_per_loop': 1, 'summary_interval': 1,
          'checkpoint_interval': 100,
          'optimizer_config': {
              'optimizer': {'type': 'sgd'},
              'learning_rate': {'type': 'constant',
                                'constant': {'learning_rate': 0.02}},
              'warmup': {'type': 'linear', 'linear': {'warmup_steps': 0}},
          },
      },
  })


def _start(command, log_path, env=None):
  log = open(log_path, 'w')
  process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                             env=env or training_runs.subprocess_env())
  return process, log


def _finish(process, log, timeout=900):
  try:
    process.wait(timeout=timeout)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
    log.close()
  with open(log.name) as f:
    text = f.read()
  assert process.returncode == 0, f'{log.name}:\n{text[-5000:]}'
  return text


def _losses(model_dir):
  """{tag: [value of step 1..STEPS]} from every event file (all equal)."""
  per_file = training_runs.read_scalars(model_dir)
  assert per_file, f'no train summaries in {model_dir}'
  result = None
  for scalars in per_file.values():
    losses = {tag: [scalars[tag][s] for s in range(1, STEPS + 1)]
              for tag in TAGS}
    if result is None:
      result = losses
    else:
      _assert_close(losses, result)
  return result


def _assert_close(actual, expected):
  for tag in TAGS:
    assert actual[tag] == pytest.approx(expected[tag], rel=RTOL), tag


def _assert_same_losses(actual, expected):
  _assert_close(actual, expected)
  # SGD moved the model: the later steps check the summed gradients.
  first, last = expected['training_loss'][0], expected['training_loss'][-1]
  assert abs(first - last) > 100 * RTOL * first


@pytest.fixture(scope='module')
def single_device_run(training_records, tmp_path_factory):
  """Starts the single-device reference; call it to wait for its losses."""
  model_dir = str(tmp_path_factory.mktemp('single_device'))
  command = training_runs.train_command(
      model_dir, _overrides(training_records, 'one_device'), seed=SEED)
  process, log = _start(command, os.path.join(model_dir, 'run.log'))
  losses = []

  def wait():
    if not losses:
      _finish(process, log)
      losses.append(_losses(model_dir))
    return losses[0]

  yield wait
  if process.poll() is None:
    process.kill()
    process.wait()
    log.close()


def test_mirrored_two_cpus_matches_one_device(training_records,
                                              single_device_run, tmp_path):
  model_dir = str(tmp_path / 'mirrored')
  command = training_runs.train_command(
      model_dir, _overrides(training_records, 'mirrored'), seed=SEED,
      logical_cpus=2)
  process, log = _start(command, str(tmp_path / 'mirrored.log'))
  text = _finish(process, log)
  assert MIRRORED_DEVICES in text
  _assert_same_losses(_losses(model_dir), single_device_run())


def test_multi_worker_mirrored_matches_one_device(training_records,
                                                  single_device_run,
                                                  tmp_path):
  model_dir = str(tmp_path / 'multi_worker')
  command = training_runs.train_command(
      model_dir, _overrides(training_records, 'multi_worker_mirrored'),
      seed=SEED)
  workers = [f'localhost:{training_runs.free_port()}' for _ in range(2)]
  runs = []
  for index in range(2):
    env = training_runs.subprocess_env({
        'cluster': {'worker': workers},
        'task': {'type': 'worker', 'index': index}})
    runs.append(_start(command, str(tmp_path / f'worker{index}.log'), env))
  texts = [_finish(process, log) for process, log in runs]
  for index, text in enumerate(texts):
    assert f'task_id = {index}, num_workers = 2' in text, text[-3000:]
  _assert_same_losses(_losses(model_dir), single_device_run())


@pytest.mark.slow
def test_mirrored_evaluation_counts_every_image_once(training_records,
                                                     tmp_path):
  model_dir = str(tmp_path / 'mirrored_eval')
  overrides = training_runs.merge(
      _overrides(training_records, 'mirrored'),
      {'trainer': {'validation_interval': STEPS}})
  command = training_runs.train_command(
      model_dir, overrides, mode='train_and_eval', seed=SEED, logical_cpus=2)
  process, log = _start(command, str(tmp_path / 'mirrored_eval.log'))
  assert MIRRORED_DEVICES in _finish(process, log)
  with open(os.path.join(model_dir, 'eval_metrics.json')) as f:
    record = json.load(f)
  assert record['step'] == STEPS
  # Each replica evaluates 2 of the 4 val images: every non-crowd ground-truth
  # segment must be a TP or an FN exactly once.
  with open(os.path.join(training_records.root, 'annotations',
                         'panoptic_val.json')) as f:
    annotations = json.load(f)['annotations']
  assert len(annotations) == training_records.num_val
  num_segments = sum(1 for a in annotations for s in a['segments_info']
                     if not s['iscrowd'])
  assert sum(c['tp'] + c['fn'] for c in record['per_class'].values()) == (
      num_segments)
