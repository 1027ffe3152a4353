"""Center score activations: sigmoid, or hard-sigmoid for mobile targets."""

from typing import Callable, Tuple

import tensorflow as tf

ACTIVATIONS = ('sigmoid', 'hard_sigmoid')


def score_activation(logits: tf.Tensor, activation: str) -> tf.Tensor:
  """Maps logits to scores in [0, 1].

  `hard_sigmoid` is relu6(x + 3) / 6, piecewise linear and made of TFLite
  builtin ops, which the mobile recipes use at inference.

  Args:
    logits: float tensor of any shape.
    activation: 'sigmoid' or 'hard_sigmoid'.

  Returns:
    Scores, same shape and dtype as `logits`.
  """
  function, scale = unscaled(activation)
  return function(logits) if scale == 1.0 else function(logits) * scale


def _shifted_relu6(logits: tf.Tensor) -> tf.Tensor:
  return tf.nn.relu6(logits + 3.0)


def unscaled(activation: str) -> Tuple[Callable[[tf.Tensor], tf.Tensor], float]:
  """(g, scale) with score_activation(x, activation) = g(x) * scale.

  hard_sigmoid is relu6(x + 3) times 1/6, a constant a caller can fold into
  another product (the fast merge folds it into the detection scores
  instead of scaling every mask pixel; equal up to float32 rounding);
  sigmoid has scale 1.
  """
  if activation == 'sigmoid':
    return tf.sigmoid, 1.0
  if activation == 'hard_sigmoid':
    return _shifted_relu6, 1.0 / 6.0
  raise ValueError(
      f'activation must be one of {ACTIVATIONS}, got {activation!r}')
