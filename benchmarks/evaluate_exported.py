r"""PQ of the Keras model and of its exported SavedModel / TFLite variants.

  python -m benchmarks.evaluate_exported --experiment=maskconver_synthetic \
      --config_file=configs/experiments/maskconver_synthetic.yaml \
      --checkpoint_path=/tmp/quickstart/model \
      --saved_model_dir=/tmp/export/saved_model \
      --tflite=float32=/tmp/export/model.tflite \
      --tflite=dynamic=/tmp/export/model_dynamic.tflite \
      --tflite=int8=/tmp/export/model_int8.tflite [--num_images=500]

reads `task.validation_data` (decoded and parsed like evaluation) and
computes COCO Panoptic Quality (maskconver.evaluation.panoptic_quality, in
training class ids) of each variant:

* keras (with --checkpoint_path): the export module run eagerly on the
  uint8 image, maps merged at the original resolution -- what the SavedModel
  computes, before export;
* keras_input_res (with --checkpoint_path): the module's `tflite` path run
  eagerly on the parser's normalized image, maps merged at the network input
  size and resized to the original with nearest neighbour -- what the TFLite
  models compute, before conversion;
* saved_model (with --saved_model_dir): its serving_default signature, which
  must take uint8 images (--input_type=image_tensor), run by
  `maskconver.inference.saved_model_predictor` on the original image;
* tflite_<name> (each --tflite=name=path): the TFLite model's single
  signature, run by `maskconver.inference.tflite_predictor` on the parser's
  normalized image (quantized if the model takes quantized integers; turned
  back into uint8 pixels for a `tflite_uint8` export, which normalizes them
  itself), maps resized like keras_input_res.

Besides PQ / SQ / RQ (All, Things, Stuff, x100), each variant gets its
pixel agreement with its reference: the share of original-resolution pixels
whose predicted class (or void) equals keras' for saved_model and
keras_input_res' for the TFLite variants. Prints a table and, on its last
line, the JSON {"num_images", "variants": {name: {...}}}.
"""

import json
import sys
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional
from typing import Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from official.vision.ops import preprocess_ops

from maskconver import experiment_loading
from maskconver import keys
from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.common import flags as command_flags
from maskconver.dataloaders import tf_example_decoder
from maskconver.evaluation import panoptic_quality
from maskconver.evaluation import prediction_writer
from maskconver.inference import saved_model_predictor as saved_model_lib
from maskconver.inference import tflite_predictor as tflite_lib
from maskconver.ops import image_ops
from maskconver.serving import export_module
from maskconver.serving import export_saved_model
from maskconver.tasks import maskconver_task

FLAGS = flags.FLAGS
# An example: the original uint8 image, the parser's image and ground truth.
Example = Dict[str, Any]
# A variant maps an example to (segment map at the original resolution,
# segment classes [K]).
Predictor = Callable[[Example], Tuple[np.ndarray, np.ndarray]]


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  command_flags.define_experiment_flags()
  # --checkpoint_path: the Keras variants' weights.
  command_flags.define_checkpoint_flags()
  flags.DEFINE_string('saved_model_dir', None,
                      'SavedModel exported with --input_type=image_tensor.')
  flags.DEFINE_multi_string('tflite', [],
                            'name=path of a TFLite model; repeatable.')
  flags.DEFINE_integer('num_images', None,
                       'Evaluate the first N validation images; default: all.')
  flags.DEFINE_string('output_json', None, 'Also write the JSON here.')


def validation_examples(params: Any,
                        num_images: Optional[int] = None
                        ) -> Iterator[Example]:
  """Yields {IMAGE, 'input', GROUNDTRUTHS...} of the validation images."""
  data = params.task.validation_data
  patterns = [p for p in data.input_path.split(',') if p]
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f'task.validation_data.input_path={data.input_path!r} '
                     'matches no file')
  decoder = tf_example_decoder.TfExampleDecoder()
  parse = maskconver_task.build_parser(params.task.model,
                                       data).parse_fn(is_training=False)

  def decode_and_parse(record):
    decoded = decoder.decode(record)
    image, labels = parse(decoded)
    if keys.RESIZE_INFO in labels:  # Padded source: resize as the step does.
      image = image_ops.resize_window(image[tf.newaxis],
                                      labels[keys.RESIZE_INFO][tf.newaxis],
                                      params.task.model.input_size[:2])[0]
    return decoded[keys.IMAGE], image, labels[keys.GROUNDTRUTHS]

  dataset = tf.data.TFRecordDataset(files).map(decode_and_parse)
  if num_images:
    dataset = dataset.take(num_images)
  for image, network_input, groundtruths in dataset:
    example = {k: v.numpy() for k, v in groundtruths.items()}
    example[keys.IMAGE] = image.numpy()
    example['input'] = network_input.numpy()
    yield example


def normalized_input(example: Example) -> np.ndarray:
  """float32 [h, w, 3]: the parser's image, normalized.

  The parser gives uint8 pixels, which the model normalizes on the device; a
  float image is taken as normalized already.
  """
  image = example['input']
  if image.dtype == np.uint8:
    return ((image.astype(np.float32) - np.float32(preprocess_ops.MEAN_RGB)) /
            np.float32(preprocess_ops.STDDEV_RGB))
  return image.astype(np.float32)


def _first(outputs: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
  return (np.asarray(outputs[keys.PANOPTIC_SEGMENT_MAP])[0],
          np.asarray(outputs[keys.SEGMENT_CLASSES_OUT])[0])


def _to_original(outputs: Mapping[str, Any],
                 example: Example) -> Tuple[np.ndarray, np.ndarray]:
  segment_map, classes = _first(outputs)
  info = np.array(example[keys.IMAGE_INFO], np.float64)
  # Row 1 of Model Garden's image_info is the padded (desired) size; the
  # scaled image size is original * scale, which resize_to_original reads
  # from row 1.
  info[1] = np.round(info[0] * info[2])
  return (prediction_writer.resize_to_original(segment_map, image_info=info),
          classes)


def keras_predictors(module: export_module.MaskConverModule
                     ) -> Dict[str, Predictor]:
  """The 'keras' and 'keras_input_res' variants of an export module."""
  return {
      'keras': lambda ex: _first(module.serve(tf.constant(ex[keys.IMAGE][
          np.newaxis]))),
      'keras_input_res': lambda ex: _to_original(module.serve_normalized(
          tf.constant(normalized_input(ex)[np.newaxis])), ex),
  }


def _segments(prediction: Any) -> Tuple[np.ndarray, np.ndarray]:
  """(segment map at the original resolution, segment classes)."""
  prediction = prediction.at_image_size()
  return prediction.segment_map, prediction.segment_classes


def saved_model_predictor(saved_model_dir: str) -> Predictor:
  """The 'saved_model' variant (a uint8 image_tensor signature)."""
  predictor = saved_model_lib.SavedModelPredictor(saved_model_dir)
  if predictor.input_size is not None:
    raise ValueError(f'--saved_model_dir={saved_model_dir}: serving_default '
                     'takes a fixed-size float input; export with '
                     '--input_type=image_tensor')
  return lambda ex: _segments(predictor.predict(ex[keys.IMAGE]))


def tflite_predictor(tflite_path: str) -> Predictor:
  """A TFLite variant, fed the parser's image (module doc)."""
  predictor = tflite_lib.TfLitePredictor(tflite_path)
  return lambda ex: _segments(predictor.predict_preprocessed(
      normalized_input(ex), ex[keys.IMAGE_INFO]))


def _source_id(example: Example) -> str:
  """The image's source id (the parser gives zero-padded uint8 bytes)."""
  if keys.GT_SOURCE_ID in example:
    return np.asarray(example[keys.GT_SOURCE_ID], np.uint8).tobytes().rstrip(
        b'\0').decode('utf-8')
  return example[keys.SOURCE_ID].decode('utf-8')


def _class_map(segment_map: np.ndarray, classes: np.ndarray) -> np.ndarray:
  lookup = np.concatenate([[keys.VOID_CLASS], classes]).astype(np.int64)
  return lookup[segment_map]


def evaluate(params: Any, predictors: Mapping[str, Predictor],
             num_images: Optional[int] = None) -> Dict[str, Any]:
  """PQ and pixel agreement of each variant (module doc)."""
  model_config = params.task.model
  categories = panoptic_quality.training_categories(
      model_config.num_classes, model_config.num_thing_classes)
  pq = {name: panoptic_quality.PanopticQuality(categories)
        for name in predictors}
  references = {name: reference_of(name, predictors) for name in predictors}
  agree = {name: 0 for name in predictors}
  total_pixels = 0
  count = 0
  for example in validation_examples(params, num_images):
    info = example[keys.IMAGE_INFO]
    height, width = np.round(info[0]).astype(np.int64)
    gt_map = example[keys.GT_SEGMENT_MAP][:height, :width]
    gt_segments = panoptic_quality.segments_from_arrays(
        example[keys.GT_SEGMENT_IDS], example[keys.GT_SEGMENT_CLASSES],
        example[keys.GT_SEGMENT_IS_CROWD])
    source_id = _source_id(example)
    class_maps = {}
    for name, predict in predictors.items():
      segment_map, classes = predict(example)
      if segment_map.shape != (height, width):
        raise ValueError(f'{name}: prediction of {source_id} is '
                         f'{segment_map.shape}, the image is '
                         f'{(height, width)}')
      pred_segments = [{'id': int(s), 'category_id': int(classes[s - 1])}
                       for s in np.unique(segment_map) if s != 0]
      pq[name].update(gt_map, gt_segments, segment_map, pred_segments,
                      name=source_id)
      class_maps[name] = _class_map(segment_map, classes)
    for name, reference in references.items():
      if reference:
        agree[name] += int(np.sum(class_maps[name] == class_maps[reference]))
    total_pixels += int(height * width)
    count += 1
  variants = {}
  for name in predictors:
    result = pq[name].result()
    variants[name] = {
        f'{metric.upper()}_{group.lower()}': 100.0 * result[group][metric]
        for group in ('All', 'Things', 'Stuff') for metric in ('pq', 'sq',
                                                                'rq')}
    if references[name] and total_pixels:
      variants[name]['reference'] = references[name]
      variants[name]['pixel_agreement'] = agree[name] / total_pixels
  return {'num_images': count, 'variants': variants}


def reference_of(name: str, names: Sequence[str]) -> Optional[str]:
  """The variant a variant's pixel agreement is measured against."""
  reference = 'keras_input_res' if name.startswith('tflite_') else 'keras'
  return reference if reference in names and reference != name else None


def format_table(result: Mapping[str, Any]) -> str:
  """The human-readable report."""
  lines = [f'{result["num_images"]} validation images',
           f'{"variant":<22}{"PQ":>7}{"SQ":>7}{"RQ":>7}{"PQ_th":>7}'
           f'{"PQ_st":>7}  pixel agreement']
  for name, values in result['variants'].items():
    agreement = (f'{100.0 * values["pixel_agreement"]:.2f}% vs '
                 f'{values["reference"]}' if 'reference' in values else '')
    lines.append(f'{name:<22}{values["PQ_all"]:>7.2f}{values["SQ_all"]:>7.2f}'
                 f'{values["RQ_all"]:>7.2f}{values["PQ_things"]:>7.2f}'
                 f'{values["PQ_stuff"]:>7.2f}  {agreement}')
  return '\n'.join(lines)


def parse_tflite_flags(values: Sequence[str]) -> List[Tuple[str, str]]:
  """['name=path', ...] -> [(name, path)]; errors name the flag."""
  pairs = []
  for value in values:
    name, sep, path = value.partition('=')
    if not sep or not name or not path:
      raise app.UsageError(f'--tflite must be name=path, got {value!r}')
    if not tf.io.gfile.exists(path):
      raise app.UsageError(f'--tflite={value}: {path} does not exist')
    pairs.append((name, path))
  return pairs


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  logging.set_verbosity(logging.WARNING)
  tflite_models = parse_tflite_flags(FLAGS.tflite)
  if not (FLAGS.checkpoint_path or FLAGS.saved_model_dir or tflite_models):
    raise app.UsageError('nothing to evaluate: pass --checkpoint_path, '
                         '--saved_model_dir and/or --tflite')
  params = export_saved_model.load_params(
      FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
  predictors = {}
  if FLAGS.checkpoint_path:
    module = export_module.MaskConverModule(
        params, batch_size=1,
        input_image_size=list(params.task.model.input_size[:2]))
    try:
      restored = experiment_loading.restore_model_weights(
          module.model, FLAGS.checkpoint_path, use_ema=FLAGS.use_ema)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    logging.warning('keras variants: %s', restored.description)
    predictors.update(keras_predictors(module))
  if FLAGS.saved_model_dir:
    predictors['saved_model'] = saved_model_predictor(FLAGS.saved_model_dir)
  for name, path in tflite_models:
    predictors[f'tflite_{name}'] = tflite_predictor(path)
  result = evaluate(params, predictors, FLAGS.num_images)
  print(format_table(result))
  sys.stdout.flush()
  text = json.dumps(result)
  if FLAGS.output_json:
    with tf.io.gfile.GFile(FLAGS.output_json, 'w') as f:
      f.write(text + '\n')
  print(text)
  return 0


def run() -> None:
  """Runs the command (`python -m benchmarks.evaluate_exported`)."""
  define_flags()
  command_flags.run_command(main)


if __name__ == '__main__':
  run()
