"""Binary cross-entropy and Dice losses on predicted instance masks.

Both losses compare the model's mask logits (`keys.MASK_LOGITS`, float
[batch, mask_h, mask_w, num_instances]) with the parser's target masks
(`keys.MASKS`, batched: [batch, num_instances, mask_h, mask_w]) and are
transposed to a common layout inside. Both are computed per target mask
first and then averaged over the valid target instances of the whole batch
(`keys.VALID`):

  loss = sum(valid * per_mask_loss) / max(sum(valid), 1)

so padded instances never count, and a batch without any instance gives 0
with zero (finite) gradients. Pixels whose weight (`keys.MASK_WEIGHTS`) is 0
(void, crowd, padding) are left out of both losses.

Logits may be float16 or bfloat16 (mixed precision); losses are computed in
float32.
"""

from typing import Tuple

import tensorflow as tf

# Smoothing of the Dice ratio, added to numerator and denominator. With 1.0
# (as in DETR / MaskFormer) a mask whose target and prediction are both empty
# scores 0 instead of 0 / 0, and tiny masks do not get Dice gradients that
# blow up as their areas go to 0.
DICE_EPSILON = 1.0


def _prepare(
    mask_logits: tf.Tensor, target_masks: tf.Tensor, pixel_weights: tf.Tensor,
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Checks shapes and returns float32 tensors in one layout.

  Returns:
    `(logits, targets, weights)`: logits and targets [batch, num_instances,
    mask_h, mask_w], weights [batch, 1, mask_h, mask_w].
  """
  mask_logits = tf.convert_to_tensor(mask_logits)
  target_masks = tf.convert_to_tensor(target_masks)
  pixel_weights = tf.convert_to_tensor(pixel_weights)
  if mask_logits.shape.rank != 4:
    raise ValueError(
        'mask_logits must be [batch, mask_h, mask_w, num_instances], got '
        f'shape {mask_logits.shape}')
  logits = tf.transpose(tf.cast(mask_logits, tf.float32), [0, 3, 1, 2])
  if not logits.shape.is_compatible_with(target_masks.shape):
    raise ValueError(
        'target_masks must be [batch, num_instances, mask_h, mask_w] '
        f'matching mask_logits {mask_logits.shape}, got shape '
        f'{target_masks.shape}')
  if not mask_logits.shape[:3].is_compatible_with(pixel_weights.shape):
    raise ValueError(
        'pixel_weights must be [batch, mask_h, mask_w] matching mask_logits '
        f'{mask_logits.shape}, got shape {pixel_weights.shape}')
  targets = tf.cast(target_masks, tf.float32)
  weights = tf.cast(pixel_weights, tf.float32)[:, tf.newaxis]
  return logits, targets, weights


def mean_over_valid(per_mask: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
  """Averages per-mask losses over the valid instances of the batch.

  Args:
    per_mask: float32 [batch, num_instances], a loss per target mask.
    valid: float32 (or bool) [batch, num_instances], 1 for real targets, 0 for
      padding (`keys.VALID`).

  Returns:
    float32 scalar `sum(valid * per_mask) / max(sum(valid), 1)`.
  """
  valid = tf.convert_to_tensor(valid)
  if not per_mask.shape.is_compatible_with(valid.shape):
    raise ValueError(
        f'valid must be [batch, num_instances] = {per_mask.shape}, got shape '
        f'{valid.shape}')
  valid = tf.cast(valid, tf.float32)
  return (tf.reduce_sum(valid * per_mask)
          / tf.maximum(tf.reduce_sum(valid), 1.0))


def per_mask_bce(
    mask_logits: tf.Tensor, target_masks: tf.Tensor, pixel_weights: tf.Tensor,
) -> tf.Tensor:
  """Binary cross-entropy of each mask, averaged over its weighted pixels.

  Args:
    mask_logits: float32 / float16 / bfloat16 [batch, mask_h, mask_w,
      num_instances], mask logits (`keys.MASK_LOGITS`).
    target_masks: uint8, bool or float [batch, num_instances, mask_h, mask_w],
      binary target masks (`keys.MASKS`, the parser's layout).
    pixel_weights: float32 [batch, mask_h, mask_w], 0 on void, crowd and
      padding pixels (`keys.MASK_WEIGHTS`).

  Returns:
    float32 [batch, num_instances]: `sum(w * bce) / sum(w)` over the pixels of
    each mask, 0 for an image whose weights are all 0.
  """
  logits, targets, weights = _prepare(mask_logits, target_masks, pixel_weights)
  bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
  weighted_sum = tf.reduce_sum(weights * bce, axis=[2, 3])
  weight_total = tf.reduce_sum(weights, axis=[2, 3])
  return tf.math.divide_no_nan(weighted_sum, weight_total)


def per_mask_dice(
    mask_logits: tf.Tensor, target_masks: tf.Tensor, pixel_weights: tf.Tensor,
    epsilon: float = DICE_EPSILON,
) -> tf.Tensor:
  """Dice loss of each mask on its own (never pooled across masks).

  With `p = sigmoid(logits)`, `t` the target and `w` the pixel weights, each
  mask scores

    1 - (2 * sum(w * p * t) + epsilon) / (sum(w * p) + sum(w * t) + epsilon).

  Args:
    mask_logits: as in `per_mask_bce`.
    target_masks: as in `per_mask_bce`.
    pixel_weights: as in `per_mask_bce`.
    epsilon: smoothing added to numerator and denominator (see
      `DICE_EPSILON`); must be > 0.

  Returns:
    float32 [batch, num_instances], each in [0, 1).
  """
  if epsilon <= 0:
    raise ValueError(f'epsilon must be > 0, got {epsilon}')
  logits, targets, weights = _prepare(mask_logits, target_masks, pixel_weights)
  probs = tf.sigmoid(logits)
  intersection = tf.reduce_sum(weights * probs * targets, axis=[2, 3])
  pred_area = tf.reduce_sum(weights * probs, axis=[2, 3])
  target_area = tf.reduce_sum(weights * targets, axis=[2, 3])
  return 1.0 - ((2.0 * intersection + epsilon)
                / (pred_area + target_area + epsilon))


def mask_bce_loss(
    mask_logits: tf.Tensor, target_masks: tf.Tensor, pixel_weights: tf.Tensor,
    valid: tf.Tensor,
) -> tf.Tensor:
  """Mask BCE: per-mask pixel mean, then mean over the valid instances.

  Args:
    mask_logits: as in `per_mask_bce`.
    target_masks: as in `per_mask_bce`.
    pixel_weights: as in `per_mask_bce`.
    valid: float32 [batch, num_instances], 1 for real targets (`keys.VALID`).

  Returns:
    float32 scalar, 0 when no instance is valid.
  """
  return mean_over_valid(
      per_mask_bce(mask_logits, target_masks, pixel_weights), valid)


def mask_dice_loss(
    mask_logits: tf.Tensor, target_masks: tf.Tensor, pixel_weights: tf.Tensor,
    valid: tf.Tensor, epsilon: float = DICE_EPSILON,
) -> tf.Tensor:
  """Mask Dice: per-mask Dice loss, then mean over the valid instances.

  Args:
    mask_logits: as in `per_mask_bce`.
    target_masks: as in `per_mask_bce`.
    pixel_weights: as in `per_mask_bce`.
    valid: float32 [batch, num_instances], 1 for real targets (`keys.VALID`).
    epsilon: Dice smoothing, see `DICE_EPSILON`.

  Returns:
    float32 scalar, 0 when no instance is valid.
  """
  return mean_over_valid(
      per_mask_dice(mask_logits, target_masks, pixel_weights, epsilon),
      valid)
