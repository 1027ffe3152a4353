"""Batch sizes that fit the replicas and the padded last validation batch."""

import numpy as np
import pytest
import tensorflow as tf

from official.core import task_factory

from maskconver import keys
from maskconver.dataloaders import batching
from maskconver.evaluation import panoptic_quality


def test_per_replica_batch_size_names_the_flag():
  context = tf.distribute.InputContext(num_input_pipelines=1,
                                       input_pipeline_id=0,
                                       num_replicas_in_sync=16)
  assert batching.per_replica_batch_size(128, context, 'f') == 8
  assert batching.per_replica_batch_size(8, None, 'f') == 8
  with pytest.raises(ValueError,
                     match=r'task.validation_data.global_batch_size=8 must '
                     r'be a positive multiple of the 16 replicas'):
    batching.per_replica_batch_size(
        8, context, 'task.validation_data.global_batch_size')


def test_last_validation_batch_is_padded_and_ignored_by_pq(
    make_params, training_records, monkeypatch):
  # 4 validation images in batches of 3: the second batch holds 1 real image
  # and 2 padded ones.
  params = make_params({'task': {'validation_data': {'global_batch_size': 3}}})
  task = task_factory.get_task(params.task)
  batches = list(task.build_inputs(params.task.validation_data).take(3))
  assert len(batches) == 2
  for images, labels in batches:
    assert images.shape[0] == 3  # static, as TPUs need
    assert labels[keys.SLOT_MAP].shape[0] == 3
  images, labels = batches[1]
  info = labels[keys.GROUNDTRUTHS][keys.IMAGE_INFO].numpy()
  assert info[0, 0, 0] > 0 and np.all(info[1:] == 0)
  np.testing.assert_array_equal(labels[keys.NUM_INSTANCES].numpy()[1:], 0)
  k = labels[keys.CLASSES].shape[1]
  # Padded examples: every pixel ignored by both losses.
  np.testing.assert_array_equal(labels[keys.SLOT_MAP].numpy()[1:], k + 1)
  np.testing.assert_array_equal(
      labels[keys.HEATMAP_IGNORE_COUNT].numpy()[1:], 64)
  _, dense = task.prepare_inputs(images, labels, params.task.validation_data)
  np.testing.assert_array_equal(dense[keys.MASK_WEIGHTS].numpy()[1:], 0.0)
  for level, weights in dense[keys.HEATMAP_WEIGHTS].items():
    np.testing.assert_array_equal(weights.numpy()[1:], 0.0, err_msg=level)
  # PQ sees the 4 real images only.
  seen = []
  original = panoptic_quality.PanopticQuality.update

  def update(self, *args, name='image', **kwargs):
    seen.append(name)
    return original(self, *args, name=name, **kwargs)

  monkeypatch.setattr(panoptic_quality.PanopticQuality, 'update', update)
  model = task.build_model()
  state = None
  for batch in batches:
    state = task.aggregate_logs(state, task.validation_step(batch, model))
  assert len(seen) == training_records.num_val == 4
  assert len(set(seen)) == 4


def test_train_batch_that_does_not_divide_is_refused(make_params):
  params = make_params({'task': {'train_data': {'global_batch_size': 3}}})
  task = task_factory.get_task(params.task)
  context = tf.distribute.InputContext(num_input_pipelines=1,
                                       input_pipeline_id=0,
                                       num_replicas_in_sync=2)
  with pytest.raises(ValueError, match='task.train_data.global_batch_size=3'):
    task.build_inputs(params.task.train_data, context)
