"""Labels that do not fit the model stop training at start-up, named.

The synthetic records have 7 classes, 4 of them things, with the converter's
label maps beside the shards (tests/data/conftest.py). The checks run in
`MaskConverTask.build_inputs`, which Model Garden's trainer calls before the
first step; no model is built here.
"""

import os
import shutil

import pytest
import tensorflow as tf

from official.core import exp_factory
from official.core import task_factory

from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.data import coco_panoptic_io
from maskconver.data import label_map as label_map_lib


def _params(train_path, val_path, overrides=None):
  params = exp_factory.get_exp_config('maskconver_synthetic')
  params.override({'task': {
      'model': {'input_size': [64, 64, 3]},
      'train_data': {'input_path': train_path, 'global_batch_size': 2,
                     'shuffle_buffer_size': 2},
      'validation_data': {
          'input_path': val_path, 'global_batch_size': 2,
          'parser': {'eval_groundtruth_padded_size': [64, 64]}},
  }}, is_strict=True)
  if overrides:
    params.override(overrides, is_strict=True)
  return params


def _build(params, which='train_data'):
  task = task_factory.get_task(params.task)
  return task.build_inputs(getattr(params.task, which))


def test_matching_label_map_builds(converted_dataset):
  params = _params(converted_dataset.train_pattern,
                   converted_dataset.val_pattern, {'task': {
                       'train_data': {
                           'label_map_path': converted_dataset.label_map_path},
                   }})
  images, _ = next(iter(_build(params)))
  assert images.shape == (2, 64, 64, 3)


@pytest.mark.parametrize('model, expected', [
    ({'num_classes': 8, 'num_thing_classes': 4},
     'task.model.num_classes=8 (task.model.num_thing_classes=4)'),
    # Same class count, another thing/stuff split: class 3 would train as
    # stuff.
    ({'num_classes': 7, 'num_thing_classes': 3},
     'task.model.num_classes=7 (task.model.num_thing_classes=3)'),
])
def test_label_map_path_differing_from_the_model(converted_dataset, model,
                                                 expected):
  path = converted_dataset.label_map_path
  params = _params(converted_dataset.train_pattern,
                   converted_dataset.val_pattern, {'task': {
                       'model': model,
                       'train_data': {'label_map_path': path}}})
  with pytest.raises(ValueError) as error:
    _build(params)
  assert str(error.value) == (
      f'task.train_data.label_map_path={path}: the dataset has 7 classes (4 '
      f'things, 3 stuff) but the model has {expected}. Set '
      'task.model.num_classes=7 and task.model.num_thing_classes=4, or give '
      'the records and label map of the dataset this model is for.')


def test_label_map_beside_the_shards_is_checked_too(converted_dataset):
  # No label_map_path: the converter's val_label_map.json next to the val
  # shards is found from their names.
  params = _params(converted_dataset.train_pattern,
                   converted_dataset.val_pattern,
                   {'task': {'model': {'num_classes': 9}}})
  val_label_map = converted_dataset.val_pattern.split('-*')[0] + (
      '_label_map.json')
  with pytest.raises(ValueError, match=(
      f'{val_label_map}, the label map beside the shards of '
      'task.validation_data.input_path: the dataset has 7 classes')):
    _build(params, 'validation_data')


def test_train_and_validation_label_maps_must_agree(converted_dataset,
                                                    tmp_path):
  labels = label_map_lib.LabelMap.load(converted_dataset.label_map_path)
  categories = [{'id': c.coco_id, 'name': c.name, 'isthing': int(c.isthing),
                 'color': list(c.color)} for c in labels.classes]
  categories[0]['id'], categories[1]['id'] = 901, 902  # Other datasets' ids.
  other = str(tmp_path / 'other_label_map.json')
  label_map_lib.LabelMap.from_coco_categories(categories).save(other)
  params = _params(converted_dataset.train_pattern,
                   converted_dataset.val_pattern, {'task': {
                       'train_data': {
                           'label_map_path': converted_dataset.label_map_path},
                       'validation_data': {'label_map_path': other}}})
  with pytest.raises(ValueError, match='task.train_data.label_map_path and '
                     'task.validation_data.label_map_path differ'):
    _build(params)


def test_unreadable_label_map_is_named(converted_dataset, tmp_path):
  broken = tmp_path / 'train_label_map.json'
  broken.write_text('{"classes": ')
  params = _params(converted_dataset.train_pattern,
                   converted_dataset.val_pattern,
                   {'task': {'train_data': {'label_map_path': str(broken)}}})
  with pytest.raises(coco_panoptic_io.PanopticFormatError,
                     match=f'{broken}: invalid JSON'):
    _build(params)


def test_class_ids_reaching_num_classes_stop_at_the_first_example(
    converted_dataset, tmp_path):
  # Shards without a label map beside them: only the records tell that
  # class 6 exists. The model has 6 classes (4 things), so training ids 6
  # must not be dropped silently.
  for shard in converted_dataset.train_shards:
    shutil.copy(shard, tmp_path)
  pattern = os.path.join(tmp_path, os.path.basename(
      converted_dataset.train_pattern))
  params = _params(pattern, converted_dataset.val_pattern,
                   {'task': {'model': {'num_classes': 6}}})
  with pytest.raises(tf.errors.InvalidArgumentError, match='num_classes=6'):
    for _ in _build(params).take(8):
      pass
