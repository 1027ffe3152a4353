r"""Converts a MaskConver SavedModel to TFLite, with post-training quantization.

  python -m maskconver.serving.export_tflite \
      --saved_model_dir=/path/to/export/saved_model \
      --tflite_path=/path/to/model_int8.tflite \
      --quant_type=int8_full_fp32_io \
      --experiment=maskconver_mnmh_coco_640 \
      --params_override="task.validation_data.input_path=coco/val-*"

The SavedModel comes from `export_saved_model --input_type=tflite
--batch_size=1` (float32 normalized input of a fixed size) or
`--input_type=tflite_uint8 --batch_size=1` (uint8 RGB pixels of a fixed
size, normalized inside the model: the one to put on a phone), with the
panoptic post-processing inside (see `export_module`), so the TFLite model
does everything from the image to the panoptic maps, with TFLite builtin ops
only. Its signature keeps the SavedModel's input and output names.

`--quant_type` takes Model Garden's names (the table and what stays float:
`maskconver.serving.tflite_conversion`). The int8 types calibrate on
`--calibration_steps` images of the experiment's `task.validation_data`,
parsed like evaluation; `task.model.input_size` must be the SavedModel's
input size.

With `--experiment`, the .tflite also carries its description -- input
size, dtype, resize and normalization, every output's shape and meaning,
and the class labels (`--label_map`, the converter's label map JSON) -- as
TFLite metadata (`maskconver.serving.tflite_metadata`).
"""

from typing import Sequence

from absl import app
from absl import flags
import tensorflow as tf

from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.common import flags as command_flags
from maskconver.data import label_map as label_map_lib
from maskconver.serving import export_saved_model
from maskconver.serving import tflite_conversion

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  flags.DEFINE_string(
      'saved_model_dir', None,
      'SavedModel exported with --input_type=tflite --batch_size=1.')
  flags.DEFINE_string('tflite_path', None, 'Output .tflite file.')
  flags.DEFINE_string(
      'quant_type', None,
      'Post-training quantization: one of '
      f'{", ".join(tflite_conversion.QUANT_TYPES)}; '
      'absent or "none" for float32.')
  flags.DEFINE_string(
      'signature_key', 'serving_default',
      'Signature of the SavedModel to convert (e.g. "tflite", "network" or '
      '"postprocess" of a multi-signature export).')
  flags.DEFINE_bool(
      'int8_twin', True,
      'For the int8 types, convert the SavedModel\'s int8 twin of '
      '--signature_key (<signature>_int8, written by export_saved_model at '
      'batch size 1) when it has one: the mask einsum then runs in int8. '
      '--noint8_twin keeps it a float BATCH_MATMUL.')
  # --experiment: the int8 calibration data and the metadata's classes.
  command_flags.define_experiment_flags()
  flags.DEFINE_integer(
      'calibration_steps', 100,
      'Validation images used to calibrate the int8 types.')
  flags.DEFINE_string(
      'label_map', None,
      'The converter\'s label map JSON (e.g. records/val_label_map.json): '
      'class names packed into the TFLite metadata (needs --experiment).')


def main(argv: Sequence[str]) -> None:
  del argv
  try:
    quant_type = tflite_conversion.normalize_quant_type(FLAGS.quant_type)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  saved_model_dir = FLAGS.saved_model_dir
  if not saved_model_dir:
    raise app.UsageError('--saved_model_dir is required')
  if not tf.saved_model.contains_saved_model(saved_model_dir):
    raise app.UsageError(f'--saved_model_dir={saved_model_dir}: no '
                         'SavedModel there')
  if not FLAGS.tflite_path:
    raise app.UsageError('--tflite_path is required')
  if FLAGS.calibration_steps <= 0:
    raise app.UsageError('--calibration_steps must be positive')
  try:
    specs = tflite_conversion.signature_input_specs(saved_model_dir,
                                                    FLAGS.signature_key)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  representative_dataset = None
  if quant_type is not None and quant_type.startswith('int8'):
    if len(specs) != 1:
      raise app.UsageError(
          f'--quant_type={quant_type} calibrates with images, but signature '
          f'{FLAGS.signature_key!r} takes {sorted(specs)}')
    spec = next(iter(specs.values()))
    if not FLAGS.experiment:
      raise app.UsageError(
          f'--quant_type={quant_type} calibrates on validation images: pass '
          '--experiment (and --config_file / --params_override setting '
          'task.validation_data.input_path)')
    params = export_saved_model.load_params(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
    try:
      representative_dataset = tflite_conversion.calibration_dataset(
          params, spec.shape.as_list(), FLAGS.calibration_steps, spec.dtype)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  labels = None
  if FLAGS.label_map:
    if not FLAGS.experiment:
      raise app.UsageError('--label_map goes into the TFLite metadata, which '
                           'needs --experiment (for the classes)')
    try:
      labels = tflite_conversion.metadata_labels(
          label_map_lib.LabelMap.load(FLAGS.label_map))
    except (OSError, ValueError, KeyError) as e:
      raise app.UsageError(f'--label_map={FLAGS.label_map}: {e}') from e
  tflite_model = tflite_conversion.convert(
      saved_model_dir, quant_type, representative_dataset,
      FLAGS.signature_key, FLAGS.int8_twin)
  described = ''
  if FLAGS.experiment:
    params = export_saved_model.load_params(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
    model_config = params.task.model
    if labels is not None and len(labels) != model_config.num_classes:
      raise app.UsageError(
          f'--label_map={FLAGS.label_map} has {len(labels)} classes, the '
          f'experiment {model_config.num_classes}')
    tflite_model = tflite_conversion.with_metadata(
        tflite_model, model_config.num_classes,
        model_config.num_thing_classes, labels)
    described = ', with metadata'
  tflite_conversion.write_atomic(FLAGS.tflite_path, tflite_model)
  print(f'TFLite model ({quant_type or "float32"}, '
        f'{len(tflite_model) / 1e6:.2f} MB{described}) written to '
        f'{FLAGS.tflite_path}')


def run() -> None:
  """Console entry point."""
  define_flags()
  command_flags.run_command(main)


if __name__ == '__main__':
  run()
