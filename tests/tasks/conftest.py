"""Fixtures of the task tests: the tiny experiment, its task, model, batches.

* `make_params(**overrides)` -> the `maskconver_synthetic` experiment with
  tests/training/tiny_maskconver.yaml (64x64, quarter-width ResNet-10, 32
  channels, batch 4) reading the `training_records` TFRecords, plus
  `overrides` (a nested dict in the config's structure).
* `tiny` (module-scoped) -> `Tiny`: `params`, a `task` logging to a temporary
  directory, a `model` built by the task, and one `train_batch` and one
  `val_batch` from `task.build_inputs`. Tests must not train `model`.
"""

import dataclasses
import os
from typing import Any, Callable, Mapping, Tuple

import pytest
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams

from maskconver import registry_imports  # pylint: disable=unused-import

TINY_CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, 'training',
                           'tiny_maskconver.yaml')


@dataclasses.dataclass
class Tiny:
  params: cfg.ExperimentConfig
  task: Any
  model: tf_keras.Model
  train_batch: Tuple[tf.Tensor, Mapping[str, Any]]
  val_batch: Tuple[tf.Tensor, Mapping[str, Any]]
  logging_dir: str


@pytest.fixture(scope='module')
def make_params(training_records) -> Callable[..., cfg.ExperimentConfig]:
  def make(overrides: Mapping[str, Any] = None) -> cfg.ExperimentConfig:
    params = exp_factory.get_exp_config('maskconver_synthetic')
    params = hyperparams.override_params_dict(params, TINY_CONFIG,
                                              is_strict=True)
    params.override({'task': {
        'train_data': {'input_path': training_records.train_pattern},
        'validation_data': {'input_path': training_records.val_pattern}}},
                    is_strict=True)
    if overrides:
      params.override(overrides, is_strict=True)
    params.validate()
    return params
  return make


@pytest.fixture(scope='module')
def tiny(make_params, tmp_path_factory) -> Tiny:
  params = make_params()
  logging_dir = str(tmp_path_factory.mktemp('task_logs'))
  task = task_factory.get_task(params.task, logging_dir=logging_dir)
  model = task.build_model()
  train_batch = next(iter(task.build_inputs(params.task.train_data)))
  val_batch = next(iter(task.build_inputs(params.task.validation_data)))
  return Tiny(params=params, task=task, model=model, train_batch=train_batch,
              val_batch=val_batch, logging_dir=logging_dir)
