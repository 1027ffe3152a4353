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
  if activation == 'sigmoid':
    return tf.sigmoid(logits)
  if activation == 'hard_sigmoid':
    return tf.nn.relu6(logits + 3.0) * (1.0 / 6.0)
  raise ValueError(
      f'activation must be one of {ACTIVATIONS}, got {activation!r}')


def unscaled(activation: str) -> Tuple[Callable[[tf.Tensor], tf.Tensor], float]:
  """(g, scale) with score_activation(x, activation) = g(x) * scale.

  Up to float32 rounding: hard_sigmoid is relu6(x + 3) times 1/6, a
  constant a caller can fold into another product (the fast merge folds it
  into the detection scores instead of scaling every mask pixel).
  """
  if activation == 'hard_sigmoid':
    return lambda logits: tf.nn.relu6(logits + 3.0), 1.0 / 6.0
  if activation in ACTIVATIONS:
    return lambda logits: score_activation(logits, activation), 1.0
  raise ValueError(
      f'activation must be one of {ACTIVATIONS}, got {activation!r}')
