"""Session fixture shared by the task and training tests: tiny TFRecords.

* `training_records` -> `TrainingRecords`: 8 train + 4 val synthetic images
  of 64x64 (`maskconver.data.synthetic.generate(seed=0)`), converted by
  `maskconver.data.convert_coco_panoptic.convert` into ONE train shard and
  ONE val shard. One shard keeps the record order fixed, so a run without
  shuffling sees the same examples in the same order on any number of
  replicas or workers. Attributes: `train_pattern`, `val_pattern` (globs),
  `label_map_path`, `root` (the COCO panoptic dataset), `num_train`,
  `num_val`. Built once per session; treat it as read-only.
* `make_params(overrides)` -> the `maskconver_synthetic` experiment with
  tests/training/tiny_maskconver.yaml (64x64, quarter-width ResNet-10, 32
  channels, batch 4) reading the `training_records` TFRecords, plus
  `overrides` (a nested dict in the config's structure).
* `load_script(name)` -> scripts/<name>.py imported as a module (scripts/ is
  not a package), for the tests of the scripts' functions.
"""

import os

# XLA's HLO passes (op support, static shapes: what a TPU needs) run in full;
# only the CPU backend's LLVM optimization is lowered, which cuts the compile
# time of the XLA step tests by about a quarter.
os.environ.setdefault('XLA_FLAGS', '--xla_backend_optimization_level=0')

import dataclasses
import importlib.util
import types
from typing import Any, Callable, Mapping

import pytest

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams

from maskconver import registry_imports  # pylint: disable=unused-import

from maskconver.data import convert_coco_panoptic
from maskconver.data import synthetic

SCRIPTS_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'scripts')
TINY_CONFIG = os.path.join(os.path.dirname(__file__), 'training',
                           'tiny_maskconver.yaml')
TRAIN_IMAGES = 8
VAL_IMAGES = 4
IMAGE_SIZE = 64
SEED = 0


@dataclasses.dataclass(frozen=True)
class TrainingRecords:
  root: str
  train_pattern: str
  val_pattern: str
  label_map_path: str
  num_train: int
  num_val: int


@pytest.fixture(scope='session')
def training_records(tmp_path_factory) -> TrainingRecords:
  root = str(tmp_path_factory.mktemp('training_dataset'))
  paths = synthetic.generate(os.path.join(root, 'coco'), TRAIN_IMAGES,
                             VAL_IMAGES, IMAGE_SIZE, SEED)
  records = os.path.join(root, 'records')
  train = convert_coco_panoptic.convert(
      **paths['train'], output_prefix=os.path.join(records, 'train'),
      num_shards=1, num_workers=0, progress=False)
  convert_coco_panoptic.convert(
      **paths['val'], output_prefix=os.path.join(records, 'val'),
      num_shards=1, num_workers=0, progress=False)
  return TrainingRecords(
      root=os.path.join(root, 'coco'),
      train_pattern=os.path.join(records, 'train-*-of-00001.tfrecord'),
      val_pattern=os.path.join(records, 'val-*-of-00001.tfrecord'),
      label_map_path=train.label_map_path,
      num_train=TRAIN_IMAGES, num_val=VAL_IMAGES)


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


@pytest.fixture(scope='session')
def load_script() -> Callable[[str], types.ModuleType]:
  def load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(SCRIPTS_DIR, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  return load
