"""Penalty-reduced focal loss on center heatmaps.

The loss of CenterNet ("Objects as Points", Zhou et al. 2019, eq. 1), which
MaskConver applies to its class-wise center heatmaps. With `p = sigmoid(x)`
the predicted probability of a cell and `y` its Gaussian target:

  positive cell (y == 1):  -(1 - p)**alpha * log(p)
  negative cell (y < 1):   -(1 - y)**beta * p**alpha * log(1 - p)

The per-cell losses are summed over the batch, every cell, every class and
every level, and divided by the number of positive cells (object centers) in
the batch, or by 1 when there is none:

  loss = sum(cell losses) / max(num_positives, 1)

so an image without instances still learns "no center here" from its
negatives, and the loss stays finite.

The loss always uses the sigmoid of the logits. The mobile recipe's
hard-sigmoid is an inference-time activation only; training uses sigmoid
logits whatever the recipe.

Distributed training: `focal_loss_terms` returns the numerator and the
positive count separately so that a caller who wants the normalisation over
the global batch can all-reduce both before dividing. `focal_loss` divides by
the count of the batch it is given (per replica).
"""

from typing import Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf

# One tensor, a sequence of per-level tensors, or the parser's / model's
# {str(level): tensor} dict.
LevelTensors = Union[tf.Tensor, Sequence[tf.Tensor], Mapping[str, tf.Tensor]]


def _as_level_list(
    value: Optional[LevelTensors], name: str,
    level_keys: Optional[Sequence[str]] = None,
) -> Tuple[Optional[list], Optional[list]]:
  """Returns `(tensors, keys)`: a list of per-level tensors and their keys.

  `keys` is the sorted key list for mappings, else None. When `level_keys` is
  given, a mapping is read in that key order and must hold exactly those keys.
  """
  if value is None:
    return None, None
  if isinstance(value, Mapping):
    keys = sorted(value.keys()) if level_keys is None else list(level_keys)
    if sorted(value.keys()) != sorted(keys):
      raise ValueError(
          f'{name} has levels {sorted(value.keys())}, expected {sorted(keys)}')
    return [value[k] for k in keys], keys
  if isinstance(value, (list, tuple)):
    if not value:
      raise ValueError(f'{name} is an empty list of levels')
    return list(value), None
  return [value], None


def _level_terms(
    logits: tf.Tensor, targets: tf.Tensor, weights: Optional[tf.Tensor],
    alpha: float, beta: float, where: str,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """Returns (sum of cell losses, number of positives) for one level."""
  logits = tf.convert_to_tensor(logits)
  targets = tf.convert_to_tensor(targets)
  if logits.shape.rank != 4:
    raise ValueError(
        f'logits{where} must be [batch, height, width, num_classes], got '
        f'shape {logits.shape}')
  if not logits.shape.is_compatible_with(targets.shape):
    raise ValueError(
        f'targets{where} shape {targets.shape} does not match logits shape '
        f'{logits.shape}')
  logits = tf.cast(logits, tf.float32)
  targets = tf.cast(targets, tf.float32)

  # log(p) and log(1 - p) straight from the logits: finite for any logit and
  # with finite gradients (log(sigmoid(x)) underflows to log(0)).
  log_p = tf.math.log_sigmoid(logits)
  log_not_p = tf.math.log_sigmoid(-logits)
  # p**alpha and (1 - p)**alpha as exp(alpha * log(.)), whose gradient stays
  # finite even where the probability underflows to 0.
  positive_loss = -tf.exp(alpha * log_not_p) * log_p
  negative_loss = (-tf.pow(tf.maximum(1.0 - targets, 0.0), beta)
                   * tf.exp(alpha * log_p) * log_not_p)
  is_positive = tf.cast(tf.equal(targets, 1.0), tf.float32)
  cell_loss = is_positive * positive_loss + (1.0 - is_positive) * negative_loss

  if weights is not None:
    weights = tf.convert_to_tensor(weights)
    if not logits.shape[:3].is_compatible_with(weights.shape):
      raise ValueError(
          f'weights{where} must be [batch, height, width] = '
          f'{logits.shape[:3]}, got shape {weights.shape}')
    weights = tf.cast(weights, tf.float32)[..., tf.newaxis]
    cell_loss *= weights
    # A center on an ignored cell is not counted.
    is_positive *= tf.cast(weights > 0.0, tf.float32)
  return tf.reduce_sum(cell_loss), tf.reduce_sum(is_positive)


def focal_loss_terms(
    logits: LevelTensors,
    targets: LevelTensors,
    weights: Optional[LevelTensors] = None,
    alpha: float = 2.0,
    beta: float = 4.0,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """Returns the un-normalised focal loss and the number of positives.

  Args:
    logits: float32 (or float16 / bfloat16) [batch, height, width,
      num_classes] heatmap logits (before the sigmoid), or a list of such
      tensors (one per level) or a {str(level): tensor} dict. Computed in
      float32 whatever the input dtype.
    targets: float32, same structure and shapes as `logits`: Gaussian center
      heatmaps in [0, 1], exactly 1 at each center.
    weights: optional float32 [batch, height, width] per-cell weights, same
      level structure as `logits`; 0 ignores a cell (void, crowd). None
      weighs every cell 1.
    alpha: focusing exponent on the predicted probability.
    beta: exponent of the penalty reduction `(1 - y)**beta` near centers.

  Returns:
    `(loss_sum, num_positives)`: float32 scalars, the sum of the weighted cell
    losses over batch, cells, classes and levels, and the number of target
    cells equal to 1 whose weight is not 0.

  Raises:
    ValueError: if shapes, ranks or level keys do not match.
  """
  logit_list, level_keys = _as_level_list(logits, 'logits')
  target_list, _ = _as_level_list(targets, 'targets', level_keys)
  weight_list, _ = _as_level_list(weights, 'weights', level_keys)
  if len(target_list) != len(logit_list):
    raise ValueError(
        f'targets has {len(target_list)} levels, logits has '
        f'{len(logit_list)}')
  if weight_list is not None and len(weight_list) != len(logit_list):
    raise ValueError(
        f'weights has {len(weight_list)} levels, logits has '
        f'{len(logit_list)}')

  loss_sum = tf.constant(0.0, tf.float32)
  num_positives = tf.constant(0.0, tf.float32)
  for i, (level_logits, level_targets) in enumerate(
      zip(logit_list, target_list)):
    level_weights = None if weight_list is None else weight_list[i]
    if len(logit_list) == 1:
      where = ''
    elif level_keys is not None:
      where = f"['{level_keys[i]}']"
    else:
      where = f'[{i}]'
    level_sum, level_positives = _level_terms(
        level_logits, level_targets, level_weights, alpha, beta, where)
    loss_sum += level_sum
    num_positives += level_positives
  return loss_sum, num_positives


def focal_loss(
    logits: LevelTensors,
    targets: LevelTensors,
    weights: Optional[LevelTensors] = None,
    alpha: float = 2.0,
    beta: float = 4.0,
) -> tf.Tensor:
  """Penalty-reduced focal loss, normalised by the number of centers.

  Args: as `focal_loss_terms`.

  Returns:
    float32 scalar: `loss_sum / max(num_positives, 1)`, with both terms
    totalled over the batch and all levels.
  """
  loss_sum, num_positives = focal_loss_terms(
      logits, targets, weights, alpha=alpha, beta=beta)
  return loss_sum / tf.maximum(num_positives, 1.0)
