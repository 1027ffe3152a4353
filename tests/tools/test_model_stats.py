"""Tests of the model_stats tool: FLOP counting and the CLI."""

import json
import os
import subprocess
import sys

from absl import flags
import pytest
import tf_keras

from maskconver.common import flags as command_flags
from maskconver.tools import model_stats


def _conv_model(*layers):
  return tf_keras.Sequential([tf_keras.Input([None, None, 3]), *layers])


@pytest.mark.parametrize('height, width, kernel, filters', [(8, 6, 3, 5),
                                                            (10, 12, 1, 7)])
def test_count_flops_of_one_conv_is_h_w_k_k_cin_cout(height, width, kernel,
                                                     filters):
  model = _conv_model(tf_keras.layers.Conv2D(filters, kernel, padding='same',
                                             use_bias=False))
  assert model_stats.count_flops(model, height, width) == (
      height * width * kernel * kernel * 3 * filters)


def test_count_flops_adds_a_depthwise_conv():
  model = _conv_model(
      tf_keras.layers.Conv2D(4, 3, padding='same', use_bias=False),
      tf_keras.layers.DepthwiseConv2D(5, strides=2, padding='same',
                                      use_bias=False))
  # Conv 16x16x(3*3*3*4); depthwise on the 8x8 stride-2 output, 5*5 per
  # channel and output pixel.
  assert model_stats.count_flops(model, 16, 16) == (
      16 * 16 * 9 * 3 * 4 + 8 * 8 * 25 * 4)


def test_parse_input_size_takes_hxw_and_h_comma_w():
  assert command_flags.parse_input_size('800x1200') == [800, 1200]
  assert command_flags.parse_input_size('640X640') == [640, 640]
  assert command_flags.parse_input_size('800,1200') == [800, 1200]
  for bad in ('abc', '640', '640x', '1x2x3', '0x640', '-8x8', '8,8,8',
              '8x8,8', ''):
    with pytest.raises(ValueError, match='--input_size'):
      command_flags.parse_input_size(bad)


def test_import_defines_no_flags():
  # Flags exist only when run as a program, so other tools defining
  # --experiment (demo, export) can be imported in the same process.
  assert not flags.FLAGS.get_flags_for_module(model_stats)
  assert not flags.FLAGS.get_flags_for_module(model_stats.__name__)


def _run_cli(tmp_path, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  return subprocess.run(
      [sys.executable, '-m', 'maskconver.tools.model_stats', *args],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
      check=False)


def test_cli_mobile_256_recipe(tmp_path):
  result = _run_cli(tmp_path, '--experiment=maskconver_mnmh_coco_256')
  assert result.returncode == 0, result.stderr[-2000:]
  stats = json.loads(result.stdout.strip().splitlines()[-1])
  assert stats['experiment'] == 'maskconver_mnmh_coco_256'
  assert stats['input_size'] == [256, 256]
  # Parameters: hand-derived in tests/modeling/test_factory.py (backbone
  # measured; phone heads and ASPP rates 6/12/18). FLOPs (multiply-adds):
  # measured, cf. the paper's 1.5B.
  assert stats['params'] == 3_290_069
  # MobileNet's 1x1 conv 448 -> 1280 + batch norm after the global pooling
  # feeds no output (tests/modeling/test_factory.py): not on the path.
  assert stats['params_on_path'] == 3_290_069 - (448 * 1280 + 4 * 1280)
  assert stats['flops'] == 1_500_861_743
  assert 'params       3.29 M' in result.stdout
  assert 'on path      2.71 M' in result.stdout


def test_cli_rejects_a_bad_input_size(tmp_path):
  result = _run_cli(tmp_path, '--experiment=maskconver_mnmh_coco_256',
                    '--input_size=abc')
  assert result.returncode != 0
  assert ('--input_size must be two positive integers written HxW, e.g. '
          "640x640 (H,W works too); got 'abc'") in result.stderr
  assert not result.stdout.strip()


class _BranchModel(tf_keras.Model):
  """A 3x3 conv the forward pass runs and a dense layer it never calls."""

  def __init__(self):
    super().__init__()
    self.conv = tf_keras.layers.Conv2D(4, 3, padding='same')
    self.norm = tf_keras.layers.BatchNormalization()
    self.unused = tf_keras.layers.Dense(10)
    self.unused.build([None, 6])

  def call(self, images, training=False):
    return self.norm(self.conv(images), training=training)


def test_params_on_path_leaves_out_a_built_but_unused_layer():
  model = _BranchModel()
  model(tf_keras.Input([8, 8, 3]))
  conv = 3 * 3 * 3 * 4 + 4           # kernel + bias
  norm = 4 * 4                       # gamma, beta, moving mean and variance
  unused = 6 * 10 + 10               # the dense layer's kernel + bias
  assert model.count_params() == conv + norm + unused
  assert model_stats.count_params_on_path(model, 8, 8) == conv + norm


def test_params_on_path_leaves_out_an_endpoint_no_output_uses():
  # A functional model computes a side endpoint (global pool + 1x1 conv to 9)
  # that is built and traced but feeds no output.
  images = tf_keras.Input([8, 8, 3])
  features = tf_keras.layers.Conv2D(4, 1)(images)
  pooled = tf_keras.layers.GlobalAveragePooling2D(keepdims=True)(features)
  side = tf_keras.layers.Conv2D(9, 1)(pooled)
  backbone = tf_keras.Model(images, {'main': features, 'side': side})
  model = _conv_model(tf_keras.layers.Lambda(lambda x: backbone(x)['main']))
  conv = 3 * 4 + 4
  side_conv = 4 * 9 + 9
  assert backbone.count_params() == conv + side_conv
  assert model_stats.count_params_on_path(model, 8, 8) == conv
