"""XLA-compilable resizes equal TF's own, and differentiate under XLA."""

import numpy as np
import pytest
import tensorflow as tf

from maskconver.ops import resize_ops

SIZES = [((4, 5), (8, 10)),    # the UNet's exact 2x
         ((38, 19), (75, 38)),  # odd sizes (1200 px: L5 38 -> L4 75)
         ((6, 6), (6, 6)),      # identity
         ((7, 3), (4, 9))]      # down on one axis, up on the other


@pytest.mark.parametrize('in_size,out_size', SIZES)
def test_nearest_equals_tf_image_resize(in_size, out_size):
  images = tf.constant(np.random.default_rng(0).normal(
      size=(2,) + in_size + (3,)), tf.float32)
  expected = tf.image.resize(images, out_size, method='nearest')
  np.testing.assert_array_equal(
      resize_ops.nearest_resize(images, out_size).numpy(), expected.numpy())
  # A size given as a tensor (dynamic shapes outside XLA) too.
  np.testing.assert_array_equal(
      resize_ops.nearest_resize(images, tf.constant(out_size)).numpy(),
      expected.numpy())


@pytest.mark.parametrize('in_size,out_size', SIZES)
def test_bilinear_equals_tf_image_resize(in_size, out_size):
  images = tf.constant(np.random.default_rng(1).normal(
      size=(2,) + in_size + (3,)), tf.float32)
  expected = tf.image.resize(images, out_size, method='bilinear')
  # Same kernel on the same float32 values: equal up to the last bit.
  np.testing.assert_allclose(
      resize_ops.bilinear_resize(images, out_size).numpy(), expected.numpy(),
      rtol=0, atol=1e-6)


@pytest.mark.parametrize('dtype', [tf.float32, tf.bfloat16])
@pytest.mark.parametrize('method', ['nearest', 'bilinear'])
def test_gradients_compile_with_xla(dtype, method):
  resize = getattr(resize_ops, f'{method}_resize')
  images = tf.constant(np.random.default_rng(2).normal(size=(1, 38, 19, 4)),
                       dtype)

  def loss_and_grad(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      up = resize(x, [75, 38])
      loss = tf.reduce_sum(tf.cast(up, tf.float32) ** 2)
    return loss, tape.gradient(loss, x)

  xla_loss, xla_grad = tf.function(loss_and_grad, jit_compile=True)(images)
  loss, grad = loss_and_grad(images)
  assert xla_grad.dtype == dtype
  # float32: reordered sums, ~1e-6 relative; bfloat16: the gradient is
  # rounded to 8 mantissa bits (0.4%) at the cast back.
  rtol = 1e-5 if dtype == tf.float32 else 1e-2
  np.testing.assert_allclose(float(xla_loss), float(loss), rtol=rtol)
  np.testing.assert_allclose(tf.cast(xla_grad, tf.float32).numpy(),
                             tf.cast(grad, tf.float32).numpy(), rtol=rtol,
                             atol=rtol)
  if method == 'nearest':
    # d/dx sum(up**2) = 2 * x * (number of output copies of x), the copy
    # counts taken from TF's own nearest resize gradient (outside XLA).
    ones = tf.ones([1, 38, 19, 4])
    with tf.GradientTape() as tape:
      tape.watch(ones)
      total = tf.reduce_sum(tf.image.resize(ones, [75, 38], 'nearest'))
    counts = tape.gradient(total, ones).numpy()
    assert set(np.unique(counts)) <= {1.0, 2.0, 4.0}
    np.testing.assert_allclose(
        tf.cast(xla_grad, tf.float32).numpy(),
        2 * tf.cast(images, tf.float32).numpy() * counts, rtol=rtol)


def test_nearest_upsampling_converts_to_tflite_builtins():
  # The exported phone models contain the UNet's 2x upsampling.
  function = tf.function(lambda x: resize_ops.nearest_resize(x, [8, 10]),
                         input_signature=[tf.TensorSpec([1, 4, 5, 3])])
  model = tf.lite.TFLiteConverter.from_concrete_functions(
      [function.get_concrete_function()]).convert()
  interpreter = tf.lite.Interpreter(model_content=model)
  interpreter.allocate_tensors()
  images = np.random.default_rng(3).normal(size=(1, 4, 5, 3)).astype(
      np.float32)
  interpreter.set_tensor(interpreter.get_input_details()[0]['index'], images)
  interpreter.invoke()
  np.testing.assert_array_equal(
      interpreter.get_tensor(interpreter.get_output_details()[0]['index']),
      tf.image.resize(images, [8, 10], 'nearest').numpy())
