"""Tests of the MaskFormer-style panoptic post-processor."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from maskconver import keys
from maskconver.modeling import panoptic_postprocessor

# Training classes 0, 1 are things; 2, 3 are stuff.
_NUM_CLASSES = 4
_NUM_THINGS = 2
_V = keys.VOID_CLASS
# Hard-sigmoid logits giving exact probabilities: relu6(x + 3) / 6.
_P1, _P0 = 3.0, -3.0


def _layer(**kwargs):
  kwargs.setdefault('mask_activation', 'hard_sigmoid')
  return panoptic_postprocessor.PanopticPostprocessor(
      num_classes=_NUM_CLASSES, num_thing_classes=_NUM_THINGS, **kwargs)


def _inputs(masks, classes, scores):
  """masks: K logit maps [h, w] of one image."""
  return {
      keys.MASK_LOGITS: tf.constant(np.stack(masks, -1)[None], tf.float32),
      keys.DETECTED_CLASSES: tf.constant([classes], tf.int32),
      keys.DETECTED_SCORES: tf.constant([scores], tf.float32),
  }


def _run(masks, classes, scores, **kwargs):
  outputs = _layer(**kwargs)(_inputs(masks, classes, scores),
                             np.shape(masks[0]))
  return {k: v.numpy()[0] for k, v in outputs.items()}


def _columns(values, height=4):
  """A map whose column j is values[j]."""
  return np.tile(np.asarray(values, np.float32), (height, 1))


def _random_detections(rng, batch, size, k):
  """Random logits, mostly one region per detection, classes and scores."""
  regions = rng.integers(0, k, size=(batch, size, size))
  logits = (np.where(regions[..., None] == np.arange(k), 4.0, -4.0) +
            rng.normal(0, 2, size=(batch, size, size, k))).astype(np.float32)
  classes = rng.integers(0, _NUM_CLASSES, size=(batch, k)).astype(np.int32)
  scores = rng.uniform(0, 1, size=(batch, k)).astype(np.float32)
  return logits, classes, scores


def test_score_threshold_drops_a_detection():
  top = np.where(np.arange(4)[:, None] < 2, _P1, _P0) * np.ones((4, 4))
  # Detection 2 scores above the threshold but its probability is 1/3 < 0.5
  # where it wins: those pixels are void.
  weak = np.full((4, 4), -1.0)
  out = _run([top, -top, weak], classes=[0, 2, 3], scores=[0.9, 0.1, 0.8])
  expected_segments = np.array([[1] * 4] * 2 + [[0] * 4] * 2)
  np.testing.assert_array_equal(out[keys.PANOPTIC_SEGMENT_MAP],
                                expected_segments)
  np.testing.assert_array_equal(out[keys.CATEGORY_MASK],
                                np.where(expected_segments == 1, 0, _V))
  np.testing.assert_array_equal(out[keys.INSTANCE_MASK], expected_segments)
  np.testing.assert_array_equal(out[keys.SEGMENT_CLASSES_OUT], [0, _V, _V])
  np.testing.assert_allclose(out[keys.SEGMENT_SCORES_OUT], [0.9, 0, 0])
  np.testing.assert_array_equal(out[keys.SEGMENT_IS_THING_OUT],
                                [True, False, False])


@pytest.mark.parametrize('overlap_threshold, kept', [(0.75, False),
                                                     (0.5, True)])
def test_overlap_threshold_drops_a_mostly_occluded_detection(
    overlap_threshold, kept):
  # Detection 0 covers columns 0-2; detection 1 (lower score) covers 2-3 and
  # wins only column 3: 4 / 8 = 0.5 of its mask.
  front = _columns([_P1, _P1, _P1, _P0])
  back = _columns([_P0, _P0, _P1, _P1])
  out = _run([front, back], classes=[0, 1], scores=[0.9, 0.6],
             overlap_threshold=overlap_threshold)
  last = 2 if kept else 0
  np.testing.assert_array_equal(out[keys.PANOPTIC_SEGMENT_MAP],
                                _columns([1, 1, 1, last]))
  np.testing.assert_array_equal(out[keys.CATEGORY_MASK],
                                _columns([0, 0, 0, 1 if kept else _V]))
  np.testing.assert_array_equal(out[keys.INSTANCE_MASK],
                                _columns([1, 1, 1, last]))
  np.testing.assert_array_equal(out[keys.SEGMENT_CLASSES_OUT],
                                [0, 1 if kept else _V])


def test_two_stuff_detections_of_one_class_merge():
  left = _columns([_P1, _P1, _P0, _P0])
  out = _run([left, -left, -left], classes=[2, 2, 3],
             scores=[0.7, 0.9, 0.1])
  # Both halves become the segment of detection 1, the better score.
  np.testing.assert_array_equal(out[keys.PANOPTIC_SEGMENT_MAP],
                                np.full((4, 4), 2))
  np.testing.assert_array_equal(out[keys.CATEGORY_MASK], np.full((4, 4), 2))
  np.testing.assert_array_equal(out[keys.INSTANCE_MASK], np.zeros((4, 4)))
  np.testing.assert_array_equal(out[keys.SEGMENT_CLASSES_OUT], [_V, 2, _V])
  np.testing.assert_allclose(out[keys.SEGMENT_SCORES_OUT], [0, 0.9, 0])
  np.testing.assert_array_equal(out[keys.SEGMENT_IS_THING_OUT],
                                [False, False, False])


def test_two_things_of_one_class_get_distinct_instance_ids():
  left = _columns([_P1, _P1, _P0, _P0])
  # Detection 0 is dropped by its score: instance ids stay 1, 2.
  out = _run([left, left, -left], classes=[1, 1, 1],
             scores=[0.1, 0.8, 0.7])
  np.testing.assert_array_equal(out[keys.INSTANCE_MASK],
                                _columns([1, 1, 2, 2]))
  np.testing.assert_array_equal(out[keys.PANOPTIC_SEGMENT_MAP],
                                _columns([2, 2, 3, 3]))
  np.testing.assert_array_equal(out[keys.CATEGORY_MASK], np.ones((4, 4)))
  np.testing.assert_array_equal(out[keys.SEGMENT_CLASSES_OUT], [_V, 1, 1])
  np.testing.assert_array_equal(out[keys.SEGMENT_IS_THING_OUT],
                                [False, True, True])


@pytest.mark.parametrize('logit, winner', [
    (0.6, 2),   # probability 0.6: 0.9 * 0.6 = 0.54 < 0.6 * 1.0.
    (1.2, 1),   # probability 0.7: 0.9 * 0.7 = 0.63 > 0.6 * 1.0.
])
def test_overlap_resolved_by_score_times_probability(logit, winner):
  # Column 3: detection 0 (score 0.9) with the given probability against
  # detection 1 (score 0.6) with probability 1.
  first = _columns([_P1, _P1, _P1, logit])
  second = _columns([_P0, _P0, _P0, _P1])
  out = _run([first, second], classes=[0, 3], scores=[0.9, 0.6])
  np.testing.assert_array_equal(out[keys.PANOPTIC_SEGMENT_MAP],
                                _columns([1, 1, 1, winner]))
  np.testing.assert_array_equal(out[keys.CATEGORY_MASK],
                                _columns([0, 0, 0, 3 if winner == 2 else 0]))
  # Detection 1 is kept only if it wins its pixels.
  np.testing.assert_array_equal(out[keys.SEGMENT_CLASSES_OUT],
                                [0, 3 if winner == 2 else _V])


def test_no_detection_gives_all_void():
  out = _run([np.full((5, 5), _P1)] * 3, classes=[0, 2, _V],
             scores=[0.19, 0.0, 0.9])
  np.testing.assert_array_equal(out[keys.CATEGORY_MASK], np.full((5, 5), _V))
  np.testing.assert_array_equal(out[keys.INSTANCE_MASK], np.zeros((5, 5)))
  np.testing.assert_array_equal(out[keys.PANOPTIC_SEGMENT_MAP],
                                np.zeros((5, 5)))
  np.testing.assert_array_equal(out[keys.SEGMENT_CLASSES_OUT], [_V] * 3)
  np.testing.assert_array_equal(out[keys.SEGMENT_SCORES_OUT], [0.0] * 3)
  np.testing.assert_array_equal(out[keys.SEGMENT_IS_THING_OUT], [False] * 3)


def test_bilinear_upsampling_with_sigmoid():
  # 2x2 logits upsampled to 4x4 (half-pixel centers): the columns get
  # 10, 0.75 * 10 - 0.25 * 10 = 5, -5, -10.
  masks = np.array([[10.0, -10.0], [10.0, -10.0]])[None, :, :, None]
  layer = _layer(mask_activation='sigmoid', output_size=(4, 4))
  out = layer({keys.MASK_LOGITS: tf.constant(masks, tf.float32),
               keys.DETECTED_CLASSES: tf.constant([[0]]),
               keys.DETECTED_SCORES: tf.constant([[0.5]])})
  np.testing.assert_array_equal(out[keys.PANOPTIC_SEGMENT_MAP][0],
                                _columns([1, 1, 0, 0]))


def test_batch_matches_single_images():
  logits, classes, scores = _random_detections(np.random.default_rng(3),
                                                batch=2, size=5, k=6)
  layer = _layer()
  batch = layer({keys.MASK_LOGITS: logits, keys.DETECTED_CLASSES: classes,
                 keys.DETECTED_SCORES: scores}, (5, 5))
  for i in range(2):
    single = layer({keys.MASK_LOGITS: logits[i:i + 1],
                    keys.DETECTED_CLASSES: classes[i:i + 1],
                    keys.DETECTED_SCORES: scores[i:i + 1]}, (5, 5))
    for key, value in single.items():
      np.testing.assert_array_equal(batch[key][i], value[0])
  assert batch[keys.PANOPTIC_SEGMENT_MAP].numpy().max() > 0


def test_max_candidates_gives_the_same_result_with_few_detections():
  logits, classes, scores = _random_detections(np.random.default_rng(5),
                                                batch=2, size=6, k=8)
  # Four detections per image pass the threshold.
  scores[:, ::2] = 0.05
  scores[:, 1::2] = [0.9, 0.6, 0.8, 0.7]
  inputs = {keys.MASK_LOGITS: logits, keys.DETECTED_CLASSES: classes,
            keys.DETECTED_SCORES: scores}
  full = _layer()(inputs, (6, 6))
  selected = _layer(max_candidates=4)(inputs, (6, 6))
  for key, value in full.items():
    np.testing.assert_array_equal(selected[key], value, err_msg=key)
  assert len(np.unique(full[keys.PANOPTIC_SEGMENT_MAP])) > 3


def test_max_candidates_keeps_the_best_scores():
  left = _columns([_P1, _P1, _P0, _P0])
  out = _run([left, -left, left], classes=[0, 1, 2], scores=[0.5, 0.7, 0.9],
             max_candidates=2)
  # Detection 0 is not a candidate: detection 2 (stuff) takes the left half.
  np.testing.assert_array_equal(out[keys.PANOPTIC_SEGMENT_MAP],
                                _columns([3, 3, 2, 2]))
  np.testing.assert_array_equal(out[keys.INSTANCE_MASK],
                                _columns([0, 0, 1, 1]))
  np.testing.assert_array_equal(out[keys.SEGMENT_CLASSES_OUT], [_V, 1, 2])
  np.testing.assert_allclose(out[keys.SEGMENT_SCORES_OUT], [0, 0.7, 0.9])
  np.testing.assert_array_equal(out[keys.SEGMENT_IS_THING_OUT],
                                [False, True, False])


def test_get_config_round_trip():
  layer = _layer(score_threshold=0.3, overlap_threshold=0.6,
                 mask_threshold=0.4, output_size=(8, 6), max_candidates=5)
  config = layer.get_config()
  clone = panoptic_postprocessor.PanopticPostprocessor.from_config(config)
  assert clone.get_config() == config
  assert config['output_size'] == [8, 6]
  assert config['mask_activation'] == 'hard_sigmoid'
  revived = tf_keras.layers.deserialize(tf_keras.layers.serialize(layer))
  assert isinstance(revived, panoptic_postprocessor.PanopticPostprocessor)
  assert revived.get_config() == config


@pytest.mark.parametrize('kwargs, message', [
    ({'score_threshold': 1.5}, 'score_threshold must lie in'),
    ({'mask_activation': 'relu'}, 'mask_activation must be one of'),
    ({'output_size': (4,)}, 'output_size must be'),
    ({'max_candidates': 0}, 'max_candidates must be positive'),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _layer(**kwargs)


def test_needs_a_size():
  with pytest.raises(ValueError, match='needs output_size or an image_size'):
    _layer()(_inputs([np.zeros((2, 2))], [0], [0.5]))


@pytest.mark.parametrize('max_candidates', [None, 4])
def test_converts_to_tflite_builtins_and_matches_eager(max_candidates):
  layer = _layer(mask_activation='sigmoid', output_size=(16, 16),
                 max_candidates=max_candidates)
  signature = [tf.TensorSpec([1, 8, 8, 6], tf.float32, name='logits'),
               tf.TensorSpec([1, 6], tf.int32, name='classes'),
               tf.TensorSpec([1, 6], tf.float32, name='scores')]

  @tf.function(input_signature=signature)
  def postprocess(logits, classes, scores):
    return layer({keys.MASK_LOGITS: logits, keys.DETECTED_CLASSES: classes,
                  keys.DETECTED_SCORES: scores})

  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [postprocess.get_concrete_function()], layer)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  interpreter = tf.lite.Interpreter(model_content=converter.convert())
  runner = interpreter.get_signature_runner()

  logits, _, _ = _random_detections(np.random.default_rng(0), batch=1,
                                    size=8, k=6)
  classes = np.array([[0, 1, 2, 3, 0, 2]], np.int32)
  scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.15, 0.5]], np.float32)
  lite = runner(logits=logits, classes=classes, scores=scores)
  eager = postprocess(logits, classes, scores)
  assert set(lite) == set(eager)
  for key, value in eager.items():
    np.testing.assert_array_equal(lite[key], value.numpy(), err_msg=key)
  assert len(np.unique(lite[keys.PANOPTIC_SEGMENT_MAP])) > 2
