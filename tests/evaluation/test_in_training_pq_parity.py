"""In-training PQ equals the offline evaluator's on the predictions it wrote."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory

from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.data import convert_coco_panoptic
from maskconver.data import label_map
from maskconver.data import synthetic
from maskconver.evaluation import panoptic_evaluator
from maskconver.evaluation import panoptic_quality
from maskconver.tasks import maskconver_task

_TINY_MODEL = {
    'backbone': {'type': 'resnet',
                 'resnet': {'model_id': 10, 'depth_multiplier': 0.25}},
    'decoder': {'type': 'convnext_unet',
                'convnext_unet': {'num_filters': [16, 16, 16]}},
    'center_head': {'num_filters': 16},
    'mask_head': {'num_filters': 16},
    'embedding_size': 16,
    # A random model scores ~0.1 everywhere: a zero score threshold makes it
    # predict segments, so the comparison covers tp, fp and fn.
    'postprocessor': {'score_threshold': 0.0, 'overlap_threshold': 0.3},
}


def _evaluate_in_task(params, logging_dir):
  task = maskconver_task.MaskConverTask(params.task, logging_dir=logging_dir)
  tf_keras.utils.set_random_seed(1)
  model = task.build_model()
  state = None
  for batch in task.build_inputs(params.task.validation_data):
    logs = task.validation_step(batch, model)
    state = task.aggregate_logs(state, logs)
  logs = task.reduce_aggregated_logs(state, tf.constant(7))
  return logs, state.panoptic_quality.result()


def _params(tmp_path, **task_overrides):
  """The synthetic experiment, tiny, on 6 val images of 96 px.

  96 px images into a 128 px model: predictions are cropped from the padded
  input back to the original size, as on real data.
  """
  paths = synthetic.generate(str(tmp_path / 'data'), num_train=1, num_val=6,
                             image_size=96, seed=3)
  val = paths['val']
  convert_coco_panoptic.convert(
      val['image_dir'], val['panoptic_json'], val['panoptic_masks_dir'],
      str(tmp_path / 'records' / 'val'), num_shards=1, num_workers=0,
      progress=False)
  params = exp_factory.get_exp_config('maskconver_synthetic')
  task = {
      'model': _TINY_MODEL,
      'validation_data': {
          'input_path': str(tmp_path / 'records' / 'val-*'),
          'label_map_path': str(tmp_path / 'records' / 'val_label_map.json'),
          'global_batch_size': 4,
      },
  }
  task.update(task_overrides)
  params.override({'task': task}, is_strict=True)
  return params, val


def test_in_training_pq_equals_offline_pq(tmp_path):
  params, val = _params(tmp_path, predictions_dir=str(tmp_path / 'pred'),
                        allow_image_summary=False)

  logs, in_task = _evaluate_in_task(params, str(tmp_path / 'model'))
  offline = panoptic_quality.evaluate_coco_panoptic(
      val['panoptic_json'], val['panoptic_masks_dir'],
      str(tmp_path / 'pred' / 'panoptic.json'),
      str(tmp_path / 'pred' / 'panoptic'))

  coco_ids = label_map.LabelMap.load(
      str(tmp_path / 'records' / 'val_label_map.json')).coco_ids
  counted = 0
  for train_id, coco_id in enumerate(coco_ids):
    ours = in_task['per_class'][str(train_id)]
    theirs = offline['per_class'][str(coco_id)]
    for field in ('tp', 'fp', 'fn'):
      assert ours[field] == theirs[field], (train_id, field)
    assert ours['iou_sum'] == pytest.approx(theirs['iou_sum'], abs=1e-9)
    counted += ours['tp'] + ours['fp'] + ours['fn']
  assert counted > 0
  # The comparison is not vacuous: the random model made false positives.
  assert sum(c['fp'] for c in in_task['per_class'].values()) > 0
  for group in ('All', 'Things', 'Stuff'):
    assert in_task[group]['pq'] == pytest.approx(offline[group]['pq'],
                                                 abs=1e-9)
    assert logs[f'PQ_{group.lower()}'] == pytest.approx(
        100 * offline[group]['pq'], abs=1e-7)
  written = json.load(open(os.path.join(str(tmp_path / 'model'),
                                        panoptic_evaluator.EVAL_METRICS_FILE)))
  assert written['step'] == 7
  assert written['PQ_all'] == pytest.approx(100 * offline['All']['pq'])


def test_evaluation_image_summaries(tmp_path):
  params, _ = _params(tmp_path, allow_image_summary=True)
  logs, _ = _evaluate_in_task(params, str(tmp_path / 'model'))
  images = sorted(k for k in logs if k.startswith('image/'))
  assert images == ['image/eval_0', 'image/eval_1', 'image/eval_2',
                    'image/eval_3']
  panel = logs['image/eval_0']
  # [1, original height, input | ground truth | prediction | legend, RGB].
  assert panel.dtype == np.uint8
  assert panel.shape[:2] == (1, 96) and panel.shape[3] == 3
  assert panel.shape[2] > 3 * 96
  source = panel[0, :, :96].astype(int)
  groundtruth = panel[0, :, 96 + 4:2 * 96 + 4].astype(int)
  # The ground-truth panel is the input tinted by segment colours.
  assert np.abs(source - groundtruth).mean() > 5
  written = json.load(open(os.path.join(str(tmp_path / 'model'),
                                        panoptic_evaluator.EVAL_METRICS_FILE)))
  assert not any(k.startswith('image/') for k in written)
