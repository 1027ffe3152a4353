"""Fixtures of the export tests: a tiny MaskConver, its exports and data.

Session-scoped, built once per run (treat them as read-only):

* `tiny_params`: the `maskconver_synthetic` experiment overridden by
  `TINY_OVERRIDE` (the mobile recipe's structure -- DeepLabv3+ decoder,
  heads on L3 only, hard-sigmoid -- on a ResNet-10 at depth 0.25, 64x64
  input, K = 6, and the synthetic dataset's 7 classes, 4 of them things).
* `tiny_module`: a `MaskConverModule` of that config with batch size 1 whose
  head weights are re-drawn (`liven`) so that the test image gives at least
  two segments and some void: the factory's initial weights give no
  detection at all, which would make every comparison vacuous.
* `test_image`: uint8 [48, 80, 3] colour blocks (not the input size, not
  its aspect ratio: the export has to resize and pad).
* `checkpoint_prefix`: the tiny module's weights, as the trainer saves them
  (`tf.train.Checkpoint(model=...).save`, so that its directory names the
  latest checkpoint too).
* `exported`: one SavedModel of the tiny module with the signatures
  serving_default (image_tensor), image_bytes, tf_example, tflite, network
  and postprocess, and (batch size 1) the int8 twins tflite_int8 and
  network_int8.
* `tflite_float`: the `tflite` signature converted to float32 TFLite.
* `val_records`: 3 synthetic 64x64 validation images as TFRecords.
* `serving`: helpers, as a namespace: `make_params(extra_override)`,
  `num_segments(outputs)`, `run_module(module_name, args)` (a finished
  `python -m` subprocess), `override_flag_with(extra)` (TINY_OVERRIDE merged
  with `extra`, as a --params_override value), and the constants
  `override_flag` (TINY_OVERRIDE as a --params_override value),
  `input_size`, `num_instances`, `experiment`.
"""

import json
import os
import subprocess
import sys
import types
from typing import Any, Dict, List

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory

from maskconver import keys
from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.data import convert_coco_panoptic
from maskconver.data import synthetic
from maskconver.serving import export_module
from maskconver.serving import export_saved_model
from maskconver.serving import tflite_conversion

EXPERIMENT = 'maskconver_synthetic'
INPUT_SIZE = 64
NUM_INSTANCES = 6
TINY_OVERRIDE = {
    'task': {
        'model': {
            'input_size': [INPUT_SIZE, INPUT_SIZE, 3],
            'num_classes': 7,
            'num_thing_classes': 4,
            'embedding_size': 8,
            'num_instances': NUM_INSTANCES,
            'min_level': 3,
            'max_level': 3,
            'mask_feature_levels': [3],
            'score_activation': 'hard_sigmoid',
            'backbone': {'resnet': {'model_id': 10, 'depth_multiplier': 0.25}},
            'decoder': {
                'type': 'deeplabv3plus',
                'deeplabv3plus': {
                    'aspp_level': 4, 'dilation_rates': [],
                    'aspp_num_filters': 16, 'low_level': 3,
                    'low_level_num_filters': 8, 'num_filters': 16,
                },
            },
            'center_head': {'num_blocks': 1, 'num_filters': 8},
            'mask_head': {'num_blocks': 1, 'num_filters': 8},
        },
        'validation_data': {'global_batch_size': 1,
                            'parser': {'max_instances': 24,
                                       'eval_groundtruth_padded_size': [64,
                                                                        64]}},
    },
}
# The override as one --params_override value (JSON is YAML).
TINY_OVERRIDE_FLAG = json.dumps(TINY_OVERRIDE)
SIGNATURES = {'image_tensor': 'serving_default', 'image_bytes': 'image_bytes',
              'tf_example': 'tf_example', 'tflite': 'tflite',
              'network': 'network', 'postprocess': 'postprocess'}


def _merged(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
  merged = dict(base)
  for key, value in extra.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      merged[key] = _merged(merged[key], value)
    else:
      merged[key] = value
  return merged


def override_flag_with(extra: Dict[str, Any]) -> str:
  """TINY_OVERRIDE merged with `extra`, as a --params_override value."""
  return json.dumps(_merged(TINY_OVERRIDE, extra))


def make_params(extra_override: Any = None):
  params = exp_factory.get_exp_config(EXPERIMENT)
  params.override(TINY_OVERRIDE, is_strict=True)
  if extra_override:
    params.override(extra_override, is_strict=True)
  return params


def liven(model, seed: int) -> None:
  """Re-draws head and generator weights with unit gain, heatmap bias -1."""
  rng = np.random.default_rng(seed)
  parts = (model.heatmap_head, model.embedding_head, model.mask_head,
           model.generator)
  for part in parts:
    for variable in part.trainable_variables:
      shape = variable.shape.as_list()
      if 'embeddings' in variable.name:
        fan_in = 1
      elif 'depthwise_kernel' in variable.name:
        fan_in = int(np.prod(shape[:2]))
      elif 'kernel' in variable.name:
        fan_in = int(np.prod(shape[:-1]))
      else:
        continue
      variable.assign(
          rng.normal(0.0, 2.0 / np.sqrt(fan_in), shape).astype(np.float32))
  for variable in model.heatmap_head.trainable_variables:
    if variable.name.endswith('output/bias:0'):
      variable.assign(np.full(variable.shape, -1.0, np.float32))


def make_test_image() -> np.ndarray:
  image = np.zeros((48, 80, 3), np.uint8)
  image[:24, :40] = [255, 0, 0]
  image[24:, :40] = [0, 255, 0]
  image[:, 40:60] = [0, 0, 255]
  image[10:30, 60:] = [255, 255, 0]
  return image


def num_segments(outputs: Dict[str, Any]) -> int:
  return int(np.sum(np.asarray(outputs[keys.SEGMENT_CLASSES_OUT]) >= 0))


def run_module(module_name: str, args: List[str],
               timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs `python -m module_name args` and returns the finished process."""
  return subprocess.run([sys.executable, '-m', module_name] + args,
                        capture_output=True, text=True, timeout=timeout,
                        check=False)


@pytest.fixture(scope='session')
def tiny_params():
  return make_params()


@pytest.fixture(scope='session')
def test_image() -> np.ndarray:
  return make_test_image()


@pytest.fixture(scope='session')
def tiny_module(tiny_params, test_image) -> export_module.MaskConverModule:
  # The backbone and decoder keep their initial weights: seed them.
  tf_keras.utils.set_random_seed(0)
  module = export_module.MaskConverModule(
      tiny_params, batch_size=1, input_image_size=[INPUT_SIZE, INPUT_SIZE])
  for seed in range(20):
    liven(module.model, seed)
    outputs = module.serve(tf.constant(test_image[np.newaxis]))
    segment_map = outputs[keys.PANOPTIC_SEGMENT_MAP].numpy()
    if num_segments(outputs) >= 2 and np.any(segment_map == 0):
      return module
  raise AssertionError('no seed in 0..19 gives the tiny model two segments '
                       'and some void on the test image')


@pytest.fixture(scope='session')
def checkpoint_prefix(tiny_module, tmp_path_factory) -> str:
  directory = tmp_path_factory.mktemp('checkpoint')
  return tf.train.Checkpoint(model=tiny_module.model).save(
      str(directory / 'ckpt'))


@pytest.fixture(scope='session')
def exported(tiny_module, tmp_path_factory) -> str:
  directory = str(tmp_path_factory.mktemp('export') / 'saved_model')
  return export_saved_model.save_module(tiny_module, SIGNATURES, directory)


@pytest.fixture(scope='session')
def tflite_float(exported) -> bytes:
  return tflite_conversion.convert(exported, None, signature_key='tflite')


@pytest.fixture(scope='session')
def val_records(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp('synthetic'))
  paths = synthetic.generate(root, num_train=0, num_val=3,
                             image_size=INPUT_SIZE, seed=1)
  convert_coco_panoptic.convert(
      **paths['val'], output_prefix=os.path.join(root, 'val'), num_shards=1,
      num_workers=0, progress=False)
  return os.path.join(root, 'val-*-of-00001.tfrecord')


@pytest.fixture(scope='session')
def serving() -> types.SimpleNamespace:
  return types.SimpleNamespace(
      make_params=make_params, num_segments=num_segments,
      run_module=run_module, override_flag=TINY_OVERRIDE_FLAG,
      override_flag_with=override_flag_with,
      input_size=INPUT_SIZE, num_instances=NUM_INSTANCES,
      experiment=EXPERIMENT)
