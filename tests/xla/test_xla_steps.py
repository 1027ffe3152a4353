"""Train and validation steps compile with XLA, as on a TPU, and agree with
the steps run without XLA.

`tf.function(jit_compile=True)` on a CPU compiles the step the way a TPU
does (static shapes, no strings, XLA kernels only), so these tests are the
project's TPU-readiness check. One small model per recipe family, each on the
batches the task's own `build_inputs` makes from synthetic records:

* `unet`: the synthetic / R50 structure at test size (ResNet + ConvNeXt-UNet,
  shared light heads on L3-L5);
* `mobile`: the mobile recipe (MobileNetMultiAVGSeg + DeepLabv3+, L3 only,
  hard-sigmoid), with its EMA optimizer and panoptic copy-paste;
* `r50_levels`: the R50 recipe's head levels L3-L7 (L6, L7 from the decoder's
  strided depthwise convs), sync batch norm and its resize on the device
  (padded sources smaller than the input), at 128x128.

Each in float32 and mixed_bfloat16.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import task_factory
from official.modeling import performance
from official.modeling.optimization import ema_optimizer

from maskconver import keys
from maskconver.tasks import maskconver_task

FAMILIES = {
    'unet': {},
    'mobile': {
        'model': {
            'min_level': 3, 'max_level': 3, 'mask_feature_levels': [3],
            'score_activation': 'hard_sigmoid',
            'backbone': {'type': 'mobilenet', 'mobilenet': {
                'model_id': 'MobileNetMultiAVGSeg', 'output_stride': 16,
                'filter_size_scale': 0.25}},
            'decoder': {'type': 'deeplabv3plus', 'deeplabv3plus': {
                'aspp_level': 4, 'dilation_rates': [2], 'aspp_num_filters': 32,
                'low_level': 3, 'low_level_num_filters': 16,
                'num_filters': 32}},
        },
        'train_data': {'parser': {'copy_paste_prob': 1.0,
                                  'aug_scale_min': 0.5,
                                  'aug_scale_max': 1.5}},
    },
    'r50_levels': {
        'model': {
            'input_size': [128, 128, 3], 'max_level': 7,
            'norm_activation': {'use_sync_bn': True},
        },
        'train_data': {'parser': {'eval_groundtruth_padded_size': [128, 128],
                                  'aug_scale_min': 0.3,
                                  'aug_scale_max': 2.0,
                                  'source_padded_size': [80, 80]}},
        'validation_data': {'parser': {
            'eval_groundtruth_padded_size': [128, 128],
            'source_padded_size': [80, 80]}},
    },
}
EMA_OPTIMIZER = {'ema': {'average_decay': 0.9, 'trainable_weights_only': False}}


def _params(make_params, family):
  overrides = {'task': dict(FAMILIES[family])}
  params = make_params(overrides)
  if family == 'mobile':
    params.override({'trainer': {'optimizer_config': EMA_OPTIMIZER}})
  return params


@pytest.fixture(params=['float32', 'bfloat16'])
def precision(request):
  performance.set_mixed_precision_policy(request.param)
  yield request.param
  tf_keras.mixed_precision.set_global_policy('float32')


def _twin_models(task):
  """Two models with the same weights (one per way of running the step)."""
  first = task.build_model()
  second = task.build_model()
  second.set_weights(first.get_weights())
  return first, second


def _optimizer(task, params, model):
  optimizer = task.create_optimizer(params.trainer.optimizer_config,
                                    params.runtime)
  if isinstance(optimizer, ema_optimizer.ExponentialMovingAverage):
    optimizer.shadow_copy(model)  # what Model Garden's trainer does
  return optimizer


# Relative tolerance between the XLA and the plain step. float32: XLA fuses
# and reorders sums (observed differences ~1e-6 relative); bfloat16 keeps 8
# mantissa bits (2**-8 = 0.4% per rounding), and the two runtimes round at
# different places.
LOSS_RTOL = {'float32': 1e-4, 'bfloat16': 3e-2}


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_steps_compile_with_xla_and_match(make_params, precision, family):
  params = _params(make_params, family)
  if precision == 'bfloat16':
    params.override({'task': {'train_data': {'dtype': 'bfloat16'},
                              'validation_data': {'dtype': 'bfloat16'}}})
  task = task_factory.get_task(params.task)
  plain_model, xla_model = _twin_models(task)
  _check_train_step(task, params, plain_model, xla_model, precision)
  _check_validation_step(task, params, plain_model, precision)


def _check_train_step(task, params, plain_model, xla_model, precision):
  """One train step with and without XLA from the same weights."""
  batch = next(iter(task.build_inputs(params.task.train_data)))
  assert batch[0].dtype == tf.uint8
  # Padded sources (resized in the step) exactly when the recipe says so.
  assert (keys.RESIZE_INFO in batch[1]) == bool(
      params.task.train_data.parser.source_padded_size)
  plain_opt = _optimizer(task, params, plain_model)
  xla_opt = _optimizer(task, params, xla_model)
  metrics = task.build_metrics()
  xla_logs = tf.function(
      lambda inputs: task.train_step(inputs, xla_model, xla_opt, metrics),
      jit_compile=True)(batch)
  for metric in metrics:
    metric.reset_state()
  plain_logs = tf.function(
      lambda inputs: task.train_step(inputs, plain_model, plain_opt,
                                     metrics))(batch)
  for name, value in plain_logs.items():
    np.testing.assert_allclose(float(xla_logs[name]), float(value),
                               rtol=LOSS_RTOL[precision], err_msg=name)
  assert np.isfinite(float(xla_logs[task.loss]))


def _check_validation_step(task, params, model, precision):
  """One validation step with and without XLA on the same model."""
  batch = next(iter(task.build_inputs(params.task.validation_data)))
  xla_logs = tf.function(lambda inputs: task.validation_step(inputs, model),
                         jit_compile=True)(batch)
  plain_logs = tf.function(
      lambda inputs: task.validation_step(inputs, model))(batch)
  np.testing.assert_allclose(float(xla_logs[task.loss]),
                             float(plain_logs[task.loss]),
                             rtol=LOSS_RTOL[precision])
  xla_out = xla_logs[maskconver_task._PANOPTIC_OUTPUTS]
  plain_out = plain_logs[maskconver_task._PANOPTIC_OUTPUTS]
  # Ground truth passes through untouched, bytes of the source id included.
  for key in (keys.GT_SEGMENT_MAP, keys.GT_SEGMENT_IDS, keys.GT_SOURCE_ID,
              keys.IMAGE_INFO):
    np.testing.assert_array_equal(xla_out[key].numpy(),
                                  plain_out[key].numpy(), err_msg=key)
  segment_map = xla_out[keys.PANOPTIC_SEGMENT_MAP].numpy()
  agreement = np.mean(segment_map ==
                      plain_out[keys.PANOPTIC_SEGMENT_MAP].numpy())
  if precision == 'float32':
    np.testing.assert_array_equal(
        xla_out[keys.SEGMENT_CLASSES_OUT].numpy(),
        plain_out[keys.SEGMENT_CLASSES_OUT].numpy())
    assert agreement == 1.0
  else:
    # bfloat16 rounding moves scores and mask probabilities of an untrained
    # model (all close to the thresholds) by up to ~1%: most pixels agree.
    assert agreement >= 0.9, agreement
