"""Tests of the MaskConver layers, with hand-computed expectations."""

import math

import numpy as np
import pytest
import tensorflow as tf

from maskconver.modeling.layers import center_selector
from maskconver.modeling.layers import convnext_block
from maskconver.modeling.layers import head_block
from maskconver.modeling.layers import level_utils
from maskconver.modeling.layers import mask_embedding_generator
from maskconver.modeling.layers import mask_embedding_mlp
from maskconver.modeling.layers import mask_projection
from maskconver.modeling.layers import score_activation

_gelu = np.vectorize(lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))))


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def _weights(layer):
  """{variable name without the layer prefix and ':0': value}.

  The two convs of Model Garden's SqueezeExcitation get Keras' global names
  (conv2d_<n>); they are renamed 'se/reduce/...' and 'se/expand/...' here,
  in their creation order.
  """
  prefix = layer.name + '/'
  weights = {}
  se_names = iter(['se/reduce/kernel', 'se/reduce/bias', 'se/expand/kernel',
                   'se/expand/bias'])
  for w in layer.weights:
    name = w.name[len(prefix):-2]
    weights[next(se_names) if name.startswith('se/') else name] = w.numpy()
  return weights


def _randomize(layer, seed=0):
  rng = np.random.default_rng(seed)
  layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                     for w in layer.get_weights()])


# --- ConvNeXtBlock ---------------------------------------------------------


def _convnext_params(c, k, reduced, layer_scale=True):
  """Hand count: dw, LN, expand x4, SE on 4C, project, layer scale."""
  e = 4 * c
  se = (e * reduced + reduced + reduced * e + e) if reduced else 0
  return (k * k * c + c) + 2 * c + (c * e + e) + se + (e * c + c) + (
      c if layer_scale else 0)


# Reduced SE filters as Model Garden computes them: max(1, int(4C * ratio)),
# rounded to a multiple of 1 (no change).
@pytest.mark.parametrize('filters, kernel_size, se_ratio, reduced', [
    (8, 7, 0.25, 8),      # 32 * 0.25 = 8
    (10, 7, 0.0625, 2),   # 40 * 0.0625 = 2.5 -> 2
    (8, 3, 0.01, 1),      # 32 * 0.01 = 0.32 -> 0 -> at least 1
    (16, 7, 0.0, 0),      # no SE
    (384, 7, 0.0625, 96),  # the R50 recipe's block: 1536 * 0.0625 = 96
])
def test_convnext_block_params_by_formula(filters, kernel_size, se_ratio,
                                          reduced):
  block = convnext_block.ConvNeXtBlock(filters, kernel_size=kernel_size,
                                       se_ratio=se_ratio)
  block(tf.zeros([1, 9, 9, filters]))
  assert block.count_params() == _convnext_params(filters, kernel_size,
                                                  reduced)
  weights = _weights(block)
  if reduced:
    assert weights['se/reduce/kernel'].shape == (1, 1, 4 * filters, reduced)
  else:
    assert not [n for n in weights if n.startswith('se/')]
  assert weights['layer_scale'].tolist() == [np.float32(1e-6)] * filters


def test_convnext_block_without_layer_scale_has_no_gamma():
  block = convnext_block.ConvNeXtBlock(8, layer_scale_init_value=0.0)
  block(tf.zeros([1, 5, 5, 8]))
  assert 'layer_scale' not in _weights(block)
  assert block.count_params() == _convnext_params(8, 7, 0, layer_scale=False)


@pytest.mark.parametrize('shape', [(2, 5, 7, 8), (1, 1, 3, 8)])
def test_convnext_block_keeps_shape(shape):
  block = convnext_block.ConvNeXtBlock(8, se_ratio=0.25)
  assert block(tf.random.normal(shape)).shape == shape


def test_convnext_block_matches_manual_computation():
  """x + gamma * project(SE(gelu(expand(LN(dw7x7(x)))))), SE with GELU."""
  block = convnext_block.ConvNeXtBlock(4, se_ratio=0.5)
  x = tf.random.stateless_normal([2, 5, 6, 4], seed=[1, 2])
  block(x)
  _randomize(block)
  w = _weights(block)
  y = tf.nn.depthwise_conv2d(x, w['depthwise/depthwise_kernel'], [1] * 4,
                             'SAME') + w['depthwise/bias']
  mean, var = tf.nn.moments(y, axes=[-1], keepdims=True)
  y = (y - mean) / tf.sqrt(var + 1e-6) * w['norm/gamma'] + w['norm/beta']
  y = _gelu(np.einsum('bhwc,cd->bhwd', y, w['expand/kernel'][0, 0]) +
            w['expand/bias'])
  squeezed = y.mean(axis=(1, 2), keepdims=True)
  squeezed = _gelu(np.einsum('bhwc,cd->bhwd', squeezed,
                             w['se/reduce/kernel'][0, 0]) +
                   w['se/reduce/bias'])
  gate = 1.0 / (1.0 + np.exp(-(np.einsum(
      'bhwc,cd->bhwd', squeezed, w['se/expand/kernel'][0, 0]) +
                                 w['se/expand/bias'])))
  y = np.einsum('bhwc,cd->bhwd', y * gate, w['project/kernel'][0, 0]) + (
      w['project/bias'])
  expected = x.numpy() + w['layer_scale'] * y
  np.testing.assert_allclose(block(x).numpy(), expected, rtol=1e-4,
                             atol=1e-4)


def test_convnext_block_is_identity_with_zero_layer_scale():
  block = convnext_block.ConvNeXtBlock(8, se_ratio=0.25)
  x = tf.random.stateless_normal([1, 4, 4, 8], seed=[17, 18])
  block(x)
  _randomize(block)
  assert np.abs(block(x).numpy() - x.numpy()).max() > 1e-2
  block.weights[0].assign(tf.zeros([8]))  # the layer scale
  np.testing.assert_array_equal(block(x).numpy(), x.numpy())


def test_convnext_block_rejects_bad_arguments():
  with pytest.raises(ValueError, match='se_ratio'):
    convnext_block.ConvNeXtBlock(8, se_ratio=1.5)
  with pytest.raises(ValueError, match='expects 8 input channels'):
    convnext_block.ConvNeXtBlock(8)(tf.zeros([1, 4, 4, 6]))


def test_convnext_block_round_trip(assert_round_trip):
  x = tf.random.stateless_normal([2, 5, 5, 8], seed=[3, 4])
  assert_round_trip(
      convnext_block.ConvNeXtBlock(8, kernel_size=5, expansion=3,
                                   se_ratio=0.25, layer_scale_init_value=0.5,
                                   drop_path_rate=0.2),
      lambda layer: layer(x, training=False))


# --- HeadBlock -----------------------------------------------------------


@pytest.mark.parametrize('block_type, kernel_size, num_levels, expected', [
    # light: dw k*k*cin + cin, 1x1 cin*f + f, LayerNorm 2f per level.
    ('light', 7, 1, 49 * 6 + 6 + 6 * 8 + 8 + 2 * 8),
    ('light', 7, 5, 49 * 6 + 6 + 6 * 8 + 8 + 5 * 2 * 8),
    # conv: k*k*cin*f + f, LayerNorm 2f per level.
    ('conv', 3, 1, 9 * 6 * 8 + 8 + 2 * 8),
    ('conv', 3, 3, 9 * 6 * 8 + 8 + 3 * 2 * 8),
])
def test_head_block_params(block_type, kernel_size, num_levels, expected):
  block = head_block.HeadBlock(8, block_type, kernel_size, num_levels)
  x = tf.zeros([1, 6, 6, 6])
  for index in range(num_levels):
    assert block(x, level_index=index).shape == (1, 6, 6, 8)
  assert block.count_params() == expected


def test_head_block_uses_the_norm_of_its_level():
  block = head_block.HeadBlock(8, num_levels=2)
  single = head_block.HeadBlock(8, num_levels=1)
  x = tf.random.stateless_normal([1, 5, 5, 6], seed=[5, 6])
  block(x, level_index=0)
  block(x, level_index=1)
  single(x)
  single.set_weights(block.get_weights()[:6])  # convs + norm_0
  w = _weights(block)
  assert sorted(n for n in w if n.startswith('norm_')) == [
      'norm_0/beta', 'norm_0/gamma', 'norm_1/beta', 'norm_1/gamma']
  level0 = block(x, level_index=0).numpy()
  np.testing.assert_array_equal(level0, single(x).numpy())
  np.testing.assert_array_equal(block(x, level_index=1).numpy(), level0)
  # Level 1's norm: gamma 0, beta 1, so its output is GELU(1) everywhere;
  # level 0 is unchanged.
  for v in block.weights:
    if 'norm_1/gamma' in v.name:
      v.assign(tf.zeros([8]))
    if 'norm_1/beta' in v.name:
      v.assign(tf.ones([8]))
  np.testing.assert_array_equal(block(x, level_index=0).numpy(), level0)
  np.testing.assert_allclose(block(x, level_index=1).numpy(), _gelu(1.0),
                             rtol=1e-6)
  assert _gelu(1.0) == pytest.approx(0.8413447)


def test_head_block_kernel_size_defaults_to_its_block_type():
  x = tf.zeros([1, 6, 6, 6])
  conv = head_block.HeadBlock(8, 'conv')
  light = head_block.HeadBlock(8, 'light')
  conv(x), light(x)
  assert (conv.kernel_size, light.kernel_size) == (3, 7)
  assert conv.count_params() == 3 * 3 * 6 * 8 + 8 + 2 * 8
  assert light.count_params() == 7 * 7 * 6 + 6 + 6 * 8 + 8 + 2 * 8
  # An explicit size still wins (configs that set kernel_size keep it).
  assert head_block.HeadBlock(8, 'conv', 7).kernel_size == 7


def test_head_block_rejects_bad_arguments():
  with pytest.raises(ValueError, match='block_type'):
    head_block.HeadBlock(8, block_type='dense')
  with pytest.raises(ValueError, match='num_levels'):
    head_block.HeadBlock(8, num_levels=0)


@pytest.mark.parametrize('block_type, kernel_size', [('light', 7),
                                                     ('conv', 3)])
def test_head_block_round_trip(assert_round_trip, block_type, kernel_size):
  x = tf.random.stateless_normal([1, 5, 5, 6], seed=[7, 8])
  assert_round_trip(
      head_block.HeadBlock(8, block_type, kernel_size, num_levels=2),
      lambda layer: [layer(x, level_index=0), layer(x, level_index=1)])


# --- score activation, level flattening ------------------------------------


def test_score_activations_by_hand():
  logits = tf.constant([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0])
  np.testing.assert_allclose(
      score_activation.score_activation(logits, 'hard_sigmoid').numpy(),
      [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-7)
  np.testing.assert_allclose(
      score_activation.score_activation(logits, 'sigmoid').numpy(),
      [_sigmoid(v) for v in logits.numpy()], rtol=1e-6)
  with pytest.raises(ValueError, match='relu'):
    score_activation.score_activation(logits, 'relu')


def test_unscaled_activations_times_their_scale():
  logits = tf.constant([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0])
  activation, scale = score_activation.unscaled('hard_sigmoid')
  assert scale == 1.0 / 6.0
  # relu6(x + 3) by hand.
  np.testing.assert_array_equal(activation(logits).numpy(),
                                [0.0, 0.0, 1.5, 3.0, 4.5, 6.0, 6.0])
  activation, scale = score_activation.unscaled('sigmoid')
  assert scale == 1.0
  np.testing.assert_allclose(activation(logits).numpy(),
                             [_sigmoid(v) for v in logits.numpy()], rtol=1e-6)
  with pytest.raises(ValueError, match='relu'):
    score_activation.unscaled('relu')


def test_flatten_levels_is_row_major_per_level_then_by_level():
  level3 = tf.reshape(tf.range(6, dtype=tf.float32), [1, 2, 3, 1])
  level4 = tf.constant([[[[100.0], [101.0]]]])       # [1, 1, 2, 1]
  level5 = tf.constant([[[[200.0]]]])                # [1, 1, 1, 1]
  flat = level_utils.flatten_levels({'3': level3, '4': level4, '5': level5},
                                    3, 5)
  assert flat.shape == (1, 9, 1)
  assert flat.numpy()[0, :, 0].tolist() == [0, 1, 2, 3, 4, 5, 100, 101, 200]
  # Channels stay last; a level outside [min, max] is ignored.
  two = tf.stack([level3, -level3], axis=-1)[..., 0, :]  # [1, 2, 3, 2]
  flat = level_utils.flatten_levels({'3': two, '4': level4}, 3, 3)
  assert flat.numpy()[0, 4].tolist() == [4.0, -4.0]
  assert flat.shape == (1, 6, 2)


# --- CenterSelector --------------------------------------------------------

_BG = -200.0  # sigmoid and hard-sigmoid both give exactly 0


def _two_level_heatmaps():
  """Image 0: L3 4x4 and L4 2x2 maps, 2 classes, hand-placed peaks.

  L3 class 0: peak 2.0 at (1, 1) (flat index 1*4+1 = 5), its non-peak
  neighbour 1.5 at (1, 2) (index 6), an isolated peak 0.5 at (3, 3) (15).
  L3 class 1: 0.8 at (1, 2) (index 6): a peak of its own class.
  L4 class 1: 1.0 at (0, 1): index 16 (L3 cells) + 0*2+1 = 17.
  Image 1: a single peak 3.0, L4 class 0 at (1, 1): index 16 + 3 = 19.
  """
  level3 = np.full([2, 4, 4, 2], _BG, np.float32)
  level4 = np.full([2, 2, 2, 2], _BG, np.float32)
  level3[0, 1, 1, 0] = 2.0
  level3[0, 1, 2, 0] = 1.5
  level3[0, 3, 3, 0] = 0.5
  level3[0, 1, 2, 1] = 0.8
  level4[0, 0, 1, 1] = 1.0
  level4[1, 1, 1, 0] = 3.0
  return {'3': tf.constant(level3), '4': tf.constant(level4)}


def test_center_selector_nms_and_top_k_across_levels():
  selector = center_selector.CenterSelector(num_instances=4, min_level=3,
                                            max_level=4)
  out = selector(_two_level_heatmaps())
  assert out['classes'].dtype == tf.int32
  assert out['center_indices'].dtype == tf.int32
  assert out['scores'].shape == (2, 4)
  # The 1.5 neighbour of the 2.0 peak is suppressed; the 0.8 of the other
  # class on the same cell is not; the L4 peak ranks second.
  assert out['center_indices'].numpy()[0].tolist() == [5, 17, 6, 15]
  assert out['classes'].numpy()[0].tolist() == [0, 1, 1, 0]
  np.testing.assert_allclose(
      out['scores'].numpy()[0],
      [_sigmoid(2.0), _sigmoid(1.0), _sigmoid(0.8), _sigmoid(0.5)],
      rtol=1e-6)
  assert out['center_indices'].numpy()[1, 0] == 19
  assert out['classes'].numpy()[1, 0] == 0
  np.testing.assert_allclose(out['scores'].numpy()[1],
                             [_sigmoid(3.0), 0, 0, 0], rtol=1e-6)


def test_center_selector_without_nms_keeps_the_neighbour():
  selector = center_selector.CenterSelector(num_instances=4, min_level=3,
                                            max_level=4, nms_kernel_size=1)
  out = selector(_two_level_heatmaps())
  assert out['center_indices'].numpy()[0].tolist() == [5, 6, 17, 6]
  assert out['classes'].numpy()[0].tolist() == [0, 0, 1, 1]


def test_center_selector_hard_sigmoid_scores():
  selector = center_selector.CenterSelector(
      num_instances=4, min_level=3, max_level=4, activation='hard_sigmoid')
  out = selector(_two_level_heatmaps())
  # relu6(x + 3) / 6.
  np.testing.assert_allclose(out['scores'].numpy()[0],
                             [5 / 6, 4 / 6, 3.8 / 6, 3.5 / 6], rtol=1e-6)
  assert out['center_indices'].numpy()[0].tolist() == [5, 17, 6, 15]


def test_center_selector_rejects_unknown_activation():
  with pytest.raises(ValueError, match='activation'):
    center_selector.CenterSelector(4, 3, 4, activation='softmax')


def test_center_selector_round_trip(assert_round_trip):
  heatmaps = _two_level_heatmaps()
  assert_round_trip(
      center_selector.CenterSelector(num_instances=3, min_level=3,
                                     max_level=4, activation='hard_sigmoid',
                                     nms_kernel_size=1),
      lambda layer: layer(heatmaps))


def _saturated_heatmap():
  """One 6x6 level, 2 classes, background -10 (hard-sigmoid 0).

  Object A, class 0: a confident 3x3 patch around (1, 1): 6 at the center,
  5 on the edges, 4 at the corners; every logit >= 3, so hard-sigmoid gives
  1.0 on all 9 cells. Object B, class 1: a 2x2 plateau of exactly 4.0 at
  rows 3-4, columns 3-4 (ties in the logits themselves). Object C, class 0:
  a weak peak 0.0 (hard-sigmoid 0.5) at (4, 0).
  """
  logits = np.full([1, 6, 6, 2], -10.0, np.float32)
  logits[0, 0:3, 0:3, 0] = [[4, 5, 4], [5, 6, 5], [4, 5, 4]]
  logits[0, 3:5, 3:5, 1] = 4.0
  logits[0, 4, 0, 0] = 0.0
  return logits


def test_center_selector_hard_sigmoid_picks_each_object_once():
  logits = _saturated_heatmap()
  # The old rule (max-pool NMS on hard-sigmoid scores) keeps every cell
  # equal to its window's max score: all 9 cells of A and all 4 of B.
  scores = np.clip(logits + 3.0, 0.0, 6.0) / 6.0
  pooled = tf.nn.max_pool2d(scores, 3, 1, 'SAME').numpy()
  old_kept = (scores == pooled) & (scores > 0)
  assert old_kept[0, :3, :3, 0].sum() == 9 and old_kept[0, 3:5, 3:5, 1].sum(
  ) == 4
  selector = center_selector.CenterSelector(
      num_instances=5, min_level=3, max_level=3, activation='hard_sigmoid')
  out = selector({'3': tf.constant(logits)})
  # A once at its logit peak (1, 1) = cell 7; B once at the first cell of
  # its plateau, (3, 3) = cell 21; C at (4, 0) = cell 24. Row-major order
  # among equal scores follows the logits (6 > 4), then the cell index.
  assert out['center_indices'].numpy()[0, :3].tolist() == [7, 21, 24]
  assert out['classes'].numpy()[0, :3].tolist() == [0, 1, 0]
  np.testing.assert_array_equal(out['scores'].numpy()[0],
                                [1.0, 1.0, 0.5, 0.0, 0.0])
  # With sigmoid the same cells come out, scored sigmoid(logit).
  out = center_selector.CenterSelector(5, 3, 3)({'3': tf.constant(logits)})
  assert out['center_indices'].numpy()[0, :3].tolist() == [7, 21, 24]
  np.testing.assert_allclose(out['scores'].numpy()[0, :3],
                             [_sigmoid(6.0), _sigmoid(4.0), 0.5], rtol=1e-6)


def test_local_peaks_breaks_ties_row_major_for_any_window():
  # A 1x4 plateau of 2.0 at row 1, columns 0-3, and an equal lone cell at
  # column 5, on a zero background.
  logits = np.zeros([1, 3, 8, 1], np.float32)
  logits[0, 1, 0:4, 0] = 2.0
  logits[0, 1, 5, 0] = 2.0
  positive = logits[0, ..., 0] > 0

  def kept(kernel_size):
    peaks = center_selector.local_peaks(tf.constant(logits), kernel_size)
    return np.argwhere(peaks.numpy()[0, ..., 0] & positive).tolist()

  # 3x3: the plateau keeps its first cell; column 5 sees columns 4-6 only.
  assert kept(3) == [[1, 0], [1, 5]]
  # 5x5: column 5 now sees the equal, earlier (1, 3) and is suppressed.
  assert kept(5) == [[1, 0]]
  assert center_selector.local_peaks(tf.constant(logits), 1).numpy().all()


def test_center_selector_rejects_even_window():
  with pytest.raises(ValueError, match='nms_kernel_size'):
    center_selector.CenterSelector(4, 3, 3, nms_kernel_size=2)


@pytest.mark.parametrize('dtype', [tf.float32, tf.bfloat16])
def test_center_selector_compiles_with_xla(dtype):
  logits = _saturated_heatmap()
  # In bfloat16 (8 significant bits) 3.01 and 3.02 both round to 3.015625:
  # neighbours that tie only in the network's compute dtype.
  logits[0, 3, 0, 1] = 3.01
  logits[0, 3, 1, 1] = 3.02
  heatmaps = {'3': tf.cast(tf.constant(logits), dtype)}
  selector = center_selector.CenterSelector(6, 3, 3,
                                            activation='hard_sigmoid')
  compiled = tf.function(selector, jit_compile=True)(heatmaps)
  eager = selector(heatmaps)
  for key in ('center_indices', 'classes', 'scores'):
    np.testing.assert_array_equal(compiled[key].numpy(), eager[key].numpy())
  indices = compiled['center_indices'].numpy()[0].tolist()
  classes = compiled['classes'].numpy()[0].tolist()
  pairs = list(zip(indices, classes))[:4]
  # bfloat16: the tied pair keeps its first cell (3, 0) = 18; float32: the
  # larger 3.02 at (3, 1) = 19. Either way one center per object.
  tied = 18 if dtype == tf.bfloat16 else 19
  assert pairs == [(7, 0), (21, 1), (tied, 1), (24, 0)]


# --- MaskEmbeddingMLP, MaskEmbeddingGenerator, MaskProjection ---------------


def test_mask_embedding_mlp_by_hand():
  mlp = mask_embedding_mlp.MaskEmbeddingMLP(hidden_size=5, output_size=3)
  x = tf.random.stateless_normal([2, 4, 6], seed=[9, 10])
  assert mlp(x).shape == (2, 4, 3)
  assert mlp.count_params() == 6 * 5 + 5 + 5 * 3 + 3
  _randomize(mlp)
  w = _weights(mlp)
  expected = _gelu(x.numpy() @ w['hidden/kernel'] + w['hidden/bias']) @ (
      w['output/kernel']) + w['output/bias']
  np.testing.assert_allclose(mlp(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_mask_embedding_mlp_round_trip(assert_round_trip):
  x = tf.random.stateless_normal([2, 4, 6], seed=[11, 12])
  assert_round_trip(mask_embedding_mlp.MaskEmbeddingMLP(5, 3),
                    lambda layer: layer(x))


def _identifiable_embeddings():
  """L3 2x2 cell (y, x) holds [2y + x + 1, 0]; the L4 1x1 cell holds [50, 0]."""
  level3 = np.zeros([1, 2, 2, 2], np.float32)
  level3[0, :, :, 0] = [[1, 2], [3, 4]]
  level4 = np.array([[[[50.0, 0.0]]]], np.float32)
  return {'3': tf.constant(level3), '4': tf.constant(level4)}


def _generator(use_class_embedding):
  """A generator with an identity MLP: output = GELU(gathered + class)."""
  generator = mask_embedding_generator.MaskEmbeddingGenerator(
      num_classes=3, embedding_size=2, min_level=3, max_level=4,
      use_class_embedding=use_class_embedding)
  generator(_identifiable_embeddings(), tf.constant([[0]]),
            tf.constant([[0]]))
  values = {
      'class_embedding/embeddings': np.array([[0, 0], [0, 1], [0, 2]],
                                             np.float32),
      'mlp/hidden/kernel': np.eye(2, dtype=np.float32),
      'mlp/hidden/bias': np.zeros(2, np.float32),
      'mlp/output/kernel': np.eye(2, dtype=np.float32),
      'mlp/output/bias': np.zeros(2, np.float32),
  }
  prefix = generator.name + '/'
  for w in generator.weights:
    w.assign(values[w.name[len(prefix):-2]])
  return generator


def test_mask_embedding_generator_gathers_cells_and_adds_classes():
  generator = _generator(use_class_embedding=True)
  # Cell (0, 1) of L3 is index 1, (1, 1) index 3, the L4 cell index 4.
  out = generator(_identifiable_embeddings(), tf.constant([[1, 3, 4, 4]]),
                  tf.constant([[2, 0, 0, 1]]))
  assert out.shape == (1, 4, 2)
  expected = _gelu(np.array([[2, 2], [4, 0], [50, 0], [50, 1]], np.float32))
  np.testing.assert_allclose(out.numpy()[0], expected, rtol=1e-6, atol=1e-6)
  # Two centers on the same cell, different classes: different embeddings.
  assert np.abs(out.numpy()[0, 2] - out.numpy()[0, 3]).max() > 0.5


def test_mask_embedding_generator_without_class_embedding():
  generator = _generator(use_class_embedding=False)
  assert not [w for w in generator.weights if 'class_embedding' in w.name]
  out = generator(_identifiable_embeddings(), tf.constant([[4, 4, 0]]),
                  tf.constant([[0, 1, 2]]))
  assert out.shape == (1, 3, 2)
  np.testing.assert_allclose(
      out.numpy()[0], _gelu(np.array([[50, 0], [50, 0], [1, 0]], np.float32)),
      rtol=1e-6, atol=1e-6)


def test_mask_embedding_generator_params_and_batch_gather():
  generator = mask_embedding_generator.MaskEmbeddingGenerator(
      num_classes=7, embedding_size=4, min_level=3, max_level=3,
      mlp_hidden_size=6)
  embeddings = tf.reshape(tf.range(2 * 3 * 3 * 4, dtype=tf.float32),
                          [2, 3, 3, 4])
  generator({'3': embeddings}, tf.constant([[0, 8]] * 2),
            tf.constant([[0, 6]] * 2))
  # class table 7*4, MLP 4*6 + 6 + 6*4 + 4.
  assert generator.count_params() == 7 * 4 + (4 * 6 + 6) + (6 * 4 + 4)
  # Image 1's index 2 is its own cell 2, not image 0's.
  out = generator({'3': embeddings}, tf.constant([[2], [2]]),
                  tf.constant([[0], [0]]))
  assert np.abs(out.numpy()[0] - out.numpy()[1]).max() > 0


def test_mask_embedding_generator_round_trip(assert_round_trip):
  embeddings = _identifiable_embeddings()
  indices, classes = tf.constant([[1, 4]]), tf.constant([[2, 1]])
  assert_round_trip(
      mask_embedding_generator.MaskEmbeddingGenerator(
          num_classes=3, embedding_size=2, min_level=3, max_level=4,
          mlp_hidden_size=5),
      lambda layer: layer(embeddings, indices, classes))
  assert_round_trip(
      mask_embedding_generator.MaskEmbeddingGenerator(
          num_classes=3, embedding_size=2, min_level=3, max_level=4,
          use_class_embedding=False),
      lambda layer: layer(embeddings, indices, classes))


def test_mask_projection_equals_einsum():
  rng = np.random.default_rng(0)
  features = rng.normal(size=[2, 3, 4, 5]).astype(np.float32)
  embeddings = rng.normal(size=[2, 6, 5]).astype(np.float32)
  out = mask_projection.MaskProjection()(tf.constant(features),
                                         tf.constant(embeddings))
  assert out.shape == (2, 3, 4, 6)
  expected = np.einsum('bhwc,bkc->bhwk', features, embeddings)
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
  # One pixel by hand: mask 2 of image 1 at (0, 3).
  assert out.numpy()[1, 0, 3, 2] == pytest.approx(
      float(np.dot(features[1, 0, 3], embeddings[1, 2])), rel=1e-5)


def test_mask_projection_fully_connected_form_equals_einsum():
  rng = np.random.default_rng(1)
  features = rng.normal(size=[1, 3, 4, 5]).astype(np.float32)
  embeddings = rng.normal(size=[1, 6, 5]).astype(np.float32)
  layer = mask_projection.MaskProjection(fully_connected=True)
  out = layer(tf.constant(features), tf.constant(embeddings)).numpy()
  assert out.shape == (1, 3, 4, 6)
  # Normal(0, 1) values, 5-term sums: float32 rounding in any summation
  # order stays below 1e-6.
  np.testing.assert_allclose(
      out, np.einsum('bhwc,bkc->bhwk', features, embeddings),
      rtol=1e-5, atol=1e-5)
  # Mask 4 at (2, 1) by hand.
  assert out[0, 2, 1, 4] == pytest.approx(
      float(np.dot(features[0, 2, 1], embeddings[0, 4])), rel=1e-5)
  with pytest.raises(ValueError, match='batch size 1'):
    layer(tf.zeros([2, 3, 4, 5]), tf.zeros([2, 6, 5]))


def test_mask_projection_fully_connected_form_is_scoped():
  layer = mask_projection.MaskProjection()
  traced = []

  @tf.function
  def project(features, embeddings):
    traced.append(layer.fully_connected)
    return layer(features, embeddings)

  features, embeddings = tf.ones([1, 2, 2, 3]), tf.ones([1, 4, 3])
  with layer.fully_connected_form():
    graph = project.get_concrete_function(features, embeddings).graph
  assert not layer.fully_connected and traced == [True]
  op_types = {op.type for op in graph.get_operations()}
  assert 'MatMul' in op_types and 'Einsum' not in op_types


@pytest.mark.parametrize('dtype', [tf.float32, tf.bfloat16])
def test_mask_projection_fully_connected_compiles_with_xla(dtype):
  rng = np.random.default_rng(2)
  # Small integers: exact in bfloat16 and in every accumulation order.
  features = rng.integers(-3, 4, size=[1, 4, 4, 8]).astype(np.float32)
  embeddings = rng.integers(-3, 4, size=[1, 5, 8]).astype(np.float32)
  layer = mask_projection.MaskProjection(fully_connected=True, dtype=dtype)
  out = tf.function(layer, jit_compile=True)(
      tf.constant(features, dtype), tf.constant(embeddings, dtype))
  assert out.dtype == dtype
  np.testing.assert_array_equal(
      tf.cast(out, tf.float32).numpy(),
      np.einsum('bhwc,bkc->bhwk', features, embeddings))


def test_mask_projection_round_trip(assert_round_trip):
  features = tf.random.stateless_normal([1, 3, 3, 4], seed=[13, 14])
  embeddings = tf.random.stateless_normal([1, 2, 4], seed=[15, 16])
  assert_round_trip(mask_projection.MaskProjection(),
                    lambda layer: layer(features, embeddings))
  assert_round_trip(mask_projection.MaskProjection(fully_connected=True),
                    lambda layer: layer(features, embeddings))
