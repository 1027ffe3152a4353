"""Tests of the registered recipes and of the model factory."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.modeling import optimization
from official.vision.configs import decoders as mg_decoders

from maskconver import keys
from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.modeling import factory

_EXPERIMENTS = ['maskconver_r50_coco', 'maskconver_mnmh_coco_640',
                'maskconver_mnmh_coco_256']


def _light_block(cin, filters, num_levels, k=7):
  """dw k*k*cin + cin, 1x1 cin*f + f, one LayerNorm (2f) per level."""
  return k * k * cin + cin + cin * filters + filters + 2 * filters * num_levels


def _head(cin, filters, num_blocks, out, num_levels):
  return (_light_block(cin, filters, num_levels) +
          (num_blocks - 1) * _light_block(filters, filters, num_levels) +
          filters * out + out)


def _convnext_se_block(c, ratio=0.0625):
  e, s = 4 * c, int(4 * c * ratio)
  return (49 * c + c) + 2 * c + (c * e + e) + (e * s + s + s * e + e) + (
      e * c + c) + c


def _build(config, size=128):
  return factory.build_maskconver_model(
      tf_keras.layers.InputSpec(shape=[None, size, size, 3]), config)


# --- Registered experiments --------------------------------------------------


@pytest.mark.parametrize('name', _EXPERIMENTS)
def test_registered_experiment_validates(name):
  config = exp_factory.get_exp_config(name)
  config.validate()
  model = config.task.model
  assert (model.num_classes, model.num_thing_classes) == (133, 80)
  assert model.num_thing_classes <= model.num_classes


def test_recipes_follow_the_paper():
  r50 = exp_factory.get_exp_config('maskconver_r50_coco').task.model
  assert r50.backbone.type == 'resnet' and r50.backbone.resnet.model_id == 50
  assert r50.decoder.type == 'convnext_unet'
  unet = r50.decoder.convnext_unet
  assert (unet.num_blocks, unet.num_filters, unet.use_se) == (
      [18, 1, 1], [384, 384, 384], True)
  assert (r50.min_level, r50.max_level, r50.score_activation) == (
      3, 7, 'sigmoid')
  assert r50.input_size[:2] == [1280, 1280]
  for size in (640, 256):
    mnmh = exp_factory.get_exp_config(f'maskconver_mnmh_coco_{size}')
    model = mnmh.task.model
    assert model.backbone.mobilenet.model_id == 'MobileNetMultiAVGSeg'
    assert model.decoder.type == 'deeplabv3plus'
    assert (model.min_level, model.max_level, model.mask_feature_levels) == (
        3, 3, [3])
    assert model.score_activation == 'hard_sigmoid'
    assert model.input_size[:2] == [size, size]
  # The two mobile recipes share the network; only the input size differs.
  a = exp_factory.get_exp_config('maskconver_mnmh_coco_640').task.model
  b = exp_factory.get_exp_config('maskconver_mnmh_coco_256').task.model
  a, b = a.as_dict(), b.as_dict()
  del a['input_size'], b['input_size']
  assert a == b


@pytest.fixture(scope='module')
def r50_model():
  """The R50 recipe, built once (at 128x128: parameters ignore the size)."""
  config = exp_factory.get_exp_config('maskconver_r50_coco').task.model
  return _build(config, 128)


def test_r50_recipe_parameter_count(r50_model):
  # ResNet-50 without its classifier: 23,587,712 weights in the usual Keras
  # count, whose convs have biases (26,560 of them: one per output channel of
  # its 53 convs); Model Garden's convs have none.
  backbone = 23_587_712 - 26_560
  d = 384
  decoder = ((2048 + 1024 + 512) * d + 3 * 2 * d +  # laterals + LayerNorms
             2 * (d * d + 2 * d) +                  # top-down 1x1 + LN
             20 * _convnext_se_block(d) +           # N = 18 + 1 + 1
             2 * (49 * d + d + 2 * d))              # L6, L7: dw 7x7 + LN
  heatmap = _head(d, 256, 4, 133, num_levels=5)
  embedding = _head(d, 256, 4, 512, num_levels=5)
  mask = _head(d, 256, 1, 512, num_levels=1)
  generator = 133 * 512 + 2 * (512 * 512 + 512)
  parts = {
      'backbone': backbone, 'decoder': decoder, 'heatmap_head': heatmap,
      'embedding_head': embedding, 'mask_head': mask, 'generator': generator
  }
  for name, count in parts.items():
    assert getattr(r50_model, name).count_params() == count, name
  assert r50_model.count_params() == sum(parts.values()) == 56_981_957


@pytest.fixture(scope='module')
def mnmh_model():
  config = exp_factory.get_exp_config('maskconver_mnmh_coco_640').task.model
  return _build(config, 128)


def test_mnmh_recipe_parameter_count(mnmh_model):
  # MobileNetMultiAVGSeg: L3 has 64 channels, L4 ends in a 1x1 conv to 448.
  specs = mnmh_model.backbone.output_specs
  assert (specs['3'][-1], specs['4'][-1]) == (64, 448)
  # ASPP, 128 filters: 1x1 and pooling branches (conv + BN), three atrous
  # branches (dw 3x3 without BN, 1x1, BN), projection of the 5 branches.
  aspp = (2 * (448 * 128 + 4 * 128) + 3 * (9 * 448 + 448 * 128 + 4 * 128) +
          5 * 128 * 128 + 4 * 128)
  low = 64 * 48 + 4 * 48
  fuse = 9 * 176 + 4 * 176 + 176 * 256 + 4 * 256

  def phone_head(cin, filters, num_blocks, out):
    # separable_bn blocks: dw 3x3 and 1x1 without bias, each + BN (4 / ch).
    blocks = sum(9 * c + 4 * c + c * filters + 4 * filters
                 for c in [cin] + [filters] * (num_blocks - 1))
    return blocks + filters * out + out

  parts = {
      'decoder': aspp + low + fuse,
      'heatmap_head': phone_head(256, 256, 2, 133),
      'embedding_head': phone_head(256, 256, 2, 256),
      'mask_head': phone_head(256, 128, 1, 256),
      'generator': 133 * 256 + 2 * (256 * 256 + 256),
  }
  for name, count in parts.items():
    assert getattr(mnmh_model, name).count_params() == count, name
  # Backbone measured with Model Garden; it includes the classification conv
  # 448 -> 1280 (+ batch norm) that follows the global pooling: see below.
  assert mnmh_model.backbone.count_params() == 2_239_840
  assert mnmh_model.count_params() == 2_239_840 + sum(parts.values())
  assert mnmh_model.count_params() == 3_290_069


def test_mnmh_recipe_gradients_reach_all_but_the_classifier_conv(mnmh_model):
  """Every variable gets a gradient except Model Garden MobileNet's last conv.

  MobileNet builds its 1x1 conv to 1280 after the global pooling as an extra
  endpoint that no decoder reads: 448 * 1280 + 4 * 1280 = 578,560 of the
  recipe's parameters never influence the output.
  """
  images = tf.random.stateless_normal([2, 128, 128, 3], seed=[0, 1])
  with tf.GradientTape() as tape:
    outputs = mnmh_model(images, tf.constant([[0, 255]] * 2),
                         tf.constant([[0, 132]] * 2), training=True)
    loss = tf.add_n([tf.reduce_sum(v) for v in tf.nest.flatten(
        [outputs[keys.CLASS_HEATMAP_LOGITS], outputs[keys.CENTER_EMBEDDINGS],
         outputs[keys.MASK_LOGITS]])])
  variables = mnmh_model.trainable_variables
  grads = tape.gradient(loss, variables)
  dead = [v for v, g in zip(variables, grads) if g is None]
  assert sorted(tuple(v.shape) for v in dead) == [(1, 1, 448, 1280),
                                                  (1280,), (1280,)]
  dead_weights = [w for w in mnmh_model.backbone.weights
                  if w.name.rsplit('/', 2)[0] == dead[0].name.rsplit('/', 2)[0]]
  assert sum(int(np.prod(w.shape)) for w in dead_weights) == 578_560


# --- Factory: config mapping and errors ----------------------------------


def test_factory_maps_every_switch(tiny):
  config = tiny.config(
      'convnext_unet', use_class_embedding=False, mlp_hidden_size=12,
      score_activation='hard_sigmoid', nms_kernel_size=5, num_instances=9)
  config.decoder.convnext_unet.use_se = False
  config.center_head.block_type, config.center_head.kernel_size = 'conv', 3
  config.mask_head.num_blocks = 2
  model = tiny.build(config)
  assert not [w for w in model.decoder.weights if '/se/' in w.name]
  assert not [w for w in model.generator.weights
              if 'class_embedding' in w.name]
  assert model.generator.mlp_hidden_size == 12
  assert [tuple(w.shape) for w in model.generator.weights][0] == (
      tiny.embedding_size, 12)
  assert (model.selector.activation, model.selector.nms_kernel_size) == (
      'hard_sigmoid', 5)
  assert model.heatmap_head.block_type == 'conv'
  assert model.embedding_head.kernel_size == 3
  assert model.mask_head.num_blocks == 2
  outputs = model(tf.zeros([1, 64, 64, 3]), training=False)
  assert outputs[keys.MASK_LOGITS].shape == (1, 16, 16, 9)
  # hard-sigmoid of the heatmap prior logit -log(9): relu6(3 - 2.197) / 6.
  np.testing.assert_allclose(
      outputs[keys.DETECTED_SCORES].numpy().max(), (3 - np.log(9)) / 6,
      atol=0.02)


def test_conv_heads_are_3x3_unless_a_kernel_size_is_given(tiny):
  config = tiny.config('deeplabv3plus')
  config.center_head.block_type = 'conv'
  config.mask_head.block_type = 'conv'
  model = tiny.build(config)
  kernels = {w.name.split('/')[1]: tuple(w.shape) for w in model.weights
             if w.name.endswith('block_0/conv/kernel:0')}
  # Decoder output 16 channels -> 8 filters, 3x3, in all three heads.
  assert kernels == {'center_heatmap_head': (3, 3, 16, 8),
                     'center_embedding_head': (3, 3, 16, 8),
                     'mask_feature_head': (3, 3, 16, 8)}
  config.center_head.kernel_size = 5
  kernels = {w.name.split('/')[1]: tuple(w.shape)
             for w in tiny.build(config).weights
             if w.name.endswith('block_0/conv/kernel:0')}
  assert kernels['center_heatmap_head'] == (5, 5, 16, 8)
  assert kernels['mask_feature_head'] == (3, 3, 16, 8)
  # Light heads keep their 7x7 depthwise convs by default.
  depthwise = [tuple(w.shape) for w in
               tiny.build(tiny.config('deeplabv3plus')).weights
               if w.name.endswith('block_0/depthwise/depthwise_kernel:0')]
  assert depthwise == [(7, 7, 16, 1)] * 3


def test_factory_builds_model_garden_fpn(tiny):
  config = tiny.config('convnext_unet')
  config.decoder.type = 'fpn'
  config.decoder.fpn = mg_decoders.FPN(num_filters=16)
  model = tiny.build(config)
  outputs = model(tf.zeros([1, 64, 64, 3]), training=False)
  assert sorted(outputs[keys.CLASS_HEATMAP_LOGITS]) == [
      '3', '4', '5', '6', '7']
  assert outputs[keys.CLASS_HEATMAP_LOGITS]['7'].shape == (1, 1, 1, 5)


def test_unet_heads_on_one_level(tiny):
  # Heads on L3 only (the mobile recipe's single level) over a ConvNeXt-UNet:
  # the decoder still runs its path from the backbone's L5.
  config = tiny.config('convnext_unet', min_level=3, max_level=3)
  model = tiny.build(config)
  assert sorted(model.decoder.output_specs) == ['3', '4', '5']
  outputs = model(tf.zeros([1, 64, 64, 3]), training=False)
  assert sorted(outputs[keys.CLASS_HEATMAP_LOGITS]) == ['3']
  assert sorted(outputs[keys.CENTER_EMBEDDINGS]) == ['3']
  assert outputs[keys.MASK_LOGITS].shape == (1, 16, 16, tiny.num_instances)


@pytest.mark.parametrize('num_thing_classes', [0, 6])
def test_factory_rejects_bad_thing_count(tiny, num_thing_classes):
  config = tiny.config('deeplabv3plus', num_thing_classes=num_thing_classes)
  with pytest.raises(ValueError, match=r'num_thing_classes \(\d\) must lie '
                     r'in \(0, num_classes = 5\]'):
    tiny.build(config)


def _decoder_from_l4(config):
  """ConvNeXt-UNet outputs L4..L7 only; the heads still start at L3."""
  unet = config.decoder.convnext_unet
  unet.min_level, unet.num_blocks, unet.num_filters = 4, [1, 1], [16, 16]


@pytest.mark.parametrize('decoder, overrides, edit, missing', [
    ('deeplabv3plus', {'max_level': 4}, None, r"\['4'\]"),
    ('convnext_unet', {'mask_feature_levels': [2, 3]}, None, r"\['2'\]"),
    ('convnext_unet', {'mask_feature_levels': [4]}, _decoder_from_l4,
     r"\['3'\]"),
])
def test_factory_rejects_heads_on_missing_levels(tiny, decoder, overrides,
                                                 edit, missing):
  config = tiny.config(decoder, **overrides)
  if edit:
    edit(config)
  with pytest.raises(ValueError, match=f'outputs levels .* but the heads '
                     f'need {missing}'):
    tiny.build(config)


def test_factory_rejects_unequal_head_channels(tiny):
  config = tiny.config('convnext_unet')
  config.decoder.convnext_unet.num_filters = [32, 16, 16]
  config.decoder.convnext_unet.output_num_filters = -1  # never project
  with pytest.raises(ValueError, match=r'equal channels .* \[16, 32\]'):
    tiny.build(config)


@pytest.mark.parametrize('num_filters, output_num_filters, expected', [
    ([32, 24, 16], 0, 8),    # D differ: projected to the head width (8)
    ([16, 16, 16], 0, 16),   # D equal: no projection
    ([16, 16, 16], 12, 12),  # explicit width
])
def test_factory_projects_unequal_unet_widths(tiny, num_filters,
                                              output_num_filters, expected):
  config = tiny.config('convnext_unet')
  unet = config.decoder.convnext_unet
  unet.num_blocks, unet.num_filters = [2, 0, 1], num_filters
  unet.output_num_filters = output_num_filters
  model = tiny.build(config)
  assert {s[-1] for s in model.decoder.output_specs.values()} == {expected}
  projections = sorted(l.name for l in model.decoder.layers
                       if l.name.startswith('output_l'))
  assert projections == (['output_l3', 'output_l4', 'output_l5']
                         if expected != 16 else [])
  outputs = model(tf.zeros([1, 64, 96, 3]), training=False)
  assert outputs[keys.MASK_LOGITS].shape == (1, 16, 24, tiny.num_instances)


@pytest.mark.parametrize('decoder', ['convnext_unet', 'bifpn',
                                     'deeplabv3plus'])
def test_recipe_weight_decay_applies_to_kernels_only(tiny, decoder):
  """The recipes' AdamW decays exactly the conv / dense kernels.

  Upstream MaskConver decays kernels only; the exclude list of
  `adamw_cosine` leaves out norms, biases, layer scales, the class
  embedding table and the BiFPN fusion weights.
  """
  config = tiny.config('deeplabv3plus' if decoder == 'deeplabv3plus'
                       else 'convnext_unet')
  if decoder == 'bifpn':
    config.decoder.type = 'bifpn'
    config.decoder.bifpn.num_filters, config.decoder.bifpn.num_repeats = 16, 1
  model = tiny.build(config)
  optimizer_config = exp_factory.get_exp_config(
      'maskconver_r50_coco').trainer.optimizer_config
  optimizer = optimization.OptimizerFactory(optimizer_config).build_optimizer(
      1e-3)
  optimizer = getattr(optimizer, '_optimizer', optimizer)  # inside the EMA
  decayed = {v.name for v in model.trainable_variables
             if optimizer._do_use_weight_decay(v.name)}  # pylint: disable=protected-access
  kernels = {v.name for v in model.trainable_variables
             if v.name.endswith('kernel:0')}
  assert decayed == kernels
  not_decayed = {v.name.rsplit('/', 1)[-1]
                 for v in model.trainable_variables} - {
                     n.rsplit('/', 1)[-1] for n in kernels}
  expected = {'bias:0', 'gamma:0', 'beta:0'}
  if decoder == 'convnext_unet':
    expected |= {'layer_scale:0'}
  if decoder == 'bifpn':
    expected |= {'fusion_weights:0'}
  expected |= {'embeddings:0'}  # the class embedding table
  assert not_decayed == expected
