"""Runs a MaskConver model built from an experiment and a training checkpoint.

The model comes from a registered experiment (plus YAML files and overrides,
as in training) and its weights from a checkpoint written by Model Garden's
trainer, which stores the model under the key 'model': the moving-average
(EMA) weights when the training kept them, as evaluation uses them, unless
`use_ema=False` (see `experiment_loading.restore_model_weights`). Images are
pre-processed like the evaluation parser; the panoptic merge runs at the
model input size and the maps are mapped back to the image.
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg

from maskconver import experiment_loading
from maskconver import keys
from maskconver.inference import predictor
from maskconver.inference import preprocessing
from maskconver.modeling import factory


class CheckpointPredictor(predictor.Predictor):
  """A `Predictor` built from an experiment and a checkpoint."""

  def __init__(self, params: cfg.ExperimentConfig, checkpoint_path: str,
               score_threshold: Optional[float] = None,
               use_ema: bool = True):
    """Builds the model and restores its weights.

    Args:
      params: the experiment config (see `experiment_loading.load_experiment`).
      checkpoint_path: a checkpoint prefix, or a folder (its latest).
      score_threshold: overrides the post-processor's score threshold.
      use_ema: use the moving-average weights when the checkpoint has them.

    Raises:
      ValueError: if there is no checkpoint or it does not hold this model.
    """
    model_config = params.task.model
    if score_threshold is not None:
      model_config.postprocessor.score_threshold = float(score_threshold)
    self._input_size = [int(v) for v in model_config.input_size[:2]]
    self._num_classes = model_config.num_classes
    self._num_thing_classes = model_config.num_thing_classes
    self._model = factory.build_maskconver_model(
        tf_keras.layers.InputSpec(shape=[None] + self._input_size + [3]),
        model_config)
    self._restored = experiment_loading.restore_model_weights(
        self._model, checkpoint_path, use_ema=use_ema)
    self._checkpoint_path = self._restored.checkpoint_path
    self._postprocessor = factory.build_panoptic_postprocessor(model_config)
    self._function = tf.function(
        self._run, input_signature=[
            tf.TensorSpec([1] + self._input_size + [3], tf.float32)])

  def _run(self, images: tf.Tensor):
    outputs = self._model(images, training=False)
    detections = {
        keys.MASK_LOGITS: tf.cast(outputs[keys.MASK_LOGITS], tf.float32),
        keys.DETECTED_CLASSES: outputs[keys.DETECTED_CLASSES],
        keys.DETECTED_SCORES: tf.cast(outputs[keys.DETECTED_SCORES],
                                      tf.float32),
    }
    return self._postprocessor(detections, self._input_size)

  @property
  def description(self) -> str:
    return f'checkpoint: {self._restored.description}'

  @property
  def restored_weights(self) -> experiment_loading.RestoredWeights:
    """Which weights the model holds (EMA or raw, from which file)."""
    return self._restored

  @property
  def input_size(self):
    return list(self._input_size)

  @property
  def num_classes(self) -> int:
    return self._num_classes

  @property
  def num_thing_classes(self) -> int:
    return self._num_thing_classes

  def predict(self, image: np.ndarray) -> predictor.PanopticPrediction:
    normalized, image_info = preprocessing.preprocess_image(
        image, self._input_size)
    outputs = self._function(tf.constant(normalized[None]))
    return predictor.PanopticPrediction.from_outputs(
        {k: v.numpy() for k, v in outputs.items()}, image_info=image_info,
        source=self.description)
