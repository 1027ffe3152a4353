"""Shared fixtures: tiny MaskConver configs and models, built once per run.

* `tiny` -> a namespace with
  - `config(decoder, **overrides)`: a `MaskConverModel` config with a
    ResNet-10 backbone at depth multiplier 0.25 (16, 32, 64, 128 channels on
    levels 2..5), `num_classes` = 5 (`num_thing_classes` = 3),
    `embedding_size` = 8 and K = `num_instances` = 6, heads of one 8-filter
    light block. `decoder='convnext_unet'`: N = [1, 1, 1], D = 16, heads on
    L3-L7, mask features from L3-L5; `decoder='deeplabv3plus'`: ASPP on L5
    (so that every backbone stage is used) fused with L3 (16 filters), heads
    and mask features on L3 only. Keyword overrides are set on the model
    config.
  - `build(config)`: the factory's model for any input size.
  - the constants `num_classes`, `num_thing_classes`, `embedding_size`,
    `num_instances`.
* `tiny_unet_model`, `tiny_deeplab_model`: those two configs built by the
  factory with a dynamic input size (any multiple of 8 works). Session-scoped:
  tests may run them in training mode (which moves batch-norm statistics) but
  must not change their weights otherwise.
* `assert_round_trip` -> `check(layer, run)`: the get_config / from_config
  round trip of a layer or decoder (see the fixture).
"""

import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.vision.configs import backbones

from maskconver.configs import decoders
from maskconver.configs import maskconver as maskconver_cfg
from maskconver.modeling import factory

TINY_NUM_CLASSES = 5
TINY_NUM_THING_CLASSES = 3
TINY_EMBEDDING_SIZE = 8
TINY_NUM_INSTANCES = 6


def make_tiny_config(decoder: str = 'convnext_unet',
                     **overrides) -> maskconver_cfg.MaskConverModel:
  """See the module docstring."""
  config = maskconver_cfg.MaskConverModel(
      num_classes=TINY_NUM_CLASSES,
      num_thing_classes=TINY_NUM_THING_CLASSES,
      input_size=[64, 64, 3],
      embedding_size=TINY_EMBEDDING_SIZE,
      num_instances=TINY_NUM_INSTANCES,
      backbone=backbones.Backbone(
          type='resnet',
          resnet=backbones.ResNet(model_id=10, depth_multiplier=0.25)),
      center_head=maskconver_cfg.Head(num_blocks=1, num_filters=8),
      mask_head=maskconver_cfg.Head(num_blocks=1, num_filters=8))
  if decoder == 'convnext_unet':
    config.min_level, config.max_level = 3, 7
    config.mask_feature_levels = [3, 4, 5]
    config.decoder = decoders.Decoder(
        type='convnext_unet',
        convnext_unet=decoders.ConvNeXtUNet(num_blocks=[1, 1, 1],
                                            num_filters=[16, 16, 16]))
  elif decoder == 'deeplabv3plus':
    config.min_level, config.max_level = 3, 3
    config.mask_feature_levels = [3]
    config.decoder = decoders.Decoder(
        type='deeplabv3plus',
        deeplabv3plus=decoders.DeepLabV3Plus(
            aspp_level=5, aspp_num_filters=16, low_level=3,
            low_level_num_filters=8, num_filters=16))
  else:
    raise ValueError(f'unknown tiny decoder {decoder!r}')
  for name, value in overrides.items():
    setattr(config, name, value)
  return config


def build_tiny_model(config: maskconver_cfg.MaskConverModel):
  """Builds a model from `config` accepting any input size."""
  return factory.build_maskconver_model(
      tf_keras.layers.InputSpec(shape=[None, None, None, 3]), config)


@pytest.fixture(scope='session')
def tiny():
  return types.SimpleNamespace(
      config=make_tiny_config, build=build_tiny_model,
      num_classes=TINY_NUM_CLASSES,
      num_thing_classes=TINY_NUM_THING_CLASSES,
      embedding_size=TINY_EMBEDDING_SIZE,
      num_instances=TINY_NUM_INSTANCES)


@pytest.fixture(scope='session')
def tiny_unet_model():
  return build_tiny_model(make_tiny_config('convnext_unet'))


@pytest.fixture(scope='session')
def tiny_deeplab_model():
  return build_tiny_model(make_tiny_config('deeplabv3plus'))


def _assert_round_trip(layer, run):
  """Checks get_config / from_config of a built-by-`run` layer.

  Args:
    layer: the layer under test.
    run: function(layer) -> outputs (a tensor or a nest of tensors); calling
      it builds the layer.
  """
  expected = run(layer)
  config = layer.get_config()
  clone = type(layer).from_config(config)
  assert clone.get_config() == config
  run(clone)
  assert len(clone.weights) == len(layer.weights)
  clone.set_weights(layer.get_weights())
  for want, got in zip(tf.nest.flatten(expected), tf.nest.flatten(run(clone))):
    np.testing.assert_array_equal(got.numpy(), want.numpy())
  name = tf_keras.utils.get_registered_name(type(layer))
  assert name == f'maskconver>{type(layer).__name__}'
  assert tf_keras.utils.get_registered_object(name) is type(layer)


@pytest.fixture(scope='session')
def assert_round_trip():
  """-> function(layer, run): rebuilt from get_config, same config and outputs.

  `run(layer)` calls the layer on fixed inputs and returns its outputs; the
  clone gets the layer's weights and must give the same outputs exactly.
  """
  return _assert_round_trip
