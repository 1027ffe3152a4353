"""Mask BCE and Dice losses against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from maskconver.losses import mask_bce_loss
from maskconver.losses import mask_dice_loss
from maskconver.losses import per_mask_dice


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def _bce(x, t):
  """-t log(p) - (1 - t) log(1 - p) for t in {0, 1}."""
  return math.log1p(math.exp(-x)) if t else math.log1p(math.exp(x))


def _dice(probs, targets, eps=1.0):
  inter = sum(p * t for p, t in zip(probs, targets))
  return 1.0 - (2.0 * inter + eps) / (sum(probs) + sum(targets) + eps)


# One 2x2 mask: logits [[2, -1], [0, 3]] ([batch, h, w, N] layout), target
# [[1, 0], [1, 0]] ([batch, N, h, w] layout, uint8 as the parser stores it).
LOGITS = tf.constant([[[[2.0], [-1.0]], [[0.0], [3.0]]]])
TARGET = tf.constant([[[[1, 0], [1, 0]]]], tf.uint8)
ONES = tf.ones([1, 2, 2])
VALID = tf.ones([1, 1])
BCE_TERMS = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-1.0)),
             math.log(2.0), math.log1p(math.exp(3.0))]
PROBS = [_sigmoid(2.0), _sigmoid(-1.0), 0.5, _sigmoid(3.0)]


def test_bce_on_a_2x2_mask():
  assert BCE_TERMS[0] == pytest.approx(-math.log(_sigmoid(2.0)))
  assert BCE_TERMS[3] == pytest.approx(-math.log(1.0 - _sigmoid(3.0)))
  loss = mask_bce_loss(LOGITS, TARGET, ONES, VALID)
  assert loss.dtype == tf.float32
  assert float(loss) == pytest.approx(sum(BCE_TERMS) / 4.0, rel=1e-5)


def test_dice_on_a_2x2_mask():
  # intersection = s(2) + 0.5; areas: sum of the four p, and 2.
  expected = 1.0 - ((2.0 * (PROBS[0] + PROBS[2]) + 1.0)
                    / (sum(PROBS) + 2.0 + 1.0))
  loss = mask_dice_loss(LOGITS, TARGET, ONES, VALID)
  assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_zero_pixel_weight_leaves_the_pixel_out():
  weights = tf.constant([[[1.0, 1.0], [1.0, 0.0]]])
  bce = mask_bce_loss(LOGITS, TARGET, weights, VALID)
  assert float(bce) == pytest.approx(sum(BCE_TERMS[:3]) / 3.0, rel=1e-5)
  dice = mask_dice_loss(LOGITS, TARGET, weights, VALID)
  expected = 1.0 - ((2.0 * (PROBS[0] + PROBS[2]) + 1.0)
                    / (sum(PROBS[:3]) + 2.0 + 1.0))
  assert float(dice) == pytest.approx(expected, rel=1e-5)


def test_dice_is_per_mask_not_pooled():
  # 1x3x3 image, two masks: mask 0 covers the top 6 pixels (logits all 2),
  # mask 1 covers the bottom-right pixel (logits all -1).
  logits = np.zeros((1, 3, 3, 2), np.float32)
  logits[..., 0] = 2.0
  logits[..., 1] = -1.0
  targets = np.zeros((1, 2, 3, 3), np.uint8)
  targets[0, 0, :2, :] = 1
  targets[0, 1, 2, 2] = 1
  s2, sm1 = _sigmoid(2.0), _sigmoid(-1.0)
  dice0 = 1.0 - (2.0 * 6 * s2 + 1.0) / (9 * s2 + 6 + 1.0)
  dice1 = 1.0 - (2.0 * 1 * sm1 + 1.0) / (9 * sm1 + 1 + 1.0)
  pooled = 1.0 - ((2.0 * (6 * s2 + sm1) + 1.0)
                  / (9 * s2 + 9 * sm1 + 7 + 1.0))
  assert abs((dice0 + dice1) / 2.0 - pooled) > 0.05
  per_mask = per_mask_dice(logits, targets, tf.ones([1, 3, 3]))
  np.testing.assert_allclose(per_mask.numpy(), [[dice0, dice1]], rtol=1e-5)
  loss = mask_dice_loss(logits, targets, tf.ones([1, 3, 3]), tf.ones([1, 2]))
  assert float(loss) == pytest.approx((dice0 + dice1) / 2.0, rel=1e-5)


def test_mean_over_valid_instances_of_the_whole_batch():
  # 1x1 masks. Image 0: one real mask and one padded mask with a huge loss;
  # image 1: two real masks. Mean over the 3 real masks, not per image.
  logits = tf.constant([[[[1.0, -50.0]]], [[[-2.0, 0.5]]]])
  targets = tf.constant([[[[1]], [[1]]], [[[0]], [[1]]]], tf.uint8)
  valid = tf.constant([[1.0, 0.0], [1.0, 1.0]])
  weights = tf.ones([2, 1, 1])
  a, c, d = _bce(1.0, 1), _bce(-2.0, 0), _bce(0.5, 1)
  bce = mask_bce_loss(logits, targets, weights, valid)
  assert float(bce) == pytest.approx((a + c + d) / 3.0, rel=1e-5)
  dice = mask_dice_loss(logits, targets, weights, valid)
  expected = (_dice([_sigmoid(1.0)], [1]) + _dice([_sigmoid(-2.0)], [0])
              + _dice([_sigmoid(0.5)], [1])) / 3.0
  assert float(dice) == pytest.approx(expected, rel=1e-5)


def test_against_elementwise_formulas_on_2x3x4x2():
  # h != w != num_instances, so a wrong transpose cannot pass.
  rng = np.random.default_rng(1)
  logits = rng.uniform(-4.0, 4.0, size=(2, 3, 4, 2)).astype(np.float32)
  targets = (rng.uniform(size=(2, 2, 3, 4)) > 0.5).astype(np.uint8)
  weights = (rng.uniform(size=(2, 3, 4)) > 0.3).astype(np.float32)
  valid = np.array([[1.0, 1.0], [0.0, 1.0]], np.float32)
  bce_sum, dice_sum = 0.0, 0.0
  for b in range(2):
    for n in range(2):
      if not valid[b, n]:
        continue
      pixels = [(y, x) for y in range(3) for x in range(4) if weights[b, y, x]]
      bce_sum += sum(_bce(float(logits[b, y, x, n]), targets[b, n, y, x])
                     for y, x in pixels) / len(pixels)
      probs = [_sigmoid(float(logits[b, y, x, n])) for y, x in pixels]
      dice_sum += _dice(probs, [int(targets[b, n, y, x]) for y, x in pixels])
  bce = mask_bce_loss(logits, targets, weights, valid)
  dice = mask_dice_loss(logits, targets, weights, valid)
  assert float(bce) == pytest.approx(bce_sum / 3.0, rel=1e-5)
  assert float(dice) == pytest.approx(dice_sum / 3.0, rel=1e-5)


@pytest.mark.parametrize('case', ['no_instances', 'no_pixels'])
def test_empty_cases_give_zero_with_finite_gradients(case):
  logits = tf.Variable(tf.fill([2, 2, 2, 3], 1000.0))
  targets = tf.zeros([2, 3, 2, 2])
  if case == 'no_instances':
    weights, valid = tf.ones([2, 2, 2]), tf.zeros([2, 3])
  else:
    weights, valid = tf.zeros([2, 2, 2]), tf.ones([2, 3])
  with tf.GradientTape(persistent=True) as tape:
    bce = mask_bce_loss(logits, targets, weights, valid)
    dice = mask_dice_loss(logits, targets, weights, valid)
  assert float(bce) == 0.0
  assert float(dice) == 0.0
  for loss in (bce, dice):
    grad = tape.gradient(loss, logits)
    assert np.all(grad.numpy() == 0.0)


def test_extreme_logits_give_finite_loss_and_gradients():
  # Confidently wrong: BCE of each pixel = 1000; Dice = 1 - 1 / (2 + 2 + 1).
  logits = tf.Variable([[[[-1000.0], [1000.0]], [[-1000.0], [1000.0]]]])
  targets = tf.constant([[[[1, 0], [1, 0]]]], tf.uint8)
  with tf.GradientTape(persistent=True) as tape:
    bce = mask_bce_loss(logits, targets, ONES, VALID)
    dice = mask_dice_loss(logits, targets, ONES, VALID)
  assert float(bce) == pytest.approx(1000.0, rel=1e-5)
  assert float(dice) == pytest.approx(1.0 - 1.0 / 5.0, rel=1e-5)
  for loss in (bce, dice):
    assert np.all(np.isfinite(tape.gradient(loss, logits).numpy()))


@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16])
def test_mixed_precision_logits_are_computed_in_float32(dtype):
  logits = tf.cast(LOGITS, dtype)  # 2, -1, 0, 3 are exact in both.
  bce = mask_bce_loss(logits, TARGET, ONES, VALID)
  dice = mask_dice_loss(logits, TARGET, ONES, VALID)
  assert bce.dtype == tf.float32 and dice.dtype == tf.float32
  assert float(bce) == pytest.approx(sum(BCE_TERMS) / 4.0, rel=1e-5)
  assert float(dice) == pytest.approx(
      float(mask_dice_loss(LOGITS, TARGET, ONES, VALID)), rel=1e-6)


def test_float_and_bool_targets_match_uint8():
  for targets in (tf.cast(TARGET, tf.float32), tf.cast(TARGET, tf.bool)):
    assert float(mask_bce_loss(LOGITS, targets, ONES, VALID)) == (
        pytest.approx(sum(BCE_TERMS) / 4.0, rel=1e-5))


def test_bad_shapes_name_the_argument():
  logits = tf.zeros([1, 2, 3, 4])
  with pytest.raises(ValueError, match='target_masks'):
    # [batch, h, w, N] instead of the parser's [batch, N, h, w].
    mask_bce_loss(logits, tf.zeros([1, 2, 3, 4]), tf.ones([1, 2, 3]),
                  tf.ones([1, 4]))
  with pytest.raises(ValueError, match='pixel_weights'):
    mask_dice_loss(logits, tf.zeros([1, 4, 2, 3]), tf.ones([1, 3, 2]),
                   tf.ones([1, 4]))
  with pytest.raises(ValueError, match='valid'):
    mask_bce_loss(logits, tf.zeros([1, 4, 2, 3]), tf.ones([1, 2, 3]),
                  tf.ones([1, 3]))
  with pytest.raises(ValueError, match='mask_logits'):
    mask_bce_loss(tf.zeros([2, 3, 4]), tf.zeros([1, 4, 2, 3]),
                  tf.ones([1, 2, 3]), tf.ones([1, 4]))
  with pytest.raises(ValueError, match='epsilon'):
    per_mask_dice(logits, tf.zeros([1, 4, 2, 3]), tf.ones([1, 2, 3]), 0.0)
