"""Training input through the tf.data service: a dispatcher and two workers.

Model Garden's input reader hands the task's whole pipeline (read, decode,
parse, targets, batch) to the service when `enable_tf_data_service` and an
address are set (`--tf_data_service=grpc://HOST:PORT` does the latter). The
service runs the serialized pipeline on its workers, so everything in it
must be graph ops (no Python state). Here the servers run in this process on
localhost; the examples read through them must equal the examples of the
same pipeline read directly, and `maskconver.train` must train reading
through them.
"""

import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from official.core import task_factory

import training_runs

BATCHES = 8


@pytest.fixture(scope='module')
def service():
  """A dispatcher and two workers on localhost; yields the address."""
  dispatcher = tf.data.experimental.service.DispatchServer(
      tf.data.experimental.service.DispatcherConfig(
          port=0, job_gc_check_interval_ms=200, job_gc_timeout_ms=200))
  address = dispatcher.target.split('://')[1]
  workers = [
      tf.data.experimental.service.WorkerServer(
          tf.data.experimental.service.WorkerConfig(
              dispatcher_address=address, port=0))
      for _ in range(2)]
  yield dispatcher.target, workers
  dispatcher.stop()
  for worker in workers:
    worker.stop()


def _train_data(records, overrides):
  params = training_runs.tiny_params(records, {
      'task': {'train_data': training_runs.merge(
          training_runs.DETERMINISTIC_INPUT, overrides)}})
  task = task_factory.get_task(params.task)
  return task, params.task.train_data


def _examples(dataset, num_batches):
  """[(image sha1, {label: array})] of the first batches, one per example."""
  examples = []
  for images, labels in dataset.take(num_batches):
    images = images.numpy()
    labels = {k: v.numpy() for k, v in labels.items()}
    for i in range(images.shape[0]):
      examples.append((hashlib.sha1(images[i].tobytes()).hexdigest(),
                       {k: v[i] for k, v in labels.items()}))
  return examples


def test_examples_through_the_service_equal_the_direct_ones(
    training_records, service):
  target, workers = service
  task, direct_config = _train_data(training_records, {})
  direct = dict(_examples(task.build_inputs(direct_config),
                          training_records.num_train))
  assert len(direct) == training_records.num_train
  task, served_config = _train_data(training_records, {
      'enable_tf_data_service': True, 'tf_data_service_address': target,
      'tf_data_service_job_name': 'equality'})
  served = _examples(
      task.build_inputs(served_config,
                        input_context=tf.distribute.InputContext()),
      BATCHES)
  assert len(served) == BATCHES * served_config.global_batch_size
  for digest, labels in served:
    assert digest in direct, 'an image the direct pipeline never produced'
    assert set(labels) == set(direct[digest])
    for key, value in labels.items():
      np.testing.assert_array_equal(value, direct[digest][key], err_msg=key)
  # Each worker runs the whole pipeline (processing_mode parallel_epochs).
  assert all(worker._num_tasks() >= 1 for worker in workers)  # pylint: disable=protected-access


def test_train_reads_through_the_service(training_records, service,
                                         tmp_path):
  target, _ = service
  overrides = training_runs.merge(training_runs.data_overrides(
      training_records), {
          'task': {'train_data': {'enable_tf_data_service': True,
                                  'tf_data_service_job_name': 'train'}},
          'trainer': {'train_steps': 2, 'steps_per_loop': 2,
                      'summary_interval': 2, 'checkpoint_interval': 2},
      })
  command = training_runs.train_command(str(tmp_path), overrides)
  command.append(f'--tf_data_service={target}')
  log = training_runs.run(command, os.path.join(tmp_path, 'train.log'),
                          timeout=600)
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith('-2'), log[-2000:]
  scalars = training_runs.read_scalars(str(tmp_path))
  losses = [v for run in scalars.values()
            for k, v in run.items() if k == 'training_loss']
  assert losses and all(np.isfinite(list(l.values())).all() for l in losses)
