"""Focal loss on center heatmaps against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from maskconver.losses import focal_loss
from maskconver.losses import focal_loss_terms


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def _pos(x, alpha=2.0):
  """-(1 - p)**alpha * log(p), with log(p) = -log(1 + exp(-x))."""
  return (1.0 - _sigmoid(x))**alpha * math.log1p(math.exp(-x))


def _neg(x, y, alpha=2.0, beta=4.0):
  """-(1 - y)**beta * p**alpha * log(1 - p), log(1 - p) = -log(1 + exp(x))."""
  return (1.0 - y)**beta * _sigmoid(x)**alpha * math.log1p(math.exp(x))


# One 1x2x2x1 heatmap: a positive, a near-center negative (y = 0.5), a far
# negative (y = 0) and a negative close to the center (y = 0.8).
LOGITS = [[[[0.5], [-1.0]], [[2.0], [0.0]]]]
TARGETS = [[[[1.0], [0.5]], [[0.0], [0.8]]]]
TERM_POS = _pos(0.5)
TERM_HALF = _neg(-1.0, 0.5)
TERM_FAR = _neg(2.0, 0.0)
TERM_NEAR = 0.2**4 * 0.25 * math.log(2.0)  # x = 0: p = 0.5.


def _t(value, dtype=tf.float32):
  return tf.constant(value, dtype)


def test_one_positive_and_three_negatives():
  expected = TERM_POS + TERM_HALF + TERM_FAR + TERM_NEAR
  # Spell the positive out once more from the formula as a cross-check.
  p = _sigmoid(0.5)
  assert TERM_POS == pytest.approx(-(1 - p)**2 * math.log(p))
  loss = focal_loss(_t(LOGITS), _t(TARGETS))
  assert loss.dtype == tf.float32
  assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_alpha_and_beta_are_used():
  expected = (_pos(0.5, alpha=1.0) + _neg(-1.0, 0.5, 1.0, 2.0)
              + _neg(2.0, 0.0, 1.0, 2.0) + _neg(0.0, 0.8, 1.0, 2.0))
  loss = focal_loss(_t(LOGITS), _t(TARGETS), alpha=1.0, beta=2.0)
  assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_zero_weight_removes_a_negative():
  weights = _t([[[1.0, 1.0], [0.0, 1.0]]])
  loss = focal_loss(_t(LOGITS), _t(TARGETS), weights)
  assert float(loss) == pytest.approx(TERM_POS + TERM_HALF + TERM_NEAR,
                                      rel=1e-5)


def test_zero_weight_on_the_center_removes_it_and_its_count():
  # Two positives; ignoring one removes its loss and halves the count.
  logits = _t([[[[0.5], [-1.0]], [[2.0], [1.5]]]])
  targets = _t([[[[1.0], [0.5]], [[0.0], [1.0]]]])
  full = (TERM_POS + TERM_HALF + TERM_FAR + _pos(1.5)) / 2.0
  assert float(focal_loss(logits, targets)) == pytest.approx(full, rel=1e-5)
  weights = _t([[[1.0, 1.0], [1.0, 0.0]]])
  ignored = TERM_POS + TERM_HALF + TERM_FAR
  assert float(focal_loss(logits, targets, weights)) == pytest.approx(
      ignored, rel=1e-5)
  _, num_positives = focal_loss_terms(logits, targets, weights)
  assert float(num_positives) == 1.0


def test_doubling_the_positives_halves_the_loss():
  # The fourth cell adds ~0 to the sum either way: a confidently rejected
  # background cell (logit -30) or a confidently found center (logit 30).
  # Same sum, twice the positives, half the loss.
  one_center = focal_loss(_t([[[[0.5], [-1.0]], [[2.0], [-30.0]]]]),
                          _t([[[[1.0], [0.5]], [[0.0], [0.0]]]]))
  two_centers = focal_loss(_t([[[[0.5], [-1.0]], [[2.0], [30.0]]]]),
                           _t([[[[1.0], [0.5]], [[0.0], [1.0]]]]))
  assert _neg(-30.0, 0.0) < 1e-30 and _pos(30.0) < 1e-30
  base = TERM_POS + TERM_HALF + TERM_FAR
  assert float(one_center) == pytest.approx(base, rel=1e-5)
  assert float(two_centers) == pytest.approx(base / 2.0, rel=1e-5)


def test_normalised_over_the_whole_batch():
  # Image 0 has one center, image 1 has none: total / 1, not a per-image mean.
  logits = _t([LOGITS[0], [[[-2.0], [-2.0]], [[-2.0], [-2.0]]]])
  targets = _t([TARGETS[0], [[[0.0], [0.0]], [[0.0], [0.0]]]])
  expected = (TERM_POS + TERM_HALF + TERM_FAR + TERM_NEAR
              + 4 * _neg(-2.0, 0.0))
  assert float(focal_loss(logits, targets)) == pytest.approx(expected,
                                                             rel=1e-5)
  # The same image twice: twice the sum over twice the positives.
  twice = focal_loss(_t(LOGITS * 2), _t(TARGETS * 2))
  assert float(twice) == pytest.approx(
      TERM_POS + TERM_HALF + TERM_FAR + TERM_NEAR, rel=1e-5)


def test_levels_sum_and_share_one_normaliser():
  # Level 3: the 1x2x2x1 map (1 center); level 4: 1x1x1x1 with a center.
  level4_logits = _t([[[[-0.5]]]])
  level4_targets = _t([[[[1.0]]]])
  expected = (TERM_POS + TERM_HALF + TERM_FAR + TERM_NEAR + _pos(-0.5)) / 2.0
  as_list = focal_loss([_t(LOGITS), level4_logits],
                       [_t(TARGETS), level4_targets])
  assert float(as_list) == pytest.approx(expected, rel=1e-5)
  as_dict = focal_loss(
      {'3': _t(LOGITS), '4': level4_logits},
      {'4': level4_targets, '3': _t(TARGETS)},
      {'3': tf.ones([1, 2, 2]), '4': tf.ones([1, 1, 1])})
  assert float(as_dict) == pytest.approx(expected, rel=1e-5)


def test_against_elementwise_formula_on_2x3x3x2():
  rng = np.random.default_rng(0)
  logits = rng.uniform(-3.0, 3.0, size=(2, 3, 3, 2))
  targets = rng.uniform(0.0, 0.95, size=(2, 3, 3, 2))
  targets[0, 1, 1, 0] = 1.0
  targets[1, 0, 2, 1] = 1.0
  targets[1, 2, 0, 0] = 1.0
  weights = np.ones((2, 3, 3))
  weights[0, 2, 2] = 0.0
  weights[1, 0, 0] = 0.0
  total, count = 0.0, 0
  for b, y, x, c in np.ndindex(*logits.shape):
    if weights[b, y, x] == 0.0:
      continue
    if targets[b, y, x, c] == 1.0:
      total += _pos(logits[b, y, x, c])
      count += 1
    else:
      total += _neg(logits[b, y, x, c], targets[b, y, x, c])
  loss = focal_loss(_t(logits), _t(targets), _t(weights))
  assert count == 3
  assert float(loss) == pytest.approx(total / count, rel=1e-5)


def test_no_centers_and_all_zero_weights_are_finite():
  zeros = tf.zeros([1, 2, 2, 1])
  logits = tf.Variable(LOGITS)
  with tf.GradientTape(persistent=True) as tape:
    no_centers = focal_loss(logits, zeros)
    no_weights = focal_loss(logits, _t(TARGETS), tf.zeros([1, 2, 2]))
  assert float(no_centers) == pytest.approx(
      _neg(0.5, 0) + _neg(-1.0, 0) + _neg(2.0, 0) + _neg(0.0, 0), rel=1e-5)
  assert float(no_weights) == 0.0
  assert np.all(np.isfinite(tape.gradient(no_centers, logits)))
  assert np.all(tape.gradient(no_weights, logits).numpy() == 0.0)


def test_extreme_logits_give_finite_loss_and_gradients():
  # A missed center with logit -1000: loss = -(1 - 0)**2 * log(sigmoid(-1000))
  # = 1000; log(sigmoid(.)) in float32 would be log(0) = -inf.
  logits = tf.Variable([[[[-1000.0], [1000.0]], [[-1000.0], [1000.0]]]])
  targets = _t([[[[1.0], [1.0]], [[0.0], [0.9]]]])
  with tf.GradientTape() as tape:
    loss = focal_loss(logits, targets)
  # Positives: 1000 and 0; negatives: 0 and 0.1**4 * 1 * 1000.
  assert float(loss) == pytest.approx((1000.0 + 0.1**4 * 1000.0) / 2.0,
                                      rel=1e-5)
  assert np.all(np.isfinite(tape.gradient(loss, logits)))


@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16])
def test_mixed_precision_logits_are_computed_in_float32(dtype):
  loss = focal_loss(_t(LOGITS, dtype), _t(TARGETS))
  assert loss.dtype == tf.float32
  assert float(loss) == pytest.approx(
      TERM_POS + TERM_HALF + TERM_FAR + TERM_NEAR, rel=1e-5)


def test_works_inside_tf_function():
  fn = tf.function(focal_loss)
  assert float(fn(_t(LOGITS), _t(TARGETS))) == pytest.approx(
      TERM_POS + TERM_HALF + TERM_FAR + TERM_NEAR, rel=1e-5)


def test_bad_inputs_name_the_argument():
  with pytest.raises(ValueError, match='targets'):
    focal_loss(_t(LOGITS), tf.zeros([1, 2, 3, 1]))
  with pytest.raises(ValueError, match='weights'):
    focal_loss(_t(LOGITS), _t(TARGETS), tf.zeros([1, 2, 2, 1]))
  with pytest.raises(ValueError, match='logits'):
    focal_loss(tf.zeros([2, 2, 1]), tf.zeros([2, 2, 1]))
  with pytest.raises(ValueError, match=r"levels \['3', '5'\]"):
    focal_loss({'3': _t(LOGITS), '4': _t(LOGITS)},
               {'3': _t(TARGETS), '5': _t(TARGETS)})
