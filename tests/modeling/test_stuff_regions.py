"""Stuff as regions (Table 7): pooling, targets, the model path, export, XLA."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from maskconver import keys
from maskconver.modeling import factory
from maskconver.modeling.layers import stuff_regions


# --- Layers and target ops, by hand ------------------------------------------


def test_stuff_region_pooling_by_hand():
  # 2x2 map, embeddings 1, 2, 3, 4 (C = 1); region 0 covers the top row
  # with weights 1 and 3, region 1 is empty.
  embeddings = tf.constant([[[[1.0], [2.0]], [[3.0], [4.0]]]])
  regions = np.zeros([1, 2, 2, 2], np.float32)
  regions[0, 0, :, 0] = [1.0, 3.0]
  pooled = stuff_regions.StuffRegionPooling(epsilon=0.0)(
      tf.constant(regions), embeddings)
  # (1 * 1 + 3 * 2) / 4 = 1.75; the empty region gives 0 / (0 + eps) = 0
  # with the default eps.
  assert pooled.shape == (1, 2, 1)
  np.testing.assert_allclose(pooled.numpy()[0, 0], [1.75])
  pooled = stuff_regions.StuffRegionPooling()(tf.constant(regions),
                                              embeddings)
  np.testing.assert_allclose(pooled.numpy()[0], [[1.75], [0.0]], rtol=1e-5)


def test_masks_to_level_gives_cell_coverage():
  masks = np.zeros([1, 1, 4, 6], np.uint8)
  masks[0, 0, :2, :3] = 1   # top-left 2x3 block
  masks[0, 0, 2, 5] = 1     # one pixel
  level = stuff_regions.masks_to_level(tf.constant(masks), 2).numpy()
  assert level.shape == (1, 2, 3, 1)
  np.testing.assert_allclose(level[0, ..., 0],
                             [[1.0, 0.5, 0.0], [0.0, 0.0, 0.25]])
  # Odd size: 'SAME' pooling averages the pixels a border cell has.
  odd = stuff_regions.masks_to_level(tf.ones([1, 1, 3, 3]), 2).numpy()
  np.testing.assert_allclose(odd[0, ..., 0], np.ones([2, 2]))


def test_stuff_region_targets_by_hand():
  # 2 thing + 2 stuff classes; targets: a thing (class 1), stuff class 2
  # (index 0) on the left half, stuff class 3 (index 1) on the right half,
  # and a padded target that would cover everything.
  masks = np.zeros([1, 4, 2, 4], np.uint8)
  masks[0, 0, :, 1] = 1
  masks[0, 1, :, :2] = 1
  masks[0, 2, :, 2:] = 1
  masks[0, 3] = 1
  weights = np.ones([1, 2, 4], np.float32)
  weights[0, :, 3] = 0.0  # void column
  targets, cell_weights = stuff_regions.stuff_region_targets(
      tf.constant(masks), tf.constant([[1, 2, 3, 2]]),
      tf.constant([[True, False, False, False]]),
      tf.constant([[1.0, 1.0, 1.0, 0.0]]), tf.constant(weights),
      num_thing_classes=2, num_stuff_classes=2, factor=2)
  assert targets.shape == (1, 1, 2, 2)
  np.testing.assert_allclose(targets.numpy()[0, 0], [[1, 0], [0, 1]])
  np.testing.assert_allclose(cell_weights.numpy()[0], [[1.0, 0.5]])


def test_stuff_region_pooling_round_trip(assert_round_trip):
  regions = tf.random.stateless_uniform([1, 3, 3, 2], [1, 2])
  embeddings = tf.random.stateless_normal([1, 3, 3, 4], [3, 4])
  assert_round_trip(stuff_regions.StuffRegionPooling(epsilon=1e-3),
                    lambda layer: layer(regions, embeddings))


@pytest.mark.parametrize('dtype', [tf.float32, tf.bfloat16])
def test_pooling_and_targets_compile_with_xla(dtype):
  masks = tf.cast(tf.random.stateless_uniform([2, 3, 8, 12], [5, 6]) > 0.5,
                  tf.uint8)
  embeddings = tf.cast(tf.random.stateless_normal([2, 4, 6, 5], [7, 8]),
                       dtype)

  def run(masks, embeddings):
    regions = stuff_regions.masks_to_level(masks, 2)
    targets, weights = stuff_regions.stuff_region_targets(
        masks, tf.constant([[0, 1, 2]] * 2), tf.constant([[True, False,
                                                            False]] * 2),
        tf.ones([2, 3]), tf.ones([2, 8, 12]), 1, 2, 2)
    return (stuff_regions.StuffRegionPooling()(regions, embeddings),
            targets, weights)

  compiled = tf.function(run, jit_compile=True)(masks, embeddings)
  eager = run(masks, embeddings)
  for got, want in zip(compiled, eager):
    # Sums of at most 24 products: float32 1e-5; bfloat16 2**-7 relative.
    tolerance = 1e-5 if dtype == tf.float32 else 1e-2
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(),
                               tf.cast(want, tf.float32).numpy(),
                               rtol=tolerance, atol=tolerance)


# --- The model path ------------------------------------------------------------


def _region_config(tiny, decoder='convnext_unet'):
  config = tiny.config(decoder)
  config.stuff_representation = 'region'
  return config


@pytest.fixture(scope='module')
def region_model(tiny):
  return tiny.build(_region_config(tiny))


@pytest.mark.parametrize('height, width', [(64, 64), (96, 136)])
def test_region_model_inference_appends_one_mask_per_stuff_class(
    tiny, region_model, height, width):
  outputs = region_model(
      tf.random.stateless_normal([2, height, width, 3], [height, 1]),
      training=False)
  k, things = tiny.num_instances, tiny.num_thing_classes
  stuff = tiny.num_classes - things
  assert outputs[keys.MASK_LOGITS].shape == (2, height // 4, width // 4,
                                             k + stuff)
  assert outputs[keys.STUFF_REGION_LOGITS].shape == (
      2, -(-height // 8), -(-width // 8), stuff)
  for level, logits in outputs[keys.CLASS_HEATMAP_LOGITS].items():
    assert logits.shape[-1] == things, level  # centers for things only
  classes = outputs[keys.DETECTED_CLASSES].numpy()
  assert (classes[:, :k] < things).all()
  assert (classes[:, k:] == np.arange(things, tiny.num_classes)).all()
  np.testing.assert_array_equal(
      outputs[keys.DETECTED_CENTER_INDICES].numpy()[:, k:], -1)
  # Stuff scores: the largest region probability.
  region = tf.sigmoid(outputs[keys.STUFF_REGION_LOGITS])
  np.testing.assert_allclose(outputs[keys.DETECTED_SCORES].numpy()[:, k:],
                             tf.reduce_max(region, axis=[1, 2]).numpy(),
                             rtol=1e-6)


def test_region_model_stuff_mask_comes_from_the_pooled_region(
    tiny, region_model):
  images = tf.random.stateless_normal([1, 64, 64, 3], [9, 9])
  # Target 0: a thing at L3 cell 5; target 1: stuff class 4 on the left
  # half of the image.
  masks = np.zeros([1, 2, 16, 16], np.uint8)
  masks[0, 1, :, :8] = 1
  outputs = region_model(images, tf.constant([[5, 0]]),
                         tf.constant([[1, 4]]), training=False,
                         is_thing=tf.constant([[True, False]]),
                         target_masks=tf.constant(masks))
  embeddings = outputs[keys.CENTER_EMBEDDINGS]['3'].numpy()[0]  # [8, 8, C]
  pooled = embeddings[:, :4].mean(axis=(0, 1))  # left half of L3
  generator = region_model.generator
  stuff = generator.embed(tf.constant(pooled[None, None]),
                          tf.constant([[4]])).numpy()[0, 0]
  thing = generator(outputs[keys.CENTER_EMBEDDINGS], tf.constant([[5]]),
                    tf.constant([[1]])).numpy()[0, 0]
  features = outputs[keys.MASK_FEATURES].numpy()[0]
  # float32 dot products of 8 terms: 1e-5 relative.
  np.testing.assert_allclose(outputs[keys.MASK_LOGITS].numpy()[0, ..., 1],
                             features @ stuff, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(outputs[keys.MASK_LOGITS].numpy()[0, ..., 0],
                             features @ thing, rtol=1e-5, atol=1e-6)


def test_region_model_needs_targets_masks_in_training(region_model):
  images = tf.zeros([1, 64, 64, 3])
  with pytest.raises(ValueError, match='needs is_thing and target_masks'):
    region_model(images, tf.constant([[5]]), tf.constant([[1]]),
                 training=True)


def test_region_model_gives_every_variable_a_gradient(region_model):
  images = tf.random.stateless_normal([2, 64, 64, 3], [10, 1])
  masks = np.zeros([2, 3, 16, 16], np.uint8)
  masks[:, 1, :, :8] = 1
  masks[:, 2, :, 8:] = 1
  with tf.GradientTape() as tape:
    outputs = region_model(
        images, tf.constant([[0, 70, 84]] * 2), tf.constant([[0, 3, 4]] * 2),
        training=True, is_thing=tf.constant([[True, False, False]] * 2),
        target_masks=tf.constant(masks))
    loss = tf.add_n([tf.reduce_sum(v) for v in tf.nest.flatten(
        [outputs[keys.CLASS_HEATMAP_LOGITS], outputs[keys.CENTER_EMBEDDINGS],
         outputs[keys.STUFF_REGION_LOGITS], outputs[keys.MASK_LOGITS]])])
  variables = region_model.trainable_variables
  grads = tape.gradient(loss, variables)
  zero = [v.name for v, g in zip(variables, grads)
          if g is None or not np.any(tf.convert_to_tensor(g).numpy())]
  assert not zero
  assert any('stuff_region_head' in v.name for v in variables)


def test_region_model_merges_into_stuff_segments(tiny, region_model):
  config = _region_config(tiny)
  config.postprocessor.score_threshold = 0.0
  postprocessor = factory.build_panoptic_postprocessor(config)
  outputs = region_model(tf.random.stateless_normal([1, 64, 64, 3], [11, 1]),
                         training=False)
  panoptic = postprocessor(outputs, [64, 64])
  k = tiny.num_instances
  stuff = tiny.num_classes - tiny.num_thing_classes
  assert panoptic[keys.SEGMENT_CLASSES_OUT].shape == (1, k + stuff)
  segments = panoptic[keys.SEGMENT_CLASSES_OUT].numpy()[0]
  is_thing = panoptic[keys.SEGMENT_IS_THING_OUT].numpy()[0]
  kept = segments >= 0
  np.testing.assert_array_equal(is_thing[kept],
                                segments[kept] < tiny.num_thing_classes)


def test_region_model_saves_and_reloads_equal(region_model, tmp_path):
  module = tf.Module()
  module.model_variables = region_model.variables
  module.detect = tf.function(
      lambda images: region_model(images, training=False),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  path = os.fspath(tmp_path / 'saved_model')
  tf.saved_model.save(module, path)
  loaded = tf.saved_model.load(path)
  images = tf.random.stateless_normal([2, 96, 136, 3], [12, 1])
  eager = region_model(images, training=False)
  restored = loaded.detect(images)
  assert sorted(restored) == sorted(eager)
  for key in eager:
    for got, want in zip(tf.nest.flatten(restored[key]),
                         tf.nest.flatten(eager[key])):
      # The same float32 graph: equal up to rounding.
      np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5,
                                 atol=1e-6, err_msg=key)


def test_region_config_errors(tiny):
  config = tiny.config('deeplabv3plus')
  config.stuff_representation = 'mask'
  with pytest.raises(ValueError, match='stuff_representation'):
    tiny.build(config)
  config.stuff_representation = 'region'
  config.num_thing_classes = config.num_classes
  with pytest.raises(ValueError, match='needs stuff classes'):
    tiny.build(config)


@pytest.mark.slow  # 30-70 s per dtype on 2 cores: XLA compiles the model
@pytest.mark.parametrize('policy', ['float32', 'mixed_bfloat16'])
def test_region_model_forward_and_gradient_compile_with_xla(tiny, policy):
  tf_keras.mixed_precision.set_global_policy(policy)
  try:
    model = tiny.build(_region_config(tiny, 'deeplabv3plus'))
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  images = tf.random.stateless_normal([2, 64, 64, 3], [13, 1])
  masks = np.zeros([2, 2, 16, 16], np.uint8)
  masks[:, 1, 4:, :] = 1
  # Inference first, in both runs: the training calls move the batch-norm
  # statistics that inference uses.
  eager_detections = model(images, training=False)

  def step(images):
    detections = model(images, training=False)
    with tf.GradientTape() as tape:
      outputs = model(images, tf.constant([[3, 9]] * 2),
                      tf.constant([[0, 4]] * 2), training=True,
                      is_thing=tf.constant([[True, False]] * 2),
                      target_masks=tf.constant(masks))
      loss = tf.add_n([tf.reduce_sum(tf.cast(v, tf.float32))
                       for v in tf.nest.flatten(
                           [outputs[keys.CLASS_HEATMAP_LOGITS],
                            outputs[keys.STUFF_REGION_LOGITS],
                            outputs[keys.MASK_LOGITS]])])
    return loss, tape.gradient(loss, model.trainable_variables), detections

  loss, grads, detections = tf.function(step, jit_compile=True)(images)
  eager_loss, _, _ = step(images)
  assert all(g is not None for g in grads)
  # float32: reordered sums, 1e-4 relative; bfloat16 8 significant bits,
  # summed over 2 x 16 x 16 x 2 + 2 x 8 x 8 x 2 values: 5% of the scale.
  rtol = 1e-4 if policy == 'float32' else 5e-2
  assert abs(float(loss) - float(eager_loss)) <= rtol * (
      abs(float(eager_loss)) + 1.0)
  k = tiny.num_instances
  assert detections[keys.MASK_LOGITS].shape == (2, 16, 16, k + 2)
  np.testing.assert_array_equal(
      detections[keys.DETECTED_CLASSES].numpy()[:, k:], [[3, 4]] * 2)
  # A fresh model's thing logits nearly tie, so their order may differ
  # between the compiled and eager runs; the scores may not.
  np.testing.assert_allclose(
      np.sort(detections[keys.DETECTED_SCORES].numpy(), axis=1),
      np.sort(tf.cast(eager_detections[keys.DETECTED_SCORES],
                      tf.float32).numpy(), axis=1), rtol=rtol, atol=rtol)
