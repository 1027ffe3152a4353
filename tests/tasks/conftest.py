"""Fixtures of the task tests: the tiny experiment, its task, model, batches.

* `make_params` comes from tests/conftest.py.
* `tiny` (module-scoped) -> `Tiny`: `params`, a `task` logging to a temporary
  directory, a `model` built by the task, and one `train_batch` and one
  `val_batch` from `task.build_inputs` (uint8 images, compact labels), and
  `train_dense`, the train batch after `task.prepare_inputs` (what the steps
  feed the model and losses). Tests must not train `model`.
"""

import dataclasses
from typing import Any, Mapping, Tuple

import pytest
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.core import task_factory

from maskconver import registry_imports  # pylint: disable=unused-import


@dataclasses.dataclass
class Tiny:
  params: cfg.ExperimentConfig
  task: Any
  model: tf_keras.Model
  train_batch: Tuple[tf.Tensor, Mapping[str, Any]]
  val_batch: Tuple[tf.Tensor, Mapping[str, Any]]
  logging_dir: str
  # The train batch as the steps see it: normalized images, dense labels.
  train_dense: Tuple[tf.Tensor, Mapping[str, Any]] = None


@pytest.fixture(scope='module')
def tiny(make_params, tmp_path_factory) -> Tiny:
  params = make_params()
  logging_dir = str(tmp_path_factory.mktemp('task_logs'))
  task = task_factory.get_task(params.task, logging_dir=logging_dir)
  model = task.build_model()
  train_batch = next(iter(task.build_inputs(params.task.train_data)))
  val_batch = next(iter(task.build_inputs(params.task.validation_data)))
  train_dense = task.prepare_inputs(*train_batch, params.task.train_data)
  return Tiny(params=params, task=task, model=model, train_batch=train_batch,
              val_batch=val_batch, logging_dir=logging_dir,
              train_dense=train_dense)
