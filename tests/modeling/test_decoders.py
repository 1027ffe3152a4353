"""Tests of the ConvNeXt-UNet and DeepLabv3+ pixel decoders."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from maskconver.modeling.decoders import bifpn
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


# --- ConvNeXt-UNet output projection -----------------------------------------


def test_convnext_unet_projects_every_level_to_one_width():
  decoder = _unet(max_level=7, num_filters=[24, 16, 8], output_num_filters=12)
  outputs = decoder(_features(96, 136))
  for level in range(3, 8):
    stride = 2**level
    assert outputs[str(level)].shape == (
        2, math.ceil(96 / stride), math.ceil(136 / stride), 12), level
  plain = _unet(max_level=7, num_filters=[24, 16, 8])
  # Projections: 1x1 convs D_l -> 12 without bias + LayerNorm; the extra
  # levels' depthwise convs then run on 12 channels instead of D5 = 24.
  projections = sum(d * 12 + 2 * 12 for d in (24, 16, 8))
  extra_plain = 2 * (49 * 24 + 24 + 2 * 24)
  extra_projected = 2 * (49 * 12 + 12 + 2 * 12)
  assert decoder.count_params() == (plain.count_params() + projections -
                                    extra_plain + extra_projected)


def test_convnext_unet_rejects_negative_output_width():
  with pytest.raises(ValueError, match='output_num_filters'):
    _unet(output_num_filters=-1)


def test_convnext_unet_projection_round_trip(assert_round_trip):
  features = _features(64, 64, batch=1, seed=5)
  assert_round_trip(
      _unet(max_level=6, num_filters=[24, 16, 8], output_num_filters=12),
      lambda layer: layer(features, training=False))


# --- BiFPN ---------------------------------------------------------------------


def _bifpn(**kwargs):
  kwargs.setdefault('num_filters', 16)
  kwargs.setdefault('num_repeats', 2)
  return bifpn.BiFPN(input_specs=_specs(), **kwargs)


def _bifpn_params(widths, filters, repeats, separable=True, extra_levels=2):
  """Hand count; batch norms have 4 weights per channel."""
  projections = sum(c * filters + 4 * filters for c in widths if c != filters)
  projections += widths[-1] * filters + 4 * filters  # L6's own 1x1 + BN
  conv = 9 * filters + filters * filters if separable else (
      9 * filters * filters)
  levels = len(widths) + extra_levels
  nodes = 2 * (levels - 1)  # top-down l = max-1..min; bottom-up min+1..max
  # Fusion weights: 2 per top-down node, 3 per inner bottom-up node, 2 at
  # the coarsest.
  fusion = 2 * (levels - 1) + 3 * (levels - 2) + 2
  return projections + repeats * (nodes * (conv + 4 * filters) + fusion)


def test_fast_normalized_fusion_by_hand():
  layer = bifpn.FastNormalizedFusion()
  a = tf.fill([1, 2, 2, 3], 1.0)
  b = tf.fill([1, 2, 2, 3], 4.0)
  # Initial weights 1, 1: (1 + 4) / (2 + 1e-4).
  np.testing.assert_allclose(layer([a, b]).numpy(), 5.0 / 2.0001, rtol=1e-6)
  # A negative weight counts as 0 (ReLU): (3 * 1 + 0 * 4) / (3 + 1e-4).
  layer.fusion_weights.assign([3.0, -2.0])
  np.testing.assert_allclose(layer([a, b]).numpy(), 3.0 / 3.0001, rtol=1e-6)


@pytest.mark.parametrize('height, width', [(64, 64), (96, 136)])
def test_bifpn_levels_and_strides(height, width):
  decoder = _bifpn()
  outputs = decoder(_features(height, width))
  assert sorted(outputs) == ['3', '4', '5', '6', '7']
  for level in range(3, 8):
    stride = 2**level
    assert outputs[str(level)].shape == (
        2, math.ceil(height / stride), math.ceil(width / stride), 16), level
  assert {s.as_list()[-1] for s in decoder.output_specs.values()} == {16}


@pytest.mark.parametrize('filters, repeats, separable', [
    (16, 2, True), (20, 1, True), (16, 3, False)])
def test_bifpn_params_by_formula(filters, repeats, separable):
  # filters = 20 equals level 4's width: that level needs no projection.
  decoder = _bifpn(num_filters=filters, num_repeats=repeats,
                   use_separable_conv=separable)
  assert decoder.count_params() == _bifpn_params(
      [12, 20, 28], filters, repeats, separable)


def test_bifpn_node_fuses_with_normalized_weights():
  """Zero a node's first fusion weight: that input no longer matters."""
  decoder = _bifpn(num_repeats=1)
  features = _features(64, 64, batch=1, seed=7)
  changed = dict(features)
  changed['3'] = features['3'] + 5.0
  # Level 3 reaches layer0_td_l3 through its input projection only.
  fusion = decoder.get_layer('layer0_td_l3_fusion')
  before = decoder(features, training=False)['3'].numpy()
  assert np.abs(decoder(changed, training=False)['3'].numpy() -
                before).max() > 1e-5
  fusion.fusion_weights.assign([0.0, 1.0])
  np.testing.assert_array_equal(decoder(changed, training=False)['3'].numpy(),
                                decoder(features, training=False)['3'].numpy())


@pytest.mark.parametrize('separable', [True, False])
def test_bifpn_node_convs_start_variance_preserving(separable):
  # Each node's conv reads its fused, activated inputs; its output feeds a
  # batch norm (epsilon 1e-3, moving variance starting at 1). Started at
  # about its input's second moment, that output keeps the statistics of
  # every norm far above the epsilon. A 0.02-std separable conv at 64
  # filters starts at 576 * 0.02**4 ~ 1e-4 of it.
  tf_keras.utils.set_random_seed(0)
  decoder = bifpn.BiFPN(input_specs=_specs(), num_filters=64, num_repeats=2,
                        max_level=5, use_separable_conv=separable)
  names = [l.name[:-len('_conv')] for l in decoder.layers
           if l.name.endswith('_conv')]
  assert len(names) == 2 * 4  # 2 repeats x (2 top-down + 2 bottom-up)
  probe = tf_keras.Model(decoder.inputs, {
      n: (decoder.get_layer(f'{n}_act').output,
          decoder.get_layer(f'{n}_conv').output) for n in names})
  features = _features(64, 64, batch=4)
  values = probe({f'l{k}': v for k, v in features.items()}, training=True)
  for name, (inputs, outputs) in values.items():
    ratio = float(tf.reduce_mean(outputs ** 2) / tf.reduce_mean(inputs ** 2))
    assert 0.3 < ratio < 3.0, (name, ratio)
    assert float(tf.reduce_mean(tf.math.reduce_variance(
        outputs, axis=[0, 1, 2]))) > 0.01, name


def test_bifpn_rejects_bad_arguments():
  with pytest.raises(ValueError, match='min_level'):
    _bifpn(min_level=5, max_level=5)
  with pytest.raises(ValueError, match='backbone_max_level'):
    _bifpn(backbone_max_level=2)
  with pytest.raises(ValueError, match='num_repeats'):
    _bifpn(num_repeats=0)
  with pytest.raises(ValueError, match=r'no level\(s\) \[5\]'):
    bifpn.BiFPN(input_specs=_specs(('3', '4')))


def test_bifpn_round_trip(assert_round_trip):
  features = _features(64, 96, batch=1, seed=8)
  assert_round_trip(
      _bifpn(max_level=6, num_filters=8, num_repeats=1,
             use_separable_conv=False, activation='relu',
             norm_momentum=0.9, norm_epsilon=1e-4),
      lambda layer: layer(features, training=False))


def _random_projection_loss(outputs, seed=0):
  """sum(outputs * fixed random weights): a sum alone would cancel under
  batch norm, whose training-mode outputs sum to a constant. The weights
  come from numpy, so a compiled and an eager step use the same ones."""
  rng = np.random.default_rng(seed)
  total = 0.0
  for key in sorted(outputs):
    x = tf.cast(outputs[key], tf.float32)
    weights = rng.normal(size=x.shape.as_list()).astype(np.float32)
    total += tf.reduce_sum(x * weights)
  return total


def test_bifpn_every_variable_gets_a_gradient():
  decoder = _bifpn()
  features = _features(64, 64, seed=9)
  with tf.GradientTape() as tape:
    loss = _random_projection_loss(decoder(features, training=True))
  grads = tape.gradient(loss, decoder.trainable_variables)
  missing = [v.name for v, g in zip(decoder.trainable_variables, grads)
             if g is None or not np.any(tf.convert_to_tensor(g).numpy())]
  assert not missing
  fusions = [v for v in decoder.trainable_variables if 'fusion' in v.name]
  assert len(fusions) == 2 * 8


def _build_under_policy(build, policy):
  tf_keras.mixed_precision.set_global_policy(policy)
  try:
    return build()
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')


@pytest.mark.parametrize('policy', ['float32', 'mixed_bfloat16'])
@pytest.mark.parametrize('name', [
    'bifpn',
    # The UNet's own XLA train steps run in the task tests; its projection
    # adds only 1x1 convs and LayerNorms.
    pytest.param('unet_projected', marks=pytest.mark.slow)])
def test_decoder_forward_and_gradient_compile_with_xla(name, policy):
  build = {
      'bifpn': lambda: _bifpn(num_repeats=1),
      'unet_projected': lambda: _unet(max_level=7, num_filters=[24, 16, 8],
                                      output_num_filters=12),
  }[name]
  # Seeded: the tolerances below were checked on these initial weights
  # (unseeded, one run in many drew a fusion weight with a tiny gradient).
  tf_keras.utils.set_random_seed(0)
  decoder = _build_under_policy(build, policy)
  features = _features(64, 96, seed=10)

  def step(inputs):
    with tf.GradientTape() as tape:
      outputs = decoder(inputs, training=True)
      loss = _random_projection_loss(outputs)
    return loss, tape.gradient(loss, decoder.trainable_variables)

  xla_loss, xla_grads = tf.function(step, jit_compile=True)(features)
  loss, grads = tf.function(step)(features)
  assert all(g is not None for g in xla_grads)
  # float32: the same math in another order (fused by XLA), 1e-4 relative.
  # bfloat16 (8 significant bits): a few units of 2**-8 after the batch
  # norms and sums, so 5% of the scale.
  rtol = 1e-4 if policy == 'float32' else 5e-2
  scale = float(np.abs(loss.numpy())) + 1.0
  assert abs(float(xla_loss) - float(loss)) <= rtol * scale
  largest = max(np.linalg.norm(tf.convert_to_tensor(grad).numpy().astype(
      np.float64)) for grad in grads)
  for xla_grad, grad in zip(xla_grads, grads):
    xla_grad = tf.convert_to_tensor(xla_grad).numpy().astype(np.float64)
    grad = tf.convert_to_tensor(grad).numpy().astype(np.float64)
    assert np.isfinite(xla_grad).all()
    if policy == 'float32':
      np.testing.assert_allclose(xla_grad, grad, rtol=rtol,
                                 atol=rtol * (np.abs(grad).max() + 1e-3))
    else:
      # bfloat16: the two runtimes round at different places, and BiFPN's
      # normalized fusion and batch norms amplify single elements (up to
      # ~40% seen on one element); the gradient as a whole must agree. A
      # gradient that is a sum with heavy cancellation (a fusion weight's:
      # seen [0.0021, -0.0021], off by 0.0011) keeps the rounding error of
      # its terms, whose size is set by the layer's other gradients: hence
      # the floor of 0.5% of the largest gradient norm (initial weights of
      # seeds 0-7: every error below 1/25 of this bound; with the former
      # floor of 2e-4, two of the 8 failed).
      error = np.linalg.norm(xla_grad - grad)
      assert error <= 0.2 * np.linalg.norm(grad) + 0.005 * largest, error
