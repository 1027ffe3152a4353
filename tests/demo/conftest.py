"""Session fixtures of the demo tests (helpers in demo_models.py).

* `tiny_models` -> `demo_models.TinyModels`: the tiny model as a
  checkpoint, a SavedModel and a TFLite file, built once per session.
* `predictors` -> {'saved_model', 'tflite', 'checkpoint'}: the three
  backends on it, loaded once.
"""

import pytest

from maskconver.inference import predictor_factory

import demo_models


@pytest.fixture(scope='session')
def tiny_models(tmp_path_factory) -> demo_models.TinyModels:
  return demo_models.build_tiny_models(
      str(tmp_path_factory.mktemp('tiny_models')))


@pytest.fixture(scope='session')
def predictors(tiny_models):
  """{'saved_model', 'tflite', 'checkpoint'}: the backends, loaded once."""
  return {
      'saved_model': predictor_factory.load_predictor(
          model=tiny_models.saved_model_dir),
      'tflite': predictor_factory.load_predictor(model=tiny_models.tflite_path),
      'checkpoint': predictor_factory.load_predictor(
          experiment=demo_models.EXPERIMENT,
          checkpoint_path=tiny_models.checkpoint_dir,
          params_override=tiny_models.params_override),
  }
