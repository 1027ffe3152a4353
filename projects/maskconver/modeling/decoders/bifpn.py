"""BiFPN: EfficientDet's repeated bidirectional feature pyramid."""

from typing import Any, Dict, List, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import tf_utils

from maskconver.modeling.decoders import convnext_unet


def _fan_in_scaling() -> tf_keras.initializers.Initializer:
  """Unit-gain fan-in scaling (EfficientDet's and Model Garden's FPN's)."""
  return tf_keras.initializers.VarianceScaling(
      scale=1.0, mode='fan_in', distribution='truncated_normal')


def _per_channel_fan() -> tf_keras.initializers.Initializer:
  """Fan-in scaling of a depthwise kernel [k, k, channels, 1].

  Keras counts a 4-D kernel's fan-in as k*k*channels, but each output of a
  depthwise conv reads k*k inputs; its fan-out (k*k*1) is that count.
  """
  return tf_keras.initializers.VarianceScaling(
      scale=1.0, mode='fan_out', distribution='truncated_normal')


@tf_keras.utils.register_keras_serializable(package='maskconver')
class FastNormalizedFusion(tf_keras.layers.Layer):
  """Weighted sum of same-shaped inputs: sum_i w_i x_i / (sum_j w_j + eps).

  EfficientDet's fast normalized fusion: one learned scalar per input, kept
  non-negative by a ReLU and normalized by the sum (a cheaper softmax).
  The weights start at 1 (an average of the inputs).
  """

  def __init__(self, epsilon: float = 1e-4, **kwargs):
    """Initializes the layer.

    Args:
      epsilon: added to the weight sum, keeps the division stable.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    self.epsilon = epsilon

  def build(self, input_shape: List[tf.TensorShape]):
    self.fusion_weights = self.add_weight(
        name='fusion_weights', shape=[len(input_shape)],
        initializer=tf_keras.initializers.Ones(), trainable=True)
    super().build(input_shape)

  def call(self, inputs: List[tf.Tensor]) -> tf.Tensor:
    """Fuses the inputs.

    Args:
      inputs: list of float [batch, height, width, channels], same shapes.

    Returns:
      float [batch, height, width, channels], the dtype of the inputs.
    """
    weights = tf.nn.relu(tf.cast(self.fusion_weights, inputs[0].dtype))
    weights = weights / (tf.reduce_sum(weights) + self.epsilon)
    return tf.add_n([weights[i] * x for i, x in enumerate(inputs)])

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config['epsilon'] = self.epsilon
    return config


@tf_keras.utils.register_keras_serializable(package='maskconver')
class BiFPN(tf_keras.Model):
  """EfficientDet's BiFPN over backbone levels, with extra coarser levels.

  Inputs: backbone levels min_level..backbone_max_level, each projected to
  `num_filters` by a 1x1 conv + batch norm when its width differs. Levels
  above backbone_max_level (L6, L7) are max-pools (3x3, stride 2) of the
  coarsest one, the first after its own 1x1 projection. Then `num_repeats`
  BiFPN layers, each a top-down path (P_l^td from P_l and the upsampled
  P_{l+1}^td) and a bottom-up path (P_l^out from P_l, P_l^td and the
  max-pooled P_{l-1}^out; P_l^td is skipped at the two ends). Every node
  fuses its inputs with fast normalized fusion, then activation, a 3x3
  depthwise-separable conv (or a regular one) and batch norm.

  The convs start variance-preserving (fan-in scaling, a depthwise kernel's
  fan-in counted per channel), so every batch norm starts on activations of
  about the variance of its inputs: far above its epsilon, and close to
  its moving variance's initial 1. With the small (0.02) initialization of
  the heads a node's separable conv would start at ~1e-4 of its input's
  variance, under the epsilon, and the moving variances would still hold
  their initial value after a few hundred steps, so that inference-mode
  outputs fall far from training-mode ones.
  """

  def __init__(self,
               input_specs: Mapping[str, tf.TensorShape],
               min_level: int = 3,
               max_level: int = 7,
               backbone_max_level: int = 5,
               num_filters: int = 160,
               num_repeats: int = 6,
               use_separable_conv: bool = True,
               activation: str = 'swish',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[
                   tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the decoder.

    Args:
      input_specs: {str(level): TensorShape} of the backbone endpoints.
      min_level: finest level (input and output), 3 = stride 8.
      max_level: coarsest output level.
      backbone_max_level: coarsest backbone level read; the levels above it
        are made by max-pooling.
      num_filters: width of every level (EfficientDet-D3: 160).
      num_repeats: number of BiFPN layers (the paper's ablation: 6).
      use_separable_conv: depthwise-separable node convs (EfficientDet's).
      activation: activation before each node conv (EfficientDet: swish).
      use_sync_bn: synchronized batch norm.
      norm_momentum: batch norm momentum.
      norm_epsilon: batch norm epsilon.
      kernel_regularizer: regularizer of the conv kernels.
      **kwargs: passed to the Model.

    Raises:
      ValueError: levels out of order, a missing backbone level, or no
        repeat.
    """
    if not min_level < max_level:
      raise ValueError(f'BiFPN needs min_level ({min_level}) < max_level '
                       f'({max_level})')
    if not min_level <= backbone_max_level <= max_level:
      raise ValueError(f'backbone_max_level ({backbone_max_level}) must lie '
                       f'in [min_level, max_level] = [{min_level}, '
                       f'{max_level}]')
    if num_repeats < 1:
      raise ValueError(f'num_repeats must be >= 1, got {num_repeats}')
    missing = [l for l in range(min_level, backbone_max_level + 1)
               if str(l) not in input_specs]
    if missing:
      raise ValueError(f'backbone has no level(s) {missing}; it has '
                       f'{sorted(input_specs)}')
    self._config_dict = {
        'input_specs': input_specs,
        'min_level': min_level,
        'max_level': max_level,
        'backbone_max_level': backbone_max_level,
        'num_filters': num_filters,
        'num_repeats': num_repeats,
        'use_separable_conv': use_separable_conv,
        'activation': activation,
        'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum,
        'norm_epsilon': norm_epsilon,
        'kernel_regularizer': kernel_regularizer,
    }
    bn_class = (tf_keras.layers.experimental.SyncBatchNormalization
                if use_sync_bn else tf_keras.layers.BatchNormalization)
    activation_fn = tf_utils.get_activation(activation)

    def batch_norm(name):
      return bn_class(momentum=norm_momentum, epsilon=norm_epsilon, name=name)

    def project(x, name):
      x = tf_keras.layers.Conv2D(
          num_filters, 1, use_bias=False,
          kernel_initializer=_fan_in_scaling(),
          kernel_regularizer=kernel_regularizer, name=name)(x)
      return batch_norm(f'{name}_norm')(x)

    def downsample(x, name):
      return tf_keras.layers.MaxPool2D(3, 2, padding='same', name=name)(x)

    def node(parts, name):
      x = FastNormalizedFusion(name=f'{name}_fusion')(parts)
      x = tf_keras.layers.Activation(activation_fn, name=f'{name}_act')(x)
      if use_separable_conv:
        x = tf_keras.layers.SeparableConv2D(
            num_filters, 3, padding='same', use_bias=False,
            depthwise_initializer=_per_channel_fan(),
            pointwise_initializer=_fan_in_scaling(),
            depthwise_regularizer=kernel_regularizer,
            pointwise_regularizer=kernel_regularizer, name=f'{name}_conv')(x)
      else:
        x = tf_keras.layers.Conv2D(
            num_filters, 3, padding='same', use_bias=False,
            kernel_initializer=_fan_in_scaling(),
            kernel_regularizer=kernel_regularizer, name=f'{name}_conv')(x)
      return batch_norm(f'{name}_norm')(x)

    inputs = {
        str(l): tf_keras.Input(shape=input_specs[str(l)][1:], name=f'l{l}')
        for l in range(min_level, backbone_max_level + 1)
    }
    features = {}
    for level in range(min_level, backbone_max_level + 1):
      x = inputs[str(level)]
      if x.shape[-1] != num_filters:
        x = project(x, f'input_l{level}')
      features[level] = x
    for level in range(backbone_max_level + 1, max_level + 1):
      x = features[level - 1]
      if level == backbone_max_level + 1:
        x = inputs[str(backbone_max_level)]
        if x.shape[-1] != num_filters:
          x = project(x, f'input_l{level}')
      features[level] = downsample(x, f'input_pool_l{level}')

    for repeat in range(num_repeats):
      prefix = f'layer{repeat}'
      top_down = {max_level: features[max_level]}
      for level in range(max_level - 1, min_level - 1, -1):
        upsampled = convnext_unet.ResizeNearestLike(
            name=f'{prefix}_up_l{level}')(top_down[level + 1], features[level])
        top_down[level] = node([features[level], upsampled],
                               f'{prefix}_td_l{level}')
      outputs = {min_level: top_down[min_level]}
      for level in range(min_level + 1, max_level + 1):
        parts = [features[level]]
        if level < max_level:
          parts.append(top_down[level])
        parts.append(downsample(outputs[level - 1],
                                f'{prefix}_down_l{level}'))
        outputs[level] = node(parts, f'{prefix}_out_l{level}')
      features = outputs

    outputs = {str(l): features[l] for l in range(min_level, max_level + 1)}
    self._output_specs = {l: t.get_shape() for l, t in outputs.items()}
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)

  def get_config(self) -> Dict[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)

  @property
  def output_specs(self) -> Dict[str, tf.TensorShape]:
    """{str(level): TensorShape} of the outputs."""
    return self._output_specs
