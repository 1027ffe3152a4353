"""The three model backends on one tiny model: same panoptic maps."""

import json

import numpy as np
import pytest

from maskconver import keys
from maskconver.inference import checkpoint_predictor
from maskconver.inference import predictor_factory
from maskconver.inference import saved_model_predictor
from maskconver.inference import tflite_predictor

import demo_models


def _agreement(a, b):
  """Fraction of pixels with the same class, instance and segment index."""
  a, b = a.at_image_size(), b.at_image_size()
  same = ((a.category_mask == b.category_mask) &
          (a.instance_mask == b.instance_mask) &
          (a.segment_map == b.segment_map))
  return float(same.mean())


def test_backends_and_class_counts(predictors, tiny_models):
  assert isinstance(predictors['saved_model'],
                    saved_model_predictor.SavedModelPredictor)
  assert isinstance(predictors['tflite'], tflite_predictor.TfLitePredictor)
  assert isinstance(predictors['checkpoint'],
                    checkpoint_predictor.CheckpointPredictor)
  assert predictors['tflite'].input_size == [demo_models.INPUT_SIZE] * 2
  assert predictors['checkpoint'].num_classes == tiny_models.num_classes
  assert predictors['checkpoint'].num_thing_classes == 4
  assert predictors['saved_model'].num_classes is None


def test_same_panoptic_map_at_the_model_input_size(predictors):
  image = demo_models.calibration_image(demo_models.INPUT_SIZE,
                                        demo_models.INPUT_SIZE)
  results = {name: p.predict(image) for name, p in predictors.items()}
  reference = results['tflite']
  # A thing and a stuff segment: the comparison is not between empty maps.
  assert reference.num_segments >= 2
  assert set(reference.segment_is_thing[reference.segment_classes >= 0]) == {
      True, False}
  for name, result in results.items():
    assert result.image_size == image.shape[:2]
    agreement = _agreement(result, reference)
    print(f'{name} vs tflite at 32x32: pixel agreement {agreement:.4f}')
    assert agreement >= 0.99, name
    np.testing.assert_array_equal(result.segment_classes,
                                  reference.segment_classes)


def test_same_panoptic_map_on_a_larger_non_square_image(predictors):
  # 72x120 -> scaled by 32/120 to 19x32 (rounded) and padded to 32x32.
  image = demo_models.calibration_image(72, 120)
  results = {name: p.predict(image) for name, p in predictors.items()}
  for result in results.values():
    assert result.at_image_size().segment_map.shape == (72, 120)
  # Same pre- and post-processing: identical up to float rounding.
  agreement = _agreement(results['checkpoint'], results['tflite'])
  print(f'checkpoint vs tflite at 72x120: pixel agreement {agreement:.4f}')
  assert agreement >= 0.99
  # The SavedModel merges at the image resolution (bilinear mask logits),
  # the TFLite model at the input size (then nearest neighbour): they
  # differ only along segment borders.
  agreement = _agreement(results['saved_model'], results['tflite'])
  print(f'saved_model vs tflite at 72x120: pixel agreement {agreement:.4f}')
  assert agreement >= 0.9
  assert results['tflite'].num_segments >= 1


def test_load_predictor_errors(tmp_path, tiny_models):
  with pytest.raises(ValueError, match='no such file'):
    predictor_factory.load_predictor(model=str(tmp_path / 'nothing'))
  onnx = tmp_path / 'model.onnx'
  onnx.write_bytes(b'x')
  with pytest.raises(ValueError, match='SavedModel directory or a .tflite'):
    predictor_factory.load_predictor(model=str(onnx))
  with pytest.raises(ValueError, match='not a SavedModel directory'):
    predictor_factory.load_predictor(model=str(tmp_path))
  corrupt = tmp_path / 'corrupt'
  corrupt.mkdir()
  (corrupt / 'saved_model.pb').write_bytes(b'garbage')
  with pytest.raises(ValueError, match='corrupt: cannot load the SavedModel'):
    predictor_factory.load_predictor(model=str(corrupt))
  fake = tmp_path / 'fake.tflite'
  fake.write_bytes(b'not a flatbuffer')
  with pytest.raises(ValueError, match='fake.tflite'):
    predictor_factory.load_predictor(model=str(fake))
  with pytest.raises(ValueError, match='needs --checkpoint_path'):
    predictor_factory.load_predictor(experiment=demo_models.EXPERIMENT)
  with pytest.raises(ValueError, match='not both'):
    predictor_factory.load_predictor(model=tiny_models.tflite_path,
                                     experiment=demo_models.EXPERIMENT)
  with pytest.raises(ValueError, match='not a registered experiment'):
    predictor_factory.load_predictor(experiment='no_such_experiment',
                                     checkpoint_path=tiny_models.checkpoint_dir)
  with pytest.raises(ValueError, match='no checkpoint in this directory'):
    predictor_factory.load_predictor(
        experiment=demo_models.EXPERIMENT, checkpoint_path=str(tmp_path),
        params_override=tiny_models.params_override)


def test_checkpoint_of_another_model_is_rejected(tiny_models):
  # Same experiment, wider heads: the tiny checkpoint does not fit.
  override = json.loads(tiny_models.params_override)
  override['task']['model']['center_head']['num_filters'] = 16
  with pytest.raises(ValueError, match='does not match the model'):
    predictor_factory.load_predictor(
        experiment=demo_models.EXPERIMENT,
        checkpoint_path=tiny_models.checkpoint_prefix,
        params_override=json.dumps(override))


def test_score_threshold_reaches_the_checkpoint_postprocessor(tiny_models):
  strict = predictor_factory.load_predictor(
      experiment=demo_models.EXPERIMENT,
      checkpoint_path=tiny_models.checkpoint_dir,
      params_override=tiny_models.params_override, score_threshold=0.99)
  image = demo_models.calibration_image(demo_models.INPUT_SIZE,
                                        demo_models.INPUT_SIZE)
  result = strict.predict(image)
  assert result.num_segments == 0
  assert np.all(result.at_image_size().category_mask == keys.VOID_CLASS)
