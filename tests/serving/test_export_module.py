"""SavedModel export: signatures, reload == eager, maps at the image size."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from maskconver import keys
from maskconver.serving import export_module


def _encoded(image: np.ndarray) -> bytes:
  return tf.io.encode_png(image).numpy()


def _tf_example(image: np.ndarray) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      keys.IMAGE_ENCODED: tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[_encoded(image)])),
  })).SerializeToString()


# Integer and boolean outputs (maps, classes, thing flags) must agree
# exactly. Float outputs (segment scores, image info) may differ in their
# last bits between two ways of computing them that sum in another order: a
# batch of two vs one image, AVX2 vs AVX-512 oneDNN kernels, oneDNN on or
# off (measured on segment scores in [0, 1]: at most 1.8e-7, 3 ulps). 1e-5
# is 50x that and 80x below the closest two segment scores of the test
# images (0.7452 and 0.7444), so a score taken from another segment or image
# still fails; the exact integer outputs catch any mix-up of maps.
_FLOAT_ATOL = 1e-5


def _assert_outputs_equal(actual, expected, output_keys, index=None):
  for key in output_keys:
    got = np.asarray(actual[key])
    want = np.asarray(expected[key])
    if index is not None:
      got, want = got[index], want[0]
    if want.dtype.kind == 'f':
      np.testing.assert_allclose(got, want, rtol=0, atol=_FLOAT_ATOL,
                                 err_msg=key)
    else:
      np.testing.assert_array_equal(got, want, err_msg=key)


def _assert_same(actual, expected):
  assert sorted(actual) == sorted(export_module.OUTPUT_KEYS)
  _assert_outputs_equal(actual, expected, export_module.OUTPUT_KEYS)


@pytest.mark.parametrize('signature,make_input', [
    ('serving_default', lambda image: image[np.newaxis]),
    ('image_bytes', lambda image: np.array([_encoded(image)])),
    ('tf_example', lambda image: np.array([_tf_example(image)])),
])
def test_reloaded_saved_model_equals_eager(tiny_module, exported, test_image,
                                           serving, signature, make_input):
  eager = tiny_module.serve(tf.constant(test_image[np.newaxis]))
  assert serving.num_segments(eager) >= 2
  loaded = tf.saved_model.load(exported)
  outputs = loaded.signatures[signature](inputs=tf.constant(
      make_input(test_image)))
  _assert_same(outputs, eager)


def test_reloaded_tflite_signature_equals_eager(tiny_module, exported,
                                                test_image, serving):
  normalized, _ = tiny_module.preprocess(tf.constant(test_image))
  eager = tiny_module.serve_normalized(normalized[tf.newaxis])
  assert serving.num_segments(eager) >= 1
  loaded = tf.saved_model.load(exported)
  _assert_same(loaded.signatures['tflite'](inputs=normalized[tf.newaxis]),
               eager)


def test_split_signatures_chain_to_the_tflite_signature(exported, tiny_module,
                                                        test_image, serving):
  loaded = tf.saved_model.load(exported)
  normalized, _ = tiny_module.preprocess(tf.constant(test_image))
  network = loaded.signatures['network'](inputs=normalized[tf.newaxis])
  assert network[keys.MASK_LOGITS].shape == [1, 16, 16,
                                             serving.num_instances]
  merged = loaded.signatures['postprocess'](**network)
  whole = loaded.signatures['tflite'](inputs=normalized[tf.newaxis])
  _assert_outputs_equal(merged, whole, export_module.OUTPUT_KEYS[:-1])


def _map_agreement(actual, expected):
  return min(np.mean(np.asarray(actual[key]) == np.asarray(expected[key]))
             for key in (keys.CATEGORY_MASK, keys.INSTANCE_MASK,
                         keys.PANOPTIC_SEGMENT_MAP))


def _assert_twin_equals(network, twin):
  # The twin's einsum is a matmul: the same products summed in another
  # order. Logits here are O(10); float32 rounding of 32-channel sums stays
  # below 1e-5 of that, so 1e-4 absolute is ~10x the rounding and far below
  # what a wrong product (another mask's embedding) would change.
  np.testing.assert_allclose(twin[keys.MASK_LOGITS],
                             network[keys.MASK_LOGITS], rtol=0, atol=1e-4)
  for key in (keys.DETECTED_CLASSES, keys.DETECTED_SCORES):
    np.testing.assert_array_equal(twin[key], network[key], err_msg=key)


def test_int8_twins_compute_what_their_signatures_compute(exported,
                                                          tiny_module,
                                                          test_image, serving):
  loaded = tf.saved_model.load(exported)
  assert sorted(name for name in loaded.signatures
                if name.endswith(export_module.INT8_TWIN_SUFFIX)) == [
                    'network_int8', 'tflite_int8']
  normalized, _ = tiny_module.preprocess(tf.constant(test_image))
  inputs = normalized[tf.newaxis]
  _assert_twin_equals(loaded.signatures['network'](inputs=inputs),
                      loaded.signatures['network_int8'](inputs=inputs))
  whole = loaded.signatures['tflite'](inputs=inputs)
  assert serving.num_segments(whole) >= 1
  # A pixel whose two best detections rank within float rounding of each
  # other could flip; measured: none does.
  assert _map_agreement(loaded.signatures['tflite_int8'](inputs=inputs),
                        whole) >= 0.995


@pytest.mark.parametrize('batch_size,input_type', [(None, 'tflite'),
                                                   (1, 'image_tensor')])
def test_int8_twins_only_for_batch_one_tflite_signatures(
    tiny_params, tiny_module, batch_size, input_type):
  module = export_module.MaskConverModule(
      tiny_params, batch_size=batch_size, input_image_size=[64, 64],
      input_type=input_type, model=tiny_module.model)
  assert sorted(module.get_inference_signatures(
      {input_type: 'serving_default'})) == ['serving_default']


def test_int8_twin_names_are_reserved(tiny_params, tiny_module):
  module = export_module.MaskConverModule(
      tiny_params, batch_size=1, input_image_size=[64, 64],
      model=tiny_module.model)
  with pytest.raises(ValueError, match=r"\['serving_default_int8'\] are the "
                     r"int8 twins of \['tflite'\]"):
    module.get_inference_signatures({'tflite': 'serving_default',
                                     'tflite_uint8': 'serving_default_int8'})


def test_stuff_region_model_gets_an_int8_twin(serving):
  # Stuff as regions projects the features twice (things, then the stuff
  # regions' embeddings): both calls take the twin's form.
  params = serving.make_params(
      {'task': {'model': {'stuff_representation': 'region'}}})
  module = export_module.MaskConverModule(params, batch_size=1,
                                          input_image_size=[64, 64])
  signatures = module.get_inference_signatures({'network': 'network'})
  assert sorted(signatures) == ['network', 'network_int8']
  inputs = tf.random.stateless_normal([1, 64, 64, 3], seed=[3, 4])
  network = signatures['network'](inputs)
  # K thing detections + one per stuff class.
  assert network[keys.MASK_LOGITS].shape == [1, 16, 16,
                                             serving.num_instances + 3]
  _assert_twin_equals(network, signatures['network_int8'](inputs))


def test_outputs_come_at_the_input_image_resolution(tiny_module, test_image):
  outputs = tiny_module.serve(tf.constant(test_image[np.newaxis]))
  for key in (keys.CATEGORY_MASK, keys.INSTANCE_MASK,
              keys.PANOPTIC_SEGMENT_MAP):
    assert outputs[key].shape == [1, 48, 80]
    assert outputs[key].dtype == tf.int32
  assert outputs[keys.SEGMENT_CLASSES_OUT].shape == [1, 6]
  assert outputs[keys.SEGMENT_IS_THING_OUT].dtype == tf.bool
  # 48x80 into 64x64: scale min(64/48, 64/80) = 0.8, scaled 38.4 -> 38 x 64,
  # so the scales are 38 / 48 and 64 / 80; row 1 is the desired (input) size.
  np.testing.assert_allclose(outputs[keys.IMAGE_INFO][0],
                             [[48, 80], [64, 64], [38 / 48, 0.8], [0, 0]],
                             rtol=1e-6)


def test_batch_of_two_equals_images_one_by_one(tiny_params, tiny_module,
                                               test_image, serving):
  module = export_module.MaskConverModule(
      tiny_params, batch_size=None, input_image_size=[64, 64],
      model=tiny_module.model)
  second = test_image[::-1].copy()
  both = module.serve(tf.constant(np.stack([test_image, second])))
  assert serving.num_segments(both) >= 2
  for index, image in enumerate((test_image, second)):
    alone = module.serve(tf.constant(image[np.newaxis]))
    _assert_outputs_equal(both, alone, export_module.OUTPUT_KEYS, index)


class _FixedNetwork(tf_keras.Model):
  """Returns the same mask logits and detections for any image."""

  def __init__(self, mask_logits, classes, scores):
    super().__init__()
    self._outputs = {
        keys.MASK_LOGITS: tf.constant(mask_logits, tf.float32),
        keys.DETECTED_CLASSES: tf.constant(classes, tf.int32),
        keys.DETECTED_SCORES: tf.constant(scores, tf.float32),
    }

  def call(self, images, training=None):
    batch = tf.shape(images)[0]
    return {k: tf.repeat(v[tf.newaxis], batch, axis=0)
            for k, v in self._outputs.items()}


@pytest.mark.parametrize('height,width,expected_info', [
    # Fits 16x16 at scale 1: the image covers mask cells rows 0-1, cols 0-3.
    (8, 16, [[8, 16], [16, 16], [1, 1], [0, 0]]),
    # Scale 0.25: the same cells, stretched 4x onto the original pixels.
    (32, 64, [[32, 64], [16, 16], [0.25, 0.25], [0, 0]]),
])
def test_padding_is_cropped_and_masks_land_on_the_original_pixels(
    tiny_params, height, width, expected_info):
  # 16x16 input -> 4x4 mask cells. Mask 0 (class 0, a thing) covers cell
  # columns 0-1 and mask 1 (class 5, stuff) columns 2-3 of the image rows
  # 0-1; rows 2-3 are padding, where both are off. Logits +-10 put the
  # hard-sigmoid probabilities at 1 / 0; the bilinear crossing between cell
  # columns 1 and 2 is at input x = 8, i.e. original x = width / 2.
  logits = np.full((4, 4, 2), -10.0, np.float32)
  logits[:2, :2, 0] = 10.0
  logits[:2, 2:, 1] = 10.0
  module = export_module.MaskConverModule(
      tiny_params, batch_size=None, input_image_size=[16, 16],
      model=_FixedNetwork(logits, [0, 5], [0.9, 0.8]))
  outputs = module.serve(tf.zeros([1, height, width, 3], tf.uint8))
  half = width // 2
  expected_segments = np.zeros((height, width), np.int32)
  expected_segments[:, :half] = 1
  expected_segments[:, half:] = 2
  np.testing.assert_array_equal(outputs[keys.PANOPTIC_SEGMENT_MAP][0],
                                expected_segments)
  np.testing.assert_array_equal(outputs[keys.CATEGORY_MASK][0],
                                np.where(expected_segments == 1, 0, 5))
  np.testing.assert_array_equal(outputs[keys.INSTANCE_MASK][0],
                                (expected_segments == 1).astype(np.int32))
  np.testing.assert_array_equal(outputs[keys.SEGMENT_CLASSES_OUT][0], [0, 5])
  np.testing.assert_array_equal(outputs[keys.SEGMENT_IS_THING_OUT][0],
                                [True, False])
  # The scores are the detections' float32 values passed through; the info
  # is float32 arithmetic on the sizes (0.25, 1 exact): float32 rounding of
  # the literals is below 3e-8 relative, 1e-6 leaves 30x.
  np.testing.assert_allclose(outputs[keys.SEGMENT_SCORES_OUT][0], [0.9, 0.8],
                             rtol=1e-6)
  np.testing.assert_allclose(outputs[keys.IMAGE_INFO][0], expected_info,
                             rtol=1e-6)


def test_tflite_path_keeps_the_input_size_and_identity_info(tiny_params):
  logits = np.full((4, 4, 2), -10.0, np.float32)
  logits[:2, :2, 0] = 10.0
  module = export_module.MaskConverModule(
      tiny_params, batch_size=None, input_image_size=[16, 16],
      model=_FixedNetwork(logits, [0, 5], [0.9, 0.8]))
  outputs = module.serve_normalized(tf.zeros([1, 16, 16, 3]))
  # Mask 0 is +10 on cells [0:2, 0:2]. At pixel 7 the bilinear weight of
  # cell 1 is 0.625, at pixel 6 it is 0.875, below 1, so the logit at
  # (y, x) <= 7 is 10 * (2 * wy * wx - 1): positive except at (7, 7)
  # (0.625**2 < 0.5). Mask 1 is off everywhere.
  expected = np.zeros((16, 16), np.int32)
  expected[:8, :8] = 1
  expected[7, 7] = 0
  np.testing.assert_array_equal(outputs[keys.PANOPTIC_SEGMENT_MAP][0],
                                expected)
  np.testing.assert_array_equal(outputs[keys.IMAGE_INFO][0],
                                [[16, 16], [16, 16], [1, 1], [0, 0]])


def test_bad_arguments_name_what_is_wrong(tiny_params, tiny_module):
  with pytest.raises(ValueError, match='input_type'):
    export_module.MaskConverModule(tiny_params, batch_size=1,
                                   input_image_size=[64, 64],
                                   input_type='jpeg', model=tiny_module.model)
  with pytest.raises(ValueError, match='input_image_size'):
    export_module.MaskConverModule(tiny_params, batch_size=1,
                                   input_image_size=[64],
                                   model=tiny_module.model)
  with pytest.raises(ValueError, match='unknown input type'):
    tiny_module.get_inference_signatures({'video': 'serving_default'})
