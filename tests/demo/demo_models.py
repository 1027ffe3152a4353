"""Test helpers of the demo tests: one tiny model in three forms, inputs.

`build_tiny_models(root)` -> `TinyModels`: a MaskConver (ResNet-10 at width
1/4, heads on level 3 only, 32x32 input, K = 6, score threshold 0) built
from the `maskconver_synthetic` experiment plus `PARAMS_OVERRIDE`, saved as

* a training checkpoint (`tf.train.Checkpoint(model=model)`, as Model
  Garden's trainer saves it),
* a SavedModel with the serving contract of `maskconver.serving`
  (signature 'serving_default', input 'inputs' uint8 [1, h, w, 3], the
  panoptic outputs at the image resolution plus 'image_info'),
* a TFLite model of the `tflite` input type (float32 [1, 32, 32, 3]
  normalized input, outputs at the input size).

The SavedModel and TFLite functions are written here, from the same model,
post-processor and parser ops, so that these tests do not depend on the
exporters' timing; only the variables are tracked (no Keras layer
serialization), which keeps the export to a few seconds.

Also `calibration_image` (flat colour blocks the tiny model segments) and
`write_video` (a small mp4).
"""

import dataclasses
import json
import os

import cv2
import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.ops import preprocess_ops

from maskconver import experiment_loading
from maskconver import keys
from maskconver.modeling import factory

EXPERIMENT = 'maskconver_synthetic'
INPUT_SIZE = 32
PARAMS_OVERRIDE = {'task': {'model': {
    'input_size': [INPUT_SIZE, INPUT_SIZE, 3],
    'embedding_size': 8,
    'num_instances': 6,
    'min_level': 3,
    'max_level': 3,
    'mask_feature_levels': [3],
    'backbone': {'resnet': {'model_id': 10, 'depth_multiplier': 0.25}},
    'decoder': {'type': 'identity'},
    'center_head': {'num_filters': 8, 'num_blocks': 1},
    'mask_head': {'num_filters': 8, 'num_blocks': 1},
    'postprocessor': {'score_threshold': 0.0, 'overlap_threshold': 0.0},
}}}
MASK_LOGIT_STD = 4.0
_PANOPTIC_KEYS = (keys.CATEGORY_MASK, keys.INSTANCE_MASK,
                  keys.PANOPTIC_SEGMENT_MAP, keys.SEGMENT_CLASSES_OUT,
                  keys.SEGMENT_SCORES_OUT, keys.SEGMENT_IS_THING_OUT)


@dataclasses.dataclass(frozen=True)
class TinyModels:
  params_override: str
  num_classes: int
  num_thing_classes: int
  checkpoint_dir: str
  checkpoint_prefix: str
  saved_model_dir: str
  tflite_path: str


def _detections(model, images):
  outputs = model(images, training=False)
  return {k: outputs[k] for k in (keys.MASK_LOGITS, keys.DETECTED_CLASSES,
                                  keys.DETECTED_SCORES)}


class _ServingModule(tf.Module):
  """The serving contract of `maskconver.serving`, for these tests."""

  def __init__(self, model, postprocessor):
    super().__init__()
    self._model = model
    self._postprocessor = postprocessor
    self.model_variables = list(model.variables)

  @tf.function(input_signature=[
      tf.TensorSpec([1, None, None, 3], tf.uint8, name='inputs')])
  def serve(self, inputs):
    size = [INPUT_SIZE, INPUT_SIZE]
    image = preprocess_ops.normalize_image(inputs[0])
    image, image_info = preprocess_ops.resize_and_crop_image(image, size,
                                                             size)
    image.set_shape(size + [3])
    detections = _detections(self._model, image[tf.newaxis])
    # Mask logits of the scaled image only, resized to the original size.
    # (Row 1 of Model Garden's image info is the input size, not the scaled
    # size.)
    scaled = tf.cast(tf.round(image_info[0] * image_info[2]), tf.int32)
    logits = tf.image.resize(detections[keys.MASK_LOGITS], size)
    logits = logits[:, :scaled[0], :scaled[1]]
    original = tf.shape(inputs)[1:3]
    detections[keys.MASK_LOGITS] = tf.image.resize(logits, original)
    outputs = self._postprocessor(detections, original)
    outputs[keys.IMAGE_INFO] = image_info[tf.newaxis]
    return outputs

  @tf.function(input_signature=[
      tf.TensorSpec([1, INPUT_SIZE, INPUT_SIZE, 3], tf.float32,
                    name='inputs')])
  def serve_normalized(self, inputs):
    outputs = self._postprocessor(_detections(self._model, inputs),
                                  [INPUT_SIZE, INPUT_SIZE])
    return {k: outputs[k] for k in _PANOPTIC_KEYS}


def calibration_image(height: int, width: int) -> np.ndarray:
  """uint8 [height, width, 3]: four flat colour blocks."""
  image = np.zeros((height, width, 3), np.uint8)
  image[:height // 2, :width // 2] = (200, 30, 30)
  image[:height // 2, width // 2:] = (30, 200, 30)
  image[height // 2:, :width // 3] = (30, 30, 200)
  image[height // 2:, width // 3:] = (220, 220, 220)
  return image


def _make_decisive(model, num_classes):
  """Turns a random model into one with a few large, stable segments.

  A freshly initialized MaskConver scores all classes alike and has mask
  logits of ~1e-6 (probability 0.5 everywhere, so the merge is decided by
  rounding). Class 0 (a thing) and class 5 (stuff) get the highest heatmap
  biases, and the last layer of the mask embedding MLP is scaled so that the
  mask logits on `calibration_image` have a standard deviation of
  MASK_LOGIT_STD (the logits are linear in that layer).
  """
  biases = np.full([num_classes], -2.0, np.float32)
  biases[0], biases[5] = 1.0, 0.8
  kernel = bias = None
  for variable in model.variables:
    if 'center_heatmap_head/output/bias' in variable.name:
      variable.assign(biases)
    if 'mask_embedding_generator/mlp/output/kernel' in variable.name:
      kernel = variable
    if 'mask_embedding_generator/mlp/output/bias' in variable.name:
      bias = variable
  images = preprocess_ops.normalize_image(
      calibration_image(INPUT_SIZE, INPUT_SIZE))[tf.newaxis]
  logits = model(images, training=False)[keys.MASK_LOGITS]
  scale = MASK_LOGIT_STD / float(tf.math.reduce_std(logits))
  kernel.assign(kernel * scale)
  bias.assign(bias * scale)


def build_tiny_models(root: str) -> TinyModels:
  """Builds the tiny model and writes its three forms under `root`."""
  override = json.dumps(PARAMS_OVERRIDE)
  params = experiment_loading.load_experiment(EXPERIMENT, (), override)
  model_config = params.task.model
  tf_keras.utils.set_random_seed(1)
  model = factory.build_maskconver_model(
      tf_keras.layers.InputSpec(shape=[None, INPUT_SIZE, INPUT_SIZE, 3]),
      model_config)
  _make_decisive(model, model_config.num_classes)
  checkpoint_dir = os.path.join(root, 'model_dir')
  prefix = tf.train.Checkpoint(model=model).save(
      os.path.join(checkpoint_dir, 'ckpt'))

  module = _ServingModule(model, factory.build_panoptic_postprocessor(
      model_config))
  saved_model_dir = os.path.join(root, 'saved_model')
  tf.saved_model.save(module, saved_model_dir,
                      signatures={'serving_default': module.serve})

  normalized = module.serve_normalized.get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([normalized],
                                                              module)
  tflite_path = os.path.join(root, 'model.tflite')
  with open(tflite_path, 'wb') as f:
    f.write(converter.convert())
  return TinyModels(
      params_override=override,
      num_classes=model_config.num_classes,
      num_thing_classes=model_config.num_thing_classes,
      checkpoint_dir=checkpoint_dir,
      checkpoint_prefix=prefix,
      saved_model_dir=saved_model_dir,
      tflite_path=tflite_path)


def write_video(path, num_frames, height=24, width=32, fps=5.0) -> str:
  """An mp4 whose frame i is flat gray 40 * i."""
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps,
                           (width, height))
  assert writer.isOpened()
  for i in range(num_frames):
    writer.write(np.full((height, width, 3), 40 * i, np.uint8))
  writer.release()
  return str(path)
