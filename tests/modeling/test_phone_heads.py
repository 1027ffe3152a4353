"""Tests of the phone heads (`separable_bn` blocks) and the mobile recipe."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory

from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.modeling.heads import center_heatmap_head
from maskconver.modeling.heads import mask_feature_head
from maskconver.modeling.layers import head_block


def _features(shape, seed=0):
  return tf.constant(np.random.default_rng(seed).normal(
      size=shape).astype(np.float32))


def _set_batch_norms(block, seed):
  """Gives every BatchNorm of a block distinct, non-trivial statistics."""
  rng = np.random.default_rng(seed)
  for norm in block._depthwise_norms + block._norms:  # pylint: disable=protected-access
    channels = norm.gamma.shape[0]
    norm.set_weights([rng.uniform(0.5, 2.0, channels),    # gamma
                      rng.normal(0.0, 0.5, channels),     # beta
                      rng.normal(0.0, 0.5, channels),     # moving mean
                      rng.uniform(0.5, 2.0, channels)])   # moving variance


def test_separable_bn_block_params_and_kernel_size():
  block = head_block.HeadBlock(8, block_type='separable_bn', num_levels=2)
  assert block.kernel_size == 3
  for level_index in (0, 1):
    block(_features([1, 5, 5, 6]), level_index=level_index)
  # dw 3x3 on 6 channels, no bias; 1x1 6 -> 8, no bias; per level a BN of 6
  # and a BN of 8 (gamma, beta, moving mean, moving variance).
  assert block.count_params() == 9 * 6 + 6 * 8 + 2 * (4 * 6 + 4 * 8)
  names = sorted(w.name.split('/')[-2] for w in block.weights
                 if w.name.endswith('gamma:0'))
  assert names == ['depthwise_norm_0', 'depthwise_norm_1', 'norm_0', 'norm_1']


def test_separable_bn_block_matches_a_numpy_reference():
  block = head_block.HeadBlock(3, block_type='separable_bn')
  x = _features([1, 4, 5, 2], seed=1)
  block(x)
  _set_batch_norms(block, seed=2)
  depthwise, pointwise = block._convs  # pylint: disable=protected-access
  rng = np.random.default_rng(3)
  for conv in (depthwise, pointwise):
    conv.set_weights([rng.normal(size=conv.weights[0].shape)])
  dw_norm, pw_norm = block._depthwise_norms[0], block._norms[0]  # pylint: disable=protected-access
  dw = depthwise.depthwise_kernel.numpy()[:, :, :, 0]   # [3, 3, 2]
  pw = pointwise.kernel.numpy()[0, 0]                    # [2, 3]

  def batch_norm(y, norm):
    gamma, beta, mean, variance = (w.numpy() for w in norm.weights)
    return gamma * (y - mean) / np.sqrt(variance + norm.epsilon) + beta

  padded = np.pad(x.numpy()[0], [(1, 1), (1, 1), (0, 0)])
  y = np.zeros((4, 5, 2))
  for i in range(4):
    for j in range(5):
      y[i, j] = np.sum(padded[i:i + 3, j:j + 3] * dw, axis=(0, 1))
  y = np.maximum(batch_norm(y, dw_norm), 0.0)
  expected = np.maximum(batch_norm(y @ pw, pw_norm), 0.0)
  got = block(x, training=False).numpy()[0]
  # float32 against float64 over sums of 9 and 2 terms: relative 1e-5.
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert (got == 0).any() and (got > 0).any()


def test_heads_pass_the_training_flag_to_their_batch_norms():
  head = center_heatmap_head.CenterHeatmapHead(
      num_classes=3, min_level=3, max_level=3, num_blocks=1, num_filters=4,
      block_type='separable_bn')
  features = {'3': _features([2, 6, 6, 5]) + 3.0}
  head(features, training=False)
  moving_mean = [w for w in head.weights
                 if 'depthwise_norm_0/moving_mean' in w.name][0]
  np.testing.assert_array_equal(moving_mean.numpy(), 0.0)
  head(features, training=True)
  # Momentum 0.99: the moving mean moves 1% of the way to the batch mean.
  assert np.abs(moving_mean.numpy()).min() > 0.0
  before = moving_mean.numpy().copy()
  head(features, training=False)
  np.testing.assert_array_equal(moving_mean.numpy(), before)


def test_separable_bn_heads_round_trip(assert_round_trip):
  features = {'3': _features([1, 8, 8, 6], seed=3)}
  assert_round_trip(
      center_heatmap_head.CenterHeatmapHead(
          num_classes=4, min_level=3, max_level=3, num_blocks=2,
          num_filters=8, block_type='separable_bn'),
      lambda layer: layer(features))
  assert_round_trip(
      mask_feature_head.MaskFeatureHead(
          levels=[3], embedding_size=5, num_blocks=1, num_filters=8,
          block_type='separable_bn'),
      lambda layer: layer(features))


@pytest.mark.parametrize('policy', ['float32', 'mixed_bfloat16'])
def test_separable_bn_block_compiles_with_xla(policy):
  tf_keras.mixed_precision.set_global_policy(policy)
  try:
    block = head_block.HeadBlock(8, block_type='separable_bn', num_levels=2)
    x = _features([2, 6, 6, 4])
    block(x)

    @tf.function(jit_compile=True)
    def step(x):
      with tf.GradientTape() as tape:
        y = block(x, level_index=1, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32))
      return y, tape.gradient(loss, block.trainable_variables)

    y, grads = step(x)
    assert y.shape == (2, 6, 6, 8)
    assert y.dtype == (tf.bfloat16 if policy == 'mixed_bfloat16'
                       else tf.float32)
    # Level 1's norms and the shared convs get gradients, level 0's none.
    by_name = dict(zip([v.name for v in block.trainable_variables], grads))
    assert all(g is not None for n, g in by_name.items() if '_0/' not in n)
    assert all(g is None for n, g in by_name.items() if '_0/' in n)
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')


def test_batch_norm_folds_into_the_convs_in_tflite():
  """Exported, the phone head is convs only and equals the Keras head."""
  head = center_heatmap_head.CenterHeatmapHead(
      num_classes=4, min_level=3, max_level=3, num_blocks=2, num_filters=8,
      block_type='separable_bn')
  x = _features([1, 8, 8, 6], seed=4)
  head({'3': x})
  for block in head._blocks:  # pylint: disable=protected-access
    _set_batch_norms(block, seed=5)

  @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 6], tf.float32)])
  def run(features):
    return head({'3': features}, training=False)['3']

  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [run.get_concrete_function()], head)
  interpreter = tf.lite.Interpreter(model_content=converter.convert())
  ops = [op['op_name']
         for op in interpreter._get_ops_details()]  # pylint: disable=protected-access
  # Two blocks of depthwise + pointwise (BN and ReLU fused in), the output
  # conv: no MUL / ADD / RELU left of the BatchNorms and activations.
  assert ops == ['DEPTHWISE_CONV_2D', 'CONV_2D'] * 2 + ['CONV_2D']
  lite = interpreter.get_signature_runner()(features=x.numpy())
  (lite,) = lite.values()
  expected = run(x).numpy()
  # Folding rescales the kernels (w * gamma / sqrt(var + eps)) and sums in
  # another order: float32 rounding, ~1e-6 relative on outputs of size ~1.
  np.testing.assert_allclose(lite, expected, rtol=1e-4, atol=1e-4)
  assert np.abs(expected).max() > 0.1


def test_mobile_recipe_uses_phone_heads_atrous_aspp_and_fast_merge():
  for name in ('maskconver_mnmh_coco_640', 'maskconver_mnmh_coco_256',
               'maskconver_mnmh_synthetic'):
    model = exp_factory.get_exp_config(name).task.model
    assert model.center_head.block_type == 'separable_bn', name
    assert model.mask_head.block_type == 'separable_bn', name
    assert model.decoder.deeplabv3plus.aspp_use_depthwise_convolution, name
    assert model.postprocessor.merge_method == 'fast', name
  coco = exp_factory.get_exp_config('maskconver_mnmh_coco_640').task.model
  assert coco.decoder.deeplabv3plus.dilation_rates == [6, 12, 18]
  # The R50 recipe keeps the paper's light heads and the exact merge.
  r50 = exp_factory.get_exp_config('maskconver_r50_coco').task.model
  assert r50.center_head.block_type == 'light'
  assert r50.postprocessor.merge_method == 'exact'
