"""EMA weights: restore, export and the checkpoint predictor use them.

The checkpoints are written the way Model Garden's trainer writes them: the
task's optimizer (AdamW wrapped in `ExponentialMovingAverage`, from the
experiment's `optimizer_config.ema`), its `shadow_copy` of every model
variable, a few optimizer steps, then `tf.train.Checkpoint(global_step,
model, optimizer)` saved by a CheckpointManager into the model_dir, and the `EMACheckpointing` eval
action into `model_dir/ema_checkpoints/`.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import actions
from official.core import base_task
from official.modeling import optimization

from maskconver import experiment_loading
from maskconver import keys
from maskconver.inference import checkpoint_predictor
from maskconver.modeling import factory
from maskconver.serving import export_saved_model

INPUT_SIZE = 32
OVERRIDE = {
    'task': {'model': {
        'input_size': [INPUT_SIZE, INPUT_SIZE, 3],
        'embedding_size': 8, 'num_instances': 6,
        'min_level': 3, 'max_level': 3, 'mask_feature_levels': [3],
        'backbone': {'resnet': {'model_id': 10, 'depth_multiplier': 0.25}},
        'decoder': {'type': 'identity'},
        'center_head': {'num_filters': 8, 'num_blocks': 1},
        'mask_head': {'num_filters': 8, 'num_blocks': 1},
        'postprocessor': {'score_threshold': 0.0}}},
    'trainer': {'optimizer_config': {'ema': {
        'average_decay': 0.9, 'dynamic_decay': False,
        'trainable_weights_only': False}}},
}


def _build(params):
  return factory.build_maskconver_model(
      tf_keras.layers.InputSpec(shape=[None, INPUT_SIZE, INPUT_SIZE, 3]),
      params.task.model)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A model_dir with ckpt-3 and ema_checkpoints/average_weights-3.

  Returns (params, model_dir, raw weights, average weights), the weights as
  lists of numpy arrays in `model.variables` order.
  """
  root = tmp_path_factory.mktemp('ema')
  params = experiment_loading.load_experiment(
      'maskconver_synthetic', (), json.dumps(OVERRIDE))
  tf_keras.utils.set_random_seed(3)
  # The trainer runs under a distribution strategy (swapping the weights
  # requires one); the quickstart's is a single-CPU one.
  strategy = tf.distribute.OneDeviceStrategy('/cpu:0')
  with strategy.scope():
    model = _build(params)
    optimizer = base_task.Task.create_optimizer(
        params.trainer.optimizer_config, params.runtime)
    assert isinstance(optimizer, optimization.ExponentialMovingAverage)
    optimizer.shadow_copy(model)
    global_step = tf.Variable(3, dtype=tf.int64)
  rng = np.random.default_rng(0)
  for _ in range(3):
    grads = [tf.constant(rng.normal(size=v.shape).astype(np.float32))
             for v in model.trainable_variables]
    strategy.run(lambda g: optimizer.apply_gradients(
        zip(g, model.trainable_variables)), args=(grads,))
  checkpoint = tf.train.Checkpoint(global_step=global_step, model=model,
                                   optimizer=optimizer)
  model_dir = str(root / 'model_dir')
  tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=1).save(
      checkpoint_number=global_step)
  raw = [v.numpy() for v in model.variables]
  average = [optimizer.get_slot(v, 'average').numpy()
             for v in model.variables]
  with strategy.scope():
    actions.EMACheckpointing(model_dir, optimizer, checkpoint)(None)
  return params, model_dir, raw, average


def _assert_weights(model, expected):
  # The EMA checkpoint is saved between two swaps computed as a += b,
  # b = a - b, a -= b: float32 rounding there changes the last bit or two,
  # hence 1e-6 relative (3e-7 measured) rather than equality.
  for variable, value in zip(model.variables, expected):
    np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6,
                               atol=1e-9, err_msg=variable.name)


def test_fixture_has_distinct_raw_and_average_weights(trained):
  _, model_dir, raw, average = trained
  # 3 steps at a fixed decay 0.9 from zeros: the averages are about
  # (1 - 0.9**3) = 0.27 times the weights (the warm-up learning rate hardly
  # moves them); batch norm variances (1.0) average to ~0.27.
  ratios = [a / r for r, a in zip(raw, average) if r.size > 4
            and np.abs(r).min() > 0.5]
  assert ratios and all(np.allclose(x, 0.271, atol=0.01) for x in ratios)
  assert os.path.isfile(os.path.join(model_dir, 'ema_checkpoints',
                                     'average_weights-3.index'))


@pytest.mark.parametrize('subdir, use_ema, expect_ema', [
    ('', True, True), ('', False, False),
    ('ema_checkpoints', True, True), ('ema_checkpoints', False, False)])
def test_restore_picks_the_asked_weights_from_both_checkpoint_kinds(
    trained, subdir, use_ema, expect_ema):
  params, model_dir, raw, average = trained
  model = _build(params)
  restored = experiment_loading.restore_model_weights(
      model, os.path.join(model_dir, subdir), use_ema=use_ema)
  assert restored.ema is expect_ema
  _assert_weights(model, average if expect_ema else raw)
  name = 'average_weights-3' if subdir else 'ckpt-3'
  assert restored.checkpoint_path.endswith(name)
  assert restored.description.startswith(
      'EMA weights of' if expect_ema else 'raw weights of')


def test_restore_without_ema_says_so(trained, tmp_path):
  params, _, raw, _ = trained
  model = _build(params)
  model.set_weights(raw)
  prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / 'ckpt'))
  fresh = _build(params)
  restored = experiment_loading.restore_model_weights(fresh, prefix)
  assert not restored.ema
  assert restored.description == (
      f'raw weights of {prefix} (it has no EMA weights)')
  _assert_weights(fresh, raw)


def test_restore_errors_name_the_flag(trained, tmp_path):
  params, model_dir, _, _ = trained
  with pytest.raises(ValueError, match='--checkpoint_path=.*no checkpoint'):
    experiment_loading.restore_model_weights(_build(params), str(tmp_path))
  # Another architecture: wider heads.
  other = experiment_loading.load_experiment(
      'maskconver_synthetic', (), json.dumps(OVERRIDE))
  other.task.model.center_head.num_filters = 16
  with pytest.raises(ValueError, match='--model_dir=.*does not match'):
    experiment_loading.restore_model_weights(_build(other), model_dir,
                                             flag_name='--model_dir')


def test_export_holds_the_ema_weights(trained, tmp_path):
  """The exported network equals the EMA weights' forward pass, not the raw
  weights'. (--nouse_ema exports the raw ones: the restore tests above.)"""
  params, model_dir, raw, average = trained
  image = tf.random.stateless_normal([1, INPUT_SIZE, INPUT_SIZE, 3], [4, 5])
  expected = {}
  for name, weights in (('ema', average), ('raw', raw)):
    model = _build(params)
    model.set_weights(weights)
    expected[name] = model(image, training=False)[keys.MASK_LOGITS].numpy()
  # The two forward passes differ, so the comparison below tells them apart
  # (fresh mask logits are small, ~1e-5: compare against their scale).
  scale = np.abs(expected['raw']).max()
  assert np.abs(expected['ema'] - expected['raw']).max() > 0.1 * scale
  export_dir = str(tmp_path / 'export')
  saved_model_dir, restored = export_saved_model.export_inference_graph(
      params, model_dir, export_dir, input_type='tflite', batch_size=1,
      function_keys={'tflite': 'serving_default', 'network': 'network'})
  assert restored.ema
  assert restored.description == (
      f'EMA weights of {os.path.join(model_dir, "ckpt-3")}')
  loaded = tf.saved_model.load(saved_model_dir)
  logits = loaded.signatures['network'](inputs=image)['mask_logits'].numpy()
  # The same float32 graph as the eager model: equal up to rounding.
  np.testing.assert_allclose(logits, expected['ema'], rtol=1e-4,
                             atol=1e-4 * scale)
  assert np.abs(logits - expected['raw']).max() > 0.1 * scale
  # The weights copy next to the SavedModel is the exported one.
  model = _build(params)
  tf.train.Checkpoint(model=model).read(
      tf.train.latest_checkpoint(os.path.join(export_dir, 'checkpoint'))
  ).expect_partial().assert_existing_objects_matched()
  _assert_weights(model, average)


def test_checkpoint_predictor_uses_and_names_the_ema_weights(trained):
  params, model_dir, _, _ = trained
  predictor = checkpoint_predictor.CheckpointPredictor(params, model_dir)
  assert predictor.restored_weights.ema
  assert predictor.description == (
      f'checkpoint: EMA weights of {os.path.join(model_dir, "ckpt-3")}')
  raw = checkpoint_predictor.CheckpointPredictor(params, model_dir,
                                                 use_ema=False)
  assert raw.description.startswith('checkpoint: raw weights of')
  assert not raw.restored_weights.ema
