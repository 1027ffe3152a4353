"""Tests of MaskConverModel: both call modes, gradients, SavedModel export."""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from maskconver import keys

_UNET_LEVELS = ['3', '4', '5', '6', '7']


def _images(height, width, batch=2, seed=0):
  return tf.random.stateless_normal([batch, height, width, 3], seed=[seed, 1])


def _num_cells(height, width, levels):
  return sum(math.ceil(height / 2**int(l)) * math.ceil(width / 2**int(l))
             for l in levels)


def _level_shapes(outputs, key):
  return {l: tuple(v.shape) for l, v in outputs[key].items()}


# --- Shapes, both modes -------------------------------------------------------


@pytest.mark.parametrize('height, width', [(64, 64), (96, 136)])
def test_unet_model_shapes_in_training_mode(tiny, tiny_unet_model, height,
                                            width):
  cells = _num_cells(height, width, _UNET_LEVELS)
  # N = 4 given centers (not K): one on L3, one on L7 (the last cell), two
  # on the same L4 cell with different classes.
  l4_cell = _num_cells(height, width, ['3'])
  indices = tf.constant([[0, cells - 1, l4_cell, l4_cell]] * 2)
  classes = tf.constant([[0, 4, 1, 2]] * 2)
  outputs = tiny_unet_model(_images(height, width), indices, classes,
                            training=True)
  h, w = height // 4, width // 4  # 64x64 -> 16x16; 96x136 -> 24x34
  assert outputs[keys.MASK_LOGITS].shape == (2, h, w, 4)
  assert outputs[keys.MASK_FEATURES].shape == (2, h, w, tiny.embedding_size)
  expected = {
      l: (2, math.ceil(height / 2**int(l)), math.ceil(width / 2**int(l)))
      for l in _UNET_LEVELS
  }
  assert _level_shapes(outputs, keys.CLASS_HEATMAP_LOGITS) == {
      l: s + (tiny.num_classes,) for l, s in expected.items()}
  assert _level_shapes(outputs, keys.CENTER_EMBEDDINGS) == {
      l: s + (tiny.embedding_size,) for l, s in expected.items()}
  assert keys.DETECTED_CLASSES not in outputs
  assert keys.DETECTED_SCORES not in outputs
  # The two centers on one cell differ only by their class embedding.
  masks = outputs[keys.MASK_LOGITS].numpy()
  assert np.abs(masks[..., 2] - masks[..., 3]).max() > 0


@pytest.mark.parametrize('model_name, height, width', [
    ('tiny_unet_model', 64, 64),
    ('tiny_unet_model', 96, 136),
    ('tiny_deeplab_model', 64, 64),
    ('tiny_deeplab_model', 96, 128),
    ('tiny_deeplab_model', 96, 136),
])
def test_model_shapes_in_inference_mode(request, tiny, model_name, height,
                                        width):
  model = request.getfixturevalue(model_name)
  levels = _UNET_LEVELS if model_name == 'tiny_unet_model' else ['3']
  outputs = model(_images(height, width), training=False)
  k = tiny.num_instances
  assert outputs[keys.MASK_LOGITS].shape == (2, height // 4, width // 4, k)
  assert sorted(outputs[keys.CLASS_HEATMAP_LOGITS]) == levels
  for key, dtype in [(keys.DETECTED_CLASSES, tf.int32),
                     (keys.DETECTED_SCORES, tf.float32),
                     (keys.DETECTED_CENTER_INDICES, tf.int32)]:
    assert outputs[key].shape == (2, k), key
    assert outputs[key].dtype == dtype, key
  scores = outputs[keys.DETECTED_SCORES].numpy()
  assert (np.diff(scores, axis=1) <= 0).all()
  assert ((scores > 0) & (scores < 1)).all()
  classes = outputs[keys.DETECTED_CLASSES].numpy()
  assert ((classes >= 0) & (classes < tiny.num_classes)).all()
  indices = outputs[keys.DETECTED_CENTER_INDICES].numpy()
  assert ((indices >= 0) &
          (indices < _num_cells(height, width, levels))).all()


def test_detected_scores_are_the_heatmap_at_the_detected_cells(
    tiny, tiny_unet_model):
  outputs = tiny_unet_model(_images(64, 64, seed=3), training=False)
  flat = tf.concat([
      tf.reshape(outputs[keys.CLASS_HEATMAP_LOGITS][l],
                 [2, -1, tiny.num_classes])
      for l in _UNET_LEVELS
  ], axis=1).numpy()
  indices = outputs[keys.DETECTED_CENTER_INDICES].numpy()
  classes = outputs[keys.DETECTED_CLASSES].numpy()
  for b in range(2):
    logits = flat[b, indices[b], classes[b]]
    np.testing.assert_allclose(outputs[keys.DETECTED_SCORES].numpy()[b],
                               1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_inference_masks_equal_masks_of_the_detected_centers(
    tiny_deeplab_model):
  images = _images(64, 64, seed=4)
  selected = tiny_deeplab_model(images, training=False)
  given = tiny_deeplab_model(images, selected[keys.DETECTED_CENTER_INDICES],
                             selected[keys.DETECTED_CLASSES], training=False)
  np.testing.assert_allclose(given[keys.MASK_LOGITS].numpy(),
                             selected[keys.MASK_LOGITS].numpy(), rtol=1e-6,
                             atol=1e-6)


def test_model_requires_indices_and_classes_together(tiny_deeplab_model):
  images = _images(64, 64, batch=1)
  with pytest.raises(ValueError, match='classes given without'):
    tiny_deeplab_model(images, classes=tf.constant([[1]]))
  with pytest.raises(ValueError, match='center_indices given without'):
    tiny_deeplab_model(images, center_indices=tf.constant([[1]]))


def test_checkpoint_items(tiny_unet_model):
  items = tiny_unet_model.checkpoint_items
  assert sorted(items) == ['backbone', 'decoder']
  assert items['backbone'] is tiny_unet_model.backbone
  assert items['decoder'] is tiny_unet_model.decoder


def test_no_two_kernels_start_identical(tiny_unet_model):
  """Each kernel draws its own initial values (no shared initializer)."""
  seen = {}
  for variable in tiny_unet_model.trainable_variables:
    value = variable.numpy()
    if value.size < 4 or (value == value.flat[0]).all():
      continue  # biases, norms and layer scales start constant
    assert value.tobytes() not in seen, (variable.name,
                                         seen.get(value.tobytes()))
    seen[value.tobytes()] = variable.name


# --- Gradients -------------------------------------------------------------


@pytest.mark.parametrize('model_name', ['tiny_unet_model',
                                        'tiny_deeplab_model'])
def test_every_trainable_variable_gets_a_gradient(request, model_name):
  model = request.getfixturevalue(model_name)
  images = _images(64, 64, seed=5)  # batch 2: pooled batch norms vary
  if model_name == 'tiny_unet_model':
    indices = tf.constant([[0, 70, 84, 85], [5, 64, 80, 84]])  # L3..L7
  else:
    indices = tf.constant([[0, 9, 63, 63], [1, 2, 3, 4]])
  classes = tf.constant([[0, 1, 2, 4], [3, 3, 0, 1]])
  with tf.GradientTape() as tape:
    outputs = model(images, indices, classes, training=True)
    loss = tf.add_n([
        tf.reduce_sum(v) for v in tf.nest.flatten(
            [outputs[keys.CLASS_HEATMAP_LOGITS],
             outputs[keys.CENTER_EMBEDDINGS], outputs[keys.MASK_LOGITS]])
    ])
  variables = model.trainable_variables
  grads = tape.gradient(loss, variables)
  assert len(variables) > 50
  missing = [v.name for v, g in zip(variables, grads) if g is None]
  assert not missing
  zero = [v.name for v, g in zip(variables, grads)
          if not np.any(tf.convert_to_tensor(g).numpy())]
  assert not zero


# --- Export ----------------------------------------------------------------


def _max_difference(a, b):
  a, b = tf.nest.flatten(a), tf.nest.flatten(b)
  assert len(a) == len(b)
  return max(float(np.max(np.abs(x.numpy().astype(np.float64) -
                                  y.numpy().astype(np.float64))))
             for x, y in zip(a, b))


def test_saved_model_round_trip_in_both_modes(tiny_unet_model, tmp_path):
  model = tiny_unet_model
  module = tf.Module()
  module.model_variables = model.variables
  module.detect = tf.function(
      lambda images: model(images, training=False),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  module.masks_of = tf.function(
      lambda images, indices, classes: model(images, indices, classes,
                                             training=True),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                       tf.TensorSpec([None, None], tf.int32),
                       tf.TensorSpec([None, None], tf.int32)])
  path = os.fspath(tmp_path / 'saved_model')
  tf.saved_model.save(module, path)
  loaded = tf.saved_model.load(path)

  images = _images(96, 136, seed=6)
  eager = model(images, training=False)
  restored = loaded.detect(images)
  assert sorted(restored) == sorted(eager)
  assert _max_difference(restored, eager) <= 1e-6
  np.testing.assert_array_equal(
      restored[keys.DETECTED_CENTER_INDICES].numpy(),
      eager[keys.DETECTED_CENTER_INDICES].numpy())

  # Training mode uses batch statistics, so both give the same outputs for
  # the same batch (each also moves its own copy of the moving averages).
  indices = tf.constant([[0, 280], [17, 17]])  # 281 cells: 204+54+15+6+2
  classes = tf.constant([[1, 2], [0, 4]])
  eager = model(images, indices, classes, training=True)
  restored = loaded.masks_of(images, indices, classes)
  assert sorted(restored) == sorted(eager)
  assert restored[keys.MASK_LOGITS].shape == (2, 24, 34, 2)
  assert _max_difference(restored, eager) <= 1e-6


def test_keras_save_traces_both_training_values(tiny, tiny_deeplab_model,
                                                tmp_path):
  """tf_keras' own SavedModel export traces call() without ground truth."""
  model = tiny_deeplab_model
  path = os.fspath(tmp_path / 'keras_model')
  model.save(path, save_format='tf')
  loaded = tf.saved_model.load(path)
  # The factory's build call at 256x256 set the saved input signature.
  images = _images(256, 256, batch=1, seed=7)
  eager = model(images, training=False)
  restored = loaded(images, None, None, False)
  assert _max_difference(restored, eager) <= 1e-6
  assert restored[keys.MASK_LOGITS].shape == (1, 64, 64,
                                                 tiny.num_instances)
  # The training=True trace selects centers too (no ground truth needed).
  restored = loaded(images, None, None, True)
  eager = model(images, training=True)
  assert keys.DETECTED_CENTER_INDICES in restored
  assert _max_difference(restored, eager) <= 1e-5


# --- Ablation decoders: BiFPN, ConvNeXt-UNet with unequal widths -------------


def _ablation_config(tiny, name):
  config = tiny.config('convnext_unet')
  if name == 'bifpn':
    config.decoder.type = 'bifpn'
    config.decoder.bifpn.num_filters = 16
    config.decoder.bifpn.num_repeats = 1
  else:  # ConvNeXt-UNet, N = [2, 0, 1], D = [24, 16, 8]: projected to 8.
    unet = config.decoder.convnext_unet
    unet.num_blocks, unet.num_filters = [2, 0, 1], [24, 16, 8]
  return config


@pytest.fixture(scope='module', params=['bifpn', 'unet_unequal_widths'])
def ablation_model(request, tiny):
  return tiny.build(_ablation_config(tiny, request.param))


@pytest.mark.parametrize('height, width', [(64, 64), (96, 136)])
def test_ablation_decoder_models_at_two_sizes(tiny, ablation_model, height,
                                              width):
  outputs = ablation_model(_images(height, width), training=False)
  assert outputs[keys.MASK_LOGITS].shape == (2, height // 4, width // 4,
                                             tiny.num_instances)
  assert _level_shapes(outputs, keys.CLASS_HEATMAP_LOGITS) == {
      l: (2, math.ceil(height / 2**int(l)), math.ceil(width / 2**int(l)),
          tiny.num_classes) for l in _UNET_LEVELS}


def test_ablation_decoder_models_give_every_variable_a_gradient(
    ablation_model):
  images = _images(64, 64, seed=11)
  indices = tf.constant([[0, 70, 84, 85], [5, 64, 80, 84]])  # L3..L7
  classes = tf.constant([[0, 1, 2, 4], [3, 3, 0, 1]])
  with tf.GradientTape() as tape:
    outputs = ablation_model(images, indices, classes, training=True)
    loss = tf.add_n([
        tf.reduce_sum(v) for v in tf.nest.flatten(
            [outputs[keys.CLASS_HEATMAP_LOGITS],
             outputs[keys.CENTER_EMBEDDINGS], outputs[keys.MASK_LOGITS]])
    ])
  variables = ablation_model.trainable_variables
  grads = tape.gradient(loss, variables)
  zero = [v.name for v, g in zip(variables, grads)
          if g is None or not np.any(tf.convert_to_tensor(g).numpy())]
  assert not zero


def test_ablation_decoder_models_save_and_reload_equal(ablation_model,
                                                       tmp_path):
  module = tf.Module()
  module.model_variables = ablation_model.variables
  module.detect = tf.function(
      lambda images: ablation_model(images, training=False),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  path = os.fspath(tmp_path / 'saved_model')
  tf.saved_model.save(module, path)
  loaded = tf.saved_model.load(path)
  images = _images(96, 136, seed=12)
  eager = ablation_model(images, training=False)
  restored = loaded.detect(images)
  assert sorted(restored) == sorted(eager)
  # The same graph of float32 ops: equal up to rounding.
  assert _max_difference(restored, eager) <= 1e-6
  np.testing.assert_array_equal(
      restored[keys.DETECTED_CENTER_INDICES].numpy(),
      eager[keys.DETECTED_CENTER_INDICES].numpy())
