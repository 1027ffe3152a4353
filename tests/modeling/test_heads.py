"""Tests of the MaskConver heads: shapes, parameter counts, initial state."""

import math

import numpy as np
import pytest
import tensorflow as tf

from maskconver.modeling.heads import center_embedding_head
from maskconver.modeling.heads import center_heatmap_head
from maskconver.modeling.heads import mask_feature_head
from maskconver.modeling.heads import multi_level_head


def _pyramid(channels=6, batch=2, size=16, levels=(3, 4, 5, 6, 7), seed=0):
  """{str(l): [batch, ceil(size / 2**(l-3)), same, channels]} random maps."""
  rng = np.random.default_rng(seed)
  out = {}
  for level in levels:
    side = max(1, math.ceil(size / 2**(level - 3)))
    out[str(level)] = tf.constant(
        rng.normal(size=[batch, side, side, channels]).astype(np.float32))
  return out


def _light_head_params(cin, filters, num_blocks, out, num_levels, k=7):
  """Light blocks: dw k*k*c + c, 1x1 c*f + f, 2f per level; 1x1 output."""
  total = 0
  for i in range(num_blocks):
    c = cin if i == 0 else filters
    total += k * k * c + c + c * filters + filters + 2 * filters * num_levels
  return total + filters * out + out


def test_multi_level_head_shapes_and_params():
  head = multi_level_head.MultiLevelHead(
      output_channels=5, min_level=3, max_level=7, num_blocks=2,
      num_filters=8)
  outputs = head(_pyramid())
  assert sorted(outputs) == ['3', '4', '5', '6', '7']
  for level, side in zip('34567', [16, 8, 4, 2, 1]):
    assert outputs[level].shape == (2, side, side, 5)
  assert head.count_params() == _light_head_params(6, 8, 2, 5, num_levels=5)


def test_shared_head_grows_by_one_layer_norm_per_level():
  counts = []
  for max_level in (3, 4, 5, 6, 7):
    head = multi_level_head.MultiLevelHead(
        output_channels=5, min_level=3, max_level=max_level, num_blocks=3,
        num_filters=8)
    head(_pyramid())
    counts.append(head.count_params())
  # Conv weights are shared; each extra level adds one LayerNorm (2f) per
  # block: 3 blocks * 2 * 8.
  assert np.diff(counts).tolist() == [3 * 2 * 8] * 4
  assert counts[0] == _light_head_params(6, 8, 3, 5, num_levels=1)


def test_conv_head_params():
  head = multi_level_head.MultiLevelHead(
      output_channels=5, min_level=3, max_level=4, num_blocks=2,
      num_filters=8, block_type='conv', kernel_size=3)
  head(_pyramid())
  # 3x3 convs 6 -> 8 and 8 -> 8 with biases, 2 LayerNorms per block, output.
  expected = (9 * 6 * 8 + 8 + 2 * 2 * 8) + (9 * 8 * 8 + 8 + 2 * 2 * 8) + (
      8 * 5 + 5)
  assert head.count_params() == expected


def test_shared_head_weights_are_shared_and_norms_are_not():
  head = multi_level_head.MultiLevelHead(
      output_channels=4, min_level=3, max_level=4, num_blocks=1,
      num_filters=8)
  same = _pyramid(levels=(3,), size=8)['3']
  out = head({'3': same, '4': same})
  # Same input on both levels and freshly initialized norms: same output.
  np.testing.assert_array_equal(out['3'].numpy(), out['4'].numpy())
  norm_1_beta = [w for w in head.weights if 'norm_1/beta' in w.name]
  assert len(norm_1_beta) == 1
  norm_1_beta[0].assign(tf.fill([8], 0.5))
  out = head({'3': same, '4': same})
  assert np.abs(out['3'].numpy() - out['4'].numpy()).max() > 1e-3


def test_multi_level_head_names_a_missing_level():
  head = multi_level_head.MultiLevelHead(5, min_level=3, max_level=5,
                                         num_filters=8)
  with pytest.raises(ValueError, match='missing level 5'):
    head(_pyramid(levels=(3, 4)))
  with pytest.raises(ValueError, match='max_level'):
    multi_level_head.MultiLevelHead(5, min_level=4, max_level=3)


def test_center_heatmap_head_starts_at_the_prior():
  head = center_heatmap_head.CenterHeatmapHead(
      num_classes=7, min_level=3, max_level=4, num_blocks=2, num_filters=8)
  outputs = head(_pyramid(levels=(3, 4)))
  assert outputs['3'].shape == (2, 16, 16, 7)
  assert outputs['4'].shape == (2, 8, 8, 7)
  bias = [w for w in head.weights if w.name.endswith('output/bias:0')][0]
  np.testing.assert_allclose(bias.numpy(), [-math.log(0.9 / 0.1)] * 7,
                             rtol=1e-6)
  assert -math.log(0.9 / 0.1) == pytest.approx(-2.1972246)
  # Zero features: dw/1x1 convs give 0, LayerNorm(0) = beta = 0, GELU(0) =
  # 0, so the logits are the bias and the scores exactly the prior 0.1.
  zeros = {'3': tf.zeros([1, 4, 4, 6]), '4': tf.zeros([1, 2, 2, 6])}
  for logits in head(zeros).values():
    np.testing.assert_allclose(tf.sigmoid(logits).numpy(), 0.1, rtol=1e-6)
  # Random features: the 0.02-stddev output kernel moves it little.
  mean = np.mean([tf.sigmoid(v).numpy().mean() for v in outputs.values()])
  assert mean == pytest.approx(0.1, abs=0.01)
  assert head.count_params() == _light_head_params(6, 8, 2, 7, 2)


def test_center_heatmap_head_prior_is_configurable_and_checked():
  head = center_heatmap_head.CenterHeatmapHead(
      num_classes=2, min_level=3, max_level=3, num_filters=4,
      prior_probability=0.01)
  logits = head({'3': tf.zeros([1, 2, 2, 3])})['3']
  np.testing.assert_allclose(tf.sigmoid(logits).numpy(), 0.01, rtol=1e-5)
  for bad in (0.0, 1.0, 1.5):
    with pytest.raises(ValueError, match='prior_probability'):
      center_heatmap_head.CenterHeatmapHead(num_classes=2, min_level=3,
                                            max_level=3,
                                            prior_probability=bad)


def test_center_embedding_head_shapes_and_params():
  head = center_embedding_head.CenterEmbeddingHead(
      embedding_size=12, min_level=3, max_level=5, num_blocks=1,
      num_filters=8)
  outputs = head(_pyramid())
  assert sorted(outputs) == ['3', '4', '5']
  assert outputs['5'].shape == (2, 4, 4, 12)
  assert head.count_params() == _light_head_params(6, 8, 1, 12, 3)
  bias = [w for w in head.weights if w.name.endswith('output/bias:0')][0]
  assert not bias.numpy().any()


def test_mask_feature_head_fuses_levels_at_stride_4():
  head = mask_feature_head.MaskFeatureHead(levels=[3, 4, 5],
                                           embedding_size=6, num_blocks=0)
  # Constant maps stay constant under bilinear resizing, so with an
  # identity output conv the features are the sum 1 + 2 + 3.
  features = {'3': tf.fill([2, 4, 6, 6], 1.0), '4': tf.fill([2, 2, 3, 6], 2.0),
              '5': tf.fill([2, 1, 2, 6], 3.0)}
  head(features)
  head.set_weights([np.eye(6, dtype=np.float32)[None, None],
                    np.zeros(6, np.float32)])
  out = head(features)
  assert out.shape == (2, 8, 12, 6)  # stride 4: twice the L3 size
  np.testing.assert_allclose(out.numpy(), 6.0, rtol=1e-6)
  # A level-4-only ramp is resized (bilinear, half-pixel) to the L3*2 grid.
  ramp = np.zeros([1, 1, 2, 6], np.float32)
  ramp[0, 0, 1] = 4.0
  only4 = mask_feature_head.MaskFeatureHead(levels=[4], embedding_size=6,
                                            num_blocks=0, output_stride=8)
  only4({'4': tf.constant(ramp)})
  only4.set_weights(head.get_weights())
  out = only4({'4': tf.constant(ramp)})
  assert out.shape == (1, 2, 4, 6)
  np.testing.assert_allclose(out.numpy()[0, 0, :, 0], [0, 1, 3, 4], rtol=1e-6)


def test_mask_feature_head_params_and_output_stride():
  head = mask_feature_head.MaskFeatureHead(levels=[3, 4], embedding_size=10,
                                           num_blocks=2, num_filters=8)
  out = head(_pyramid(levels=(3, 4), size=8))
  assert out.shape == (2, 16, 16, 10)
  # Two light blocks (one LayerNorm each) then the 1x1 output conv.
  assert head.count_params() == _light_head_params(6, 8, 2, 10, 1)
  head8 = mask_feature_head.MaskFeatureHead(levels=[3], embedding_size=10,
                                            num_blocks=1, num_filters=8,
                                            output_stride=8)
  assert head8(_pyramid(levels=(3,), size=8)).shape == (2, 8, 8, 10)


def test_mask_feature_head_rejects_bad_arguments():
  with pytest.raises(ValueError, match='levels'):
    mask_feature_head.MaskFeatureHead(levels=[], embedding_size=4)
  with pytest.raises(ValueError, match='output_stride 16'):
    mask_feature_head.MaskFeatureHead(levels=[3, 4], embedding_size=4,
                                      output_stride=16)
  with pytest.raises(ValueError, match='block_type'):
    mask_feature_head.MaskFeatureHead(levels=[3], embedding_size=4,
                                      block_type='deformable')


@pytest.mark.parametrize('make', [
    lambda: multi_level_head.MultiLevelHead(
        output_channels=5, min_level=3, max_level=5, num_blocks=2,
        num_filters=8, block_type='conv', kernel_size=3,
        bias_init_value=0.3),
    lambda: center_heatmap_head.CenterHeatmapHead(
        num_classes=5, min_level=4, max_level=5, num_blocks=1,
        num_filters=8, prior_probability=0.2),
    lambda: center_embedding_head.CenterEmbeddingHead(
        embedding_size=7, min_level=3, max_level=4, num_blocks=1,
        num_filters=8, kernel_size=5),
], ids=['multi_level', 'heatmap', 'embedding'])
def test_multi_level_heads_round_trip(assert_round_trip, make):
  features = _pyramid(seed=1)
  assert_round_trip(make(), lambda layer: layer(features))


def test_heatmap_head_config_names_its_own_arguments():
  config = center_heatmap_head.CenterHeatmapHead(
      num_classes=5, min_level=3, max_level=3).get_config()
  assert config['num_classes'] == 5 and config['prior_probability'] == 0.1
  assert 'output_channels' not in config and 'bias_init_value' not in config
  config = center_embedding_head.CenterEmbeddingHead(
      embedding_size=7, min_level=3, max_level=3).get_config()
  assert config['embedding_size'] == 7 and 'output_channels' not in config


def test_mask_feature_head_round_trip(assert_round_trip):
  features = _pyramid(levels=(3, 4, 5), size=8, seed=2)
  assert_round_trip(
      mask_feature_head.MaskFeatureHead(
          levels=[3, 4, 5], embedding_size=6, num_blocks=2, num_filters=8,
          block_type='conv', kernel_size=3, output_stride=2),
      lambda layer: layer(features))
