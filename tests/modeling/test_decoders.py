"""Tests of the ConvNeXt-UNet and DeepLabv3+ pixel decoders."""

import math

import numpy as np
import pytest
import tensorflow as tf

from maskconver.modeling.decoders import convnext_unet
from maskconver.modeling.decoders import deeplabv3plus

# Backbone channels on levels 3, 4, 5 (any values; small for speed).
_CHANNELS = {'3': 12, '4': 20, '5': 28}


def _specs(levels=('3', '4', '5')):
  return {l: tf.TensorShape([None, None, None, _CHANNELS[l]]) for l in levels}


def _features(height, width, levels=('3', '4', '5'), batch=2, seed=0):
  """Backbone-like features of an image: level l is ceil(size / 2**l)."""
  rng = np.random.default_rng(seed)
  return {
      l: tf.constant(rng.normal(size=[
          batch, math.ceil(height / 2**int(l)), math.ceil(width / 2**int(l)),
          _CHANNELS[l]]).astype(np.float32)) for l in levels
  }


def _block_params(c, reduced, k=7):
  e = 4 * c
  se = (e * reduced + reduced + reduced * e + e) if reduced else 0
  return k * k * c + c + 2 * c + c * e + e + se + e * c + c + c


def _unet(**kwargs):
  kwargs.setdefault('num_blocks', [1, 1, 1])
  kwargs.setdefault('num_filters', [24, 16, 16])
  return convnext_unet.ConvNeXtUNet(input_specs=_specs(), **kwargs)


# --- ResizeNearestLike / ResizeBilinearLike ---------------------------------


def test_resize_nearest_like_doubles_and_handles_odd_sizes():
  x = tf.reshape(tf.range(6, dtype=tf.float32), [1, 2, 3, 1])
  layer = convnext_unet.ResizeNearestLike()
  doubled = layer(x, tf.zeros([1, 4, 6, 7]))[0, ..., 0].numpy()
  np.testing.assert_array_equal(
      doubled, [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2],
                [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]])
  # 2 -> 3 rows, 3 -> 5 columns: source index floor((i + 0.5) * in / out).
  odd = layer(x, tf.zeros([1, 3, 5, 1]))[0, ..., 0].numpy()
  np.testing.assert_array_equal(odd, [[0, 0, 1, 2, 2], [3, 3, 4, 5, 5],
                                      [3, 3, 4, 5, 5]])


def test_resize_bilinear_like_by_hand():
  layer = deeplabv3plus.ResizeBilinearLike()
  x = tf.constant([[[[0.0], [4.0]]]])  # [1, 1, 2, 1]
  # Half-pixel centers: output x = 0..3 samples input at (x + 0.5) / 2 - 0.5.
  np.testing.assert_allclose(
      layer(x, tf.zeros([1, 1, 4, 3]))[0, 0, :, 0].numpy(), [0, 1, 3, 4])
  # 2 -> 3: samples at -1/6, 1/2, 7/6 -> 0, 2, 4 (clamped at the borders).
  np.testing.assert_allclose(
      layer(x, tf.zeros([1, 1, 3, 3]))[0, 0, :, 0].numpy(), [0, 2, 4],
      rtol=1e-6)


# --- ConvNeXt-UNet ------------------------------------------------------------


@pytest.mark.parametrize('height, width', [(64, 64), (96, 136), (256, 256)])
def test_convnext_unet_levels_and_strides(height, width):
  decoder = _unet(max_level=7)
  outputs = decoder(_features(height, width))
  assert sorted(outputs) == ['3', '4', '5', '6', '7']
  for level in range(3, 8):
    stride = 2**level
    assert outputs[str(level)].shape == (
        2, math.ceil(height / stride), math.ceil(width / stride),
        24 if level >= 5 else 16), level
  assert {l: s.as_list()[-1] for l, s in decoder.output_specs.items()} == {
      '3': 16, '4': 16, '5': 24, '6': 24, '7': 24}


def test_convnext_unet_odd_width_uses_nearest_resize():
  # 136 px wide: L5 is 5 wide, L4 is 9 wide (not 10): a plain 2x upsampling
  # could not be added to the lateral.
  decoder = _unet(max_level=5)
  outputs = decoder(_features(96, 136))
  assert outputs['4'].shape == (2, 6, 9, 16)
  assert outputs['3'].shape == (2, 12, 17, 16)
  assert isinstance(decoder.get_layer('upsample_l4'),
                    convnext_unet.ResizeNearestLike)


def test_convnext_unet_params_by_formula():
  decoder = _unet(max_level=7, num_blocks=[2, 1, 1])
  d5, d4, d3 = 24, 16, 16
  lateral = sum(c * d + 2 * d for c, d in [(28, d5), (20, d4), (12, d3)])
  top_down = (d5 * d4 + 2 * d4) + (d4 * d3 + 2 * d3)
  # SE on 4D with ratio 0.0625: 96 * 0.0625 = 6, 64 * 0.0625 = 4.
  blocks = 2 * _block_params(d5, 6) + _block_params(d4, 4) + _block_params(
      d3, 4)
  extra = 2 * (49 * d5 + d5 + 2 * d5)  # L6, L7: dw 7x7 + bias, LayerNorm
  assert decoder.count_params() == lateral + top_down + blocks + extra


def test_convnext_unet_without_se_has_no_se_variables():
  with_se = _unet(se_ratio=0.0625)
  without = _unet(se_ratio=0.0)
  assert any('/se/' in w.name for w in with_se.weights)
  assert not [w.name for w in without.weights if '/se/' in w.name]
  # The difference is exactly the SE layers of the three blocks: 1x1 convs
  # 4C -> s -> 4C with biases.
  se = [4 * c * s + s + s * 4 * c + 4 * c for c, s in [(24, 6), (16, 4),
                                                       (16, 4)]]
  assert with_se.count_params() - without.count_params() == sum(se)


def test_convnext_unet_drop_path_grows_linearly():
  decoder = _unet(num_blocks=[2, 1, 1], drop_path_rate=0.4)
  rates = [decoder.get_layer(name).drop_path_rate
           for name in ('block_l5_0', 'block_l5_1', 'block_l4_0',
                        'block_l3_0')]
  np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3])


def test_convnext_unet_rejects_bad_arguments():
  with pytest.raises(ValueError, match='one entry per level'):
    _unet(num_blocks=[1, 1])
  with pytest.raises(ValueError, match='max_level'):
    _unet(max_level=4)
  with pytest.raises(ValueError, match=r'no level\(s\) \[5\]'):
    convnext_unet.ConvNeXtUNet(input_specs=_specs(('3', '4')),
                               num_blocks=[1, 1, 1], num_filters=[8, 8, 8])


def test_convnext_unet_round_trip(assert_round_trip):
  features = _features(64, 96, batch=1, seed=3)
  assert_round_trip(
      _unet(max_level=6, num_blocks=[1, 0, 2], kernel_size=5, se_ratio=0.25,
            layer_scale_init_value=0.5, drop_path_rate=0.1),
      lambda layer: layer(features, training=False))


# --- DeepLabv3+ ------------------------------------------------------------


def _deeplab_params(c4, c3, aspp, low, out, rates=0, depthwise=True):
  """Hand count; batch norms have 4 weights per channel."""
  branches = (c4 * aspp + 4 * aspp) * 2  # 1x1 branch, pooling branch
  branches += rates * (9 * c4 + c4 * aspp + 4 * aspp)  # separable atrous
  projection = (2 + rates) * aspp * aspp + 4 * aspp
  low_level = c3 * low + 4 * low
  fused = aspp + low
  if depthwise:
    fuse = 9 * fused + 4 * fused + fused * out + 4 * out
  else:
    fuse = 9 * fused * out + 4 * out
  return branches + projection + low_level + fuse


@pytest.mark.parametrize('height, width', [(64, 64), (96, 128), (96, 136)])
def test_deeplabv3plus_output_level_and_shape(height, width):
  decoder = deeplabv3plus.DeepLabV3Plus(
      input_specs=_specs(('3', '4')), aspp_num_filters=16,
      low_level_num_filters=8, num_filters=12)
  outputs = decoder(_features(height, width, levels=('3', '4')))
  assert sorted(outputs) == ['3']
  assert outputs['3'].shape == (2, math.ceil(height / 8),
                                math.ceil(width / 8), 12)
  assert decoder.output_specs['3'].as_list()[-1] == 12


@pytest.mark.parametrize('rates, depthwise', [(0, True), (2, True),
                                              (0, False)])
def test_deeplabv3plus_params_by_formula(rates, depthwise):
  decoder = deeplabv3plus.DeepLabV3Plus(
      input_specs=_specs(('3', '4')), aspp_num_filters=16,
      dilation_rates=[2, 4][:rates], low_level_num_filters=8, num_filters=12,
      use_depthwise_convolution=depthwise)
  assert decoder.count_params() == _deeplab_params(
      20, 12, 16, 8, 12, rates=rates, depthwise=depthwise)


def test_deeplabv3plus_names_a_missing_level():
  with pytest.raises(ValueError, match='no level 4'):
    deeplabv3plus.DeepLabV3Plus(input_specs=_specs(('3',)))


def test_deeplabv3plus_round_trip(assert_round_trip):
  features = _features(64, 64, levels=('3', '4', '5'), seed=4)
  decoder = deeplabv3plus.DeepLabV3Plus(
      input_specs=_specs(('3', '5')), aspp_level=5, dilation_rates=[2],
      aspp_num_filters=8, low_level=3, low_level_num_filters=4,
      num_filters=8, use_depthwise_convolution=False, activation='swish')
  assert_round_trip(decoder, lambda layer: layer(
      {l: features[l] for l in ('3', '5')}, training=False))
