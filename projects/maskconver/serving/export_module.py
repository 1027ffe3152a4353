"""SavedModel export module of MaskConver: image in, panoptic maps out.

`MaskConverModule` subclasses Model Garden's vision `ExportModule`, so
`official.vision.serving.export_saved_model_lib.export_inference_graph` and
`official.core.export_base.export` export it like any Model Garden model.

Serving signature
-----------------
One signature per input type (the default export has one, named
`serving_default`; at batch size 1 the TFLite input types add an int8 twin,
below); its only input is named `inputs`:

* `image_tensor`: uint8 [batch, height, width, 3] RGB images.
* `image_bytes`: string [batch], encoded JPEG / PNG / BMP / GIF images
  (decoded like the training decoder: 3 channels, first frame).
* `tf_example`: string [batch], serialized tf.Examples holding the image in
  `keys.IMAGE_ENCODED` ('image/encoded'), e.g. the converter's TFRecords.
* `tflite`: float32 [batch, input_height, input_width, 3], an image already
  resized, padded and normalized as the parser does (Model Garden's
  `normalize_image`); for TFLite conversion, where pre-processing stays out
  of the graph so that the input can be quantized.
* `tflite_uint8`: uint8 [batch, input_height, input_width, 3] RGB pixels of
  an image already resized (aspect ratio kept) and padded bottom / right to
  the input size; the model normalizes them itself (Model Garden's
  `normalize_image`: / 255, minus the ImageNet mean (0.485, 0.456, 0.406),
  divided by the standard deviation (0.229, 0.224, 0.225)) -- the input of
  the .tflite a phone app feeds its camera frames to (README, "On a phone").

`batch` is the export's batch size (None: any). All images of one batch
share one size (a tensor input does by construction; for `image_bytes` and
`tf_example`, images of different sizes fail to stack).

The first three pre-process exactly like the evaluation parser
(`maskconver.dataloaders.parser`): `preprocess_ops.normalize_image` on the
uint8 image, then `resize_and_crop_image` to `input_image_size`, keeping the
aspect ratio and padding bottom / right. After the network, the stride-4
mask logits of the valid (unpadded) region are resized bilinearly to the
original image size and merged there by the panoptic post-processor
(`maskconver.modeling.panoptic_postprocessor`), so the maps come back at the
INPUT IMAGE RESOLUTION. For `tflite` and `tflite_uint8` the maps have the
network input size
and undoing the resize and padding is the caller's job (with the image_info
of its own pre-processing).

Outputs (every signature; K = model.num_instances; height, width = the
input image size, or input_height, input_width for `tflite` and
`tflite_uint8`):

* 'category_mask': int32 [batch, height, width], training class id per
  pixel, -1 (keys.VOID_CLASS) on void.
* 'instance_mask': int32 [batch, height, width], 1 .. n per thing segment,
  0 on stuff and void.
* 'segment_map': int32 [batch, height, width], segment index + 1, 0 on void.
* 'segment_classes': int32 [batch, K], class of segment index s (the pixels
  equal to s + 1 in 'segment_map'), -1 for slots that are no segment.
* 'segment_scores': float32 [batch, K], score of each segment, 0 for unused
  slots.
* 'segment_is_thing': bool [batch, K], True for thing segments.
* 'image_info': float32 [batch, 4, 2], as `resize_and_crop_image` returns
  it: [[original height, width], [desired height, width], [y_scale,
  x_scale], [y_offset, x_offset]]; the desired size is the network input
  size (the scaled image is round(original * scale), padded to it); for
  `tflite` and `tflite_uint8`, the identity info of the input size.

Split export (`function_keys` 'network' and 'postprocess', e.g. to run the
network on an accelerator delegate and the merge on the CPU, or to time them
apart): 'network' takes the `tflite` input and returns 'mask_logits' float32
[batch, input_height / 4, input_width / 4, K], 'detected_classes' int32
[batch, K] and 'detected_scores' float32 [batch, K]; 'postprocess' takes
those three as inputs of the same names and returns the first six outputs
above at the network input size. Chained, they give the `tflite` outputs.

int8 twins: at batch size 1, each `tflite`, `tflite_uint8` and `network`
signature comes with a twin named `<signature name>_int8` (e.g.
`serving_default_int8`): the same function and weights with the mask einsum
traced as a matrix product of the [H/4 * W/4, C] mask features and the K
embeddings (`MaskProjection` fully connected form), which TFLite turns into a
FULLY_CONNECTED op that runs fast in int8 where an int8 BATCH_MATMUL does not.
`export_tflite` converts the twin for its int8 types, the signature itself
otherwise.

The first six keys are keys.CATEGORY_MASK, keys.INSTANCE_MASK,
keys.PANOPTIC_SEGMENT_MAP, keys.SEGMENT_CLASSES_OUT, keys.SEGMENT_SCORES_OUT,
keys.SEGMENT_IS_THING_OUT; the last is keys.IMAGE_INFO. Class ids are
training ids (things first); the converter's label map maps them to the
dataset's category ids.
"""

from typing import Dict, List, Mapping, Optional, Tuple

import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.vision.ops import preprocess_ops
from official.vision.serving import export_base

from maskconver import keys
from maskconver.modeling import factory

INPUT_TYPES = ('image_tensor', 'image_bytes', 'tf_example', 'tflite',
               'tflite_uint8')
# Name scope of the uint8 input's normalization (kept float by export_tflite).
INPUT_NORMALIZATION_SCOPE = 'input_normalization'
# Output keys of every signature, in the order of the module doc.
OUTPUT_KEYS = (keys.CATEGORY_MASK, keys.INSTANCE_MASK,
               keys.PANOPTIC_SEGMENT_MAP, keys.SEGMENT_CLASSES_OUT,
               keys.SEGMENT_SCORES_OUT, keys.SEGMENT_IS_THING_OUT,
               keys.IMAGE_INFO)
# Parts of the split export: the network alone (normalized image -> mask
# logits and detections) and the panoptic merge alone (those -> the six
# panoptic outputs at the network input size); see the module doc.
SPLIT_PARTS = ('network', 'postprocess')
# Input names of the `postprocess` signature -> network output keys.
_POSTPROCESS_INPUTS = {'mask_logits': keys.MASK_LOGITS,
                       'detected_classes': keys.DETECTED_CLASSES,
                       'detected_scores': keys.DETECTED_SCORES}
# Suffix of the int8 twin of a batch-1 `tflite`, `tflite_uint8` or `network`
# signature (module doc).
INT8_TWIN_SUFFIX = '_int8'
_INT8_TWIN_TYPES = ('tflite', 'tflite_uint8', 'network')
# Stride of the mask logits relative to the network input.
_MASK_STRIDE = 4


def identity_image_info(height: int, width: int) -> tf.Tensor:
  """float32 [4, 2] image info of an image fed at its own size, unpadded."""
  return tf.constant([[height, width], [height, width], [1.0, 1.0],
                      [0.0, 0.0]], tf.float32)


class MaskConverModule(export_base.ExportModule):
  """Exports MaskConver with its pre- and post-processing (module doc)."""

  def __init__(self,
               params: cfg.ExperimentConfig,
               *,
               batch_size: Optional[int],
               input_image_size: List[int],
               input_type: str = 'image_tensor',
               num_channels: int = 3,
               model: Optional[tf_keras.Model] = None,
               input_name: Optional[str] = None):
    """Initializes the module.

    Args:
      params: the experiment config (task.model builds the model and the
        post-processor).
      batch_size: batch size of the signatures, or None for any.
      input_image_size: [height, width] of the network input.
      input_type: one of INPUT_TYPES, the default signature's input.
      num_channels: must be 3.
      model: an already built MaskConver model; None builds one from params.
      input_name: name of the signature input; None gives 'inputs'.
    """
    if input_type not in INPUT_TYPES:
      raise ValueError(f'input_type must be one of {INPUT_TYPES}, got '
                       f'{input_type!r}')
    if num_channels != 3:
      raise ValueError(f'MaskConver takes RGB images: num_channels must be 3, '
                       f'got {num_channels}')
    input_image_size = [int(v) for v in input_image_size]
    if len(input_image_size) != 2 or min(input_image_size) <= 0:
      raise ValueError(f'input_image_size must be [height, width] > 0, got '
                       f'{input_image_size}')
    super().__init__(params, batch_size=batch_size,
                     input_image_size=input_image_size,
                     input_type=input_type, num_channels=num_channels,
                     model=model, input_name=input_name)
    self.postprocessor = factory.build_panoptic_postprocessor(
        params.task.model)

  def _build_model(self) -> tf_keras.Model:
    input_specs = tf_keras.layers.InputSpec(
        shape=[self._batch_size] + self._input_image_size + [3])
    return factory.build_maskconver_model(input_specs, self.params.task.model)

  # ------------------------------------------------------------ decoding ---

  def _decode_image(self, encoded_image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes one image like the training decoder: uint8 [h, w, 3]."""
    image = tf.io.decode_image(encoded_image_bytes, channels=3,
                               dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image

  def _decode_tf_example(self, tf_example_string_tensor: tf.Tensor
                         ) -> tf.Tensor:
    """Decodes the image of one serialized tf.Example: uint8 [h, w, 3]."""
    parsed = tf.io.parse_single_example(
        tf_example_string_tensor,
        {keys.IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string)})
    return self._decode_image(parsed[keys.IMAGE_ENCODED])

  # ------------------------------------------------------------- serving ---

  def preprocess(self, image: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Normalizes, resizes and pads one image like the evaluation parser.

    Args:
      image: uint8 [height, width, 3].

    Returns:
      (float32 [input_height, input_width, 3] network input,
       float32 [4, 2] image info).
    """
    image = preprocess_ops.normalize_image(image)
    image, image_info = preprocess_ops.resize_and_crop_image(
        image, self._input_image_size, self._input_image_size,
        aug_scale_min=1.0, aug_scale_max=1.0)
    image.set_shape(self._input_image_size + [3])
    return image, image_info

  def network(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Runs the network in inference mode (top-K centers).

    Args:
      images: float32 [batch, input_height, input_width, 3], normalized.

    Returns:
      keys.MASK_LOGITS float32 [batch, input_height / 4, input_width / 4, K],
      keys.DETECTED_CLASSES int32 [batch, K], keys.DETECTED_SCORES float32
      [batch, K].
    """
    outputs = self.model(images, training=False)
    return {
        keys.MASK_LOGITS: tf.cast(outputs[keys.MASK_LOGITS], tf.float32),
        keys.DETECTED_CLASSES: outputs[keys.DETECTED_CLASSES],
        keys.DETECTED_SCORES: tf.cast(outputs[keys.DETECTED_SCORES],
                                      tf.float32),
    }

  def postprocess(self, network_outputs: Mapping[str, tf.Tensor]
                  ) -> Dict[str, tf.Tensor]:
    """Panoptic merge at the network input size (the `tflite` outputs).

    Args:
      network_outputs: the outputs of `network`.

    Returns:
      The six panoptic outputs of the module doc at input_height x
      input_width.
    """
    return self.postprocessor(network_outputs, self._input_image_size)

  def _postprocess_at_original_size(
      self, network_outputs: Mapping[str, tf.Tensor], image_info: tf.Tensor,
      original_size: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Panoptic merge at the original image size.

    The mask logits of the cells covering the scaled image are resized
    bilinearly so that the scaled image lands on the original pixels; the
    padding falls beyond them and is cropped.

    Args:
      network_outputs: the outputs of `network`.
      image_info: float32 [batch, 4, 2]; all images share one size and so
        one image info.
      original_size: int32 [2], (height, width) of the input images.

    Returns:
      The six panoptic outputs at original_size.
    """
    logits = network_outputs[keys.MASK_LOGITS]
    # image_info[1] is the padded (desired) size, not the scaled one.
    scale = image_info[0, 2]
    scaled_size = tf.round(image_info[0, 0] * scale)
    cells = tf.cast(tf.math.ceil(scaled_size / _MASK_STRIDE), tf.int32)
    logits = logits[:, :cells[0], :cells[1]]
    canvas = tf.maximum(
        tf.cast(tf.round(tf.cast(cells * _MASK_STRIDE, tf.float32) / scale),
                tf.int32), original_size)
    logits = tf.image.resize(logits, canvas, method='bilinear')
    logits = logits[:, :original_size[0], :original_size[1]]
    inputs = dict(network_outputs)
    inputs[keys.MASK_LOGITS] = logits
    return self.postprocessor(inputs, original_size)

  def serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Panoptic segmentation of uint8 images at their own resolution.

    Args:
      images: uint8 [batch, height, width, 3].

    Returns:
      The outputs of the module doc.
    """
    with tf.device('cpu:0'):
      inputs, image_info = tf.nest.map_structure(
          tf.identity,
          tf.map_fn(
              self.preprocess,
              elems=images,
              fn_output_signature=(
                  tf.TensorSpec(self._input_image_size + [3], tf.float32),
                  tf.TensorSpec([4, 2], tf.float32)),
              parallel_iterations=32))
    outputs = self._postprocess_at_original_size(
        self.network(inputs), image_info, tf.shape(images)[1:3])
    outputs[keys.IMAGE_INFO] = image_info
    return outputs

  def serve_normalized(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Panoptic segmentation of pre-processed images (the `tflite` input).

    Args:
      images: float32 [batch, input_height, input_width, 3], normalized.

    Returns:
      The outputs of the module doc at the input size.
    """
    outputs = self.postprocess(self.network(images))
    height, width = self._input_image_size
    # The name scope keeps it out of int8 quantization (export_tflite).
    with tf.name_scope('image_info'):
      outputs[keys.IMAGE_INFO] = tf.tile(
          identity_image_info(height, width)[tf.newaxis],
          [tf.shape(images)[0], 1, 1])
    return outputs

  @tf.function
  def inference_for_tflite(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self.serve_normalized(inputs)

  def serve_uint8(self, pixels: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Panoptic segmentation of resized, padded uint8 pixels.

    Args:
      pixels: uint8 [batch, input_height, input_width, 3] (the
        `tflite_uint8` input).

    Returns:
      The outputs of the module doc at the input size.
    """
    with tf.name_scope(INPUT_NORMALIZATION_SCOPE):
      images = preprocess_ops.normalize_image(pixels)
    return self.serve_normalized(images)

  @tf.function
  def inference_for_tflite_uint8(self, inputs: tf.Tensor
                                 ) -> Dict[str, tf.Tensor]:
    return self.serve_uint8(inputs)

  @tf.function
  def inference_network(self, inputs: tf.Tensor) -> Dict[str, tf.Tensor]:
    return self.network(inputs)

  @tf.function
  def inference_postprocess(self, mask_logits: tf.Tensor,
                            detected_classes: tf.Tensor,
                            detected_scores: tf.Tensor
                            ) -> Dict[str, tf.Tensor]:
    return self.postprocess({keys.MASK_LOGITS: mask_logits,
                             keys.DETECTED_CLASSES: detected_classes,
                             keys.DETECTED_SCORES: detected_scores})

  def _input_spec(self, dtype: tf.DType) -> tf.TensorSpec:
    return tf.TensorSpec([self._batch_size] + self._input_image_size + [3],
                         dtype, name=self._input_name)

  def _normalized_input_spec(self) -> tf.TensorSpec:
    return self._input_spec(tf.float32)

  def _int8_twin(self, input_type: str
                 ) -> tf.types.experimental.ConcreteFunction:
    """The signature of input_type traced with the fully connected einsum."""
    function, dtype = {'tflite': (self.serve_normalized, tf.float32),
                       'tflite_uint8': (self.serve_uint8, tf.uint8),
                       'network': (self.network, tf.float32)}[input_type]
    def twin(inputs):
      # `inputs` names the signature input, as in the inference_for_*
      # methods.
      return function(inputs)

    with self.model.projection.fully_connected_form():
      return tf.function(twin).get_concrete_function(self._input_spec(dtype))

  def get_inference_signatures(self, function_keys: Dict[str, str]
                               ) -> Dict[str, tf.types.experimental
                                         .ConcreteFunction]:
    """Concrete functions {signature name: function} of the input types.

    Args:
      function_keys: {input type or split part: signature name}, keys from
        INPUT_TYPES + SPLIT_PARTS.

    Returns:
      The concrete functions for tf.saved_model.save.
    """
    unknown = sorted(set(function_keys) - set(INPUT_TYPES + SPLIT_PARTS))
    if unknown:
      raise ValueError(f'unknown input type(s) {unknown}; choose from '
                       f'{INPUT_TYPES + SPLIT_PARTS}')
    twins = {}
    if self._batch_size == 1:
      twins = {function_keys[t] + INT8_TWIN_SUFFIX: t
               for t in _INT8_TWIN_TYPES if t in function_keys}
    taken = sorted(set(twins) & set(function_keys.values()))
    if taken:
      raise ValueError(
          f'signature name(s) {taken} are the int8 twins of '
          f'{sorted(twins[name] for name in taken)} at batch size 1: name '
          'the signatures otherwise')
    signatures = super().get_inference_signatures(
        {k: v for k, v in function_keys.items()
         if k in INPUT_TYPES and k != 'tflite_uint8'})
    if 'tflite_uint8' in function_keys:
      signatures[function_keys['tflite_uint8']] = (
          self.inference_for_tflite_uint8.get_concrete_function(
              self._input_spec(tf.uint8)))
    if 'network' in function_keys or 'postprocess' in function_keys:
      network = self.inference_network.get_concrete_function(
          self._normalized_input_spec())
      if 'network' in function_keys:
        signatures[function_keys['network']] = network
      if 'postprocess' in function_keys:
        outputs = network.structured_outputs
        signatures[function_keys['postprocess']] = (
            self.inference_postprocess.get_concrete_function(
                **{name: tf.TensorSpec.from_tensor(outputs[key], name=name)
                   for name, key in _POSTPROCESS_INPUTS.items()}))
    for name, input_type in twins.items():
      signatures[name] = self._int8_twin(input_type)
    return signatures
