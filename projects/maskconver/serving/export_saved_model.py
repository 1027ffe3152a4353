r"""Exports a trained MaskConver checkpoint as a SavedModel.

  python -m maskconver.serving.export_saved_model \
      --experiment=maskconver_mnmh_coco_640 \
      --config_file=configs/experiments/maskconver_mnmh_coco_640.yaml \
      --checkpoint_path=/path/to/model_dir \
      --export_dir=/path/to/export \
      --input_type=image_tensor --input_image_size=640x640

writes, as Model Garden's exporter does, `<export_dir>/saved_model/` (the
SavedModel), `<export_dir>/checkpoint/` (the weights) and
`<export_dir>/params.yaml` (the experiment config). The signature
(`serving_default`, input 'inputs', outputs the panoptic maps at the input
image resolution plus 'image_info') is documented in
`maskconver.serving.export_module`. For TFLite, export with
`--input_type=tflite --batch_size=1` (or `tflite_uint8`; at batch size 1
these also write `serving_default_int8`, the int8 twin that export_tflite's
int8 types convert), then run `python -m maskconver.serving.export_tflite`.

`--checkpoint_path` is a checkpoint prefix or a directory (its latest
checkpoint is used), e.g. the training model_dir. When the training kept an
EMA of the weights (`trainer.optimizer_config.ema`, on in the COCO recipes),
the export holds the moving-average weights -- the ones the evaluation
scored -- unless `--nouse_ema`; the command says which it exported
(`maskconver.experiment_loading.restore_model_weights` explains where the
trainer keeps them). `ema_checkpoints/` works too.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from absl import app
from absl import flags
from absl import logging
from tf_keras.src.saving.legacy.saved_model import utils as keras_saving_utils

from official.core import config_definitions as cfg
from official.core import export_base
from official.vision.serving import export_saved_model_lib

from maskconver import experiment_loading
from maskconver.common import flags as command_flags
from maskconver.serving import export_module

FLAGS = flags.FLAGS


def save_module(module: export_module.MaskConverModule,
                function_keys: Union[List[str], Dict[str, str]],
                export_dir: str,
                checkpoint_path: Optional[str] = None) -> str:
  """Saves an export module as a SavedModel (Model Garden's export_base).

  Keras layer traces are left out of the SavedModel: the signatures do not
  need them, and tracing every layer makes saving several times slower.

  Args:
    module: the export module.
    function_keys: [input type], which becomes `serving_default`, or
      {input type or split part: signature name}.
    export_dir: directory of the SavedModel.
    checkpoint_path: checkpoint prefix to load first; None keeps the
      module's weights.

  Returns:
    export_dir.
  """
  with keras_saving_utils.keras_option_scope(save_traces=False):
    return export_base.export(module, function_keys, export_dir,
                              checkpoint_path=checkpoint_path,
                              timestamped=False)


def export_inference_graph(params: cfg.ExperimentConfig,
                           checkpoint_path: str,
                           export_dir: str,
                           input_type: str = 'image_tensor',
                           input_image_size: Optional[Sequence[int]] = None,
                           batch_size: Optional[int] = None,
                           function_keys: Optional[Dict[str, str]] = None,
                           saved_model_subdir: str = 'saved_model',
                           checkpoint_subdir: Optional[str] = 'checkpoint',
                           use_ema: bool = True
                           ) -> Tuple[str, experiment_loading.RestoredWeights]:
  """Exports a checkpoint the Model Garden way (see the module doc).

  Args:
    params: the experiment config.
    checkpoint_path: checkpoint prefix or directory.
    export_dir: output directory.
    input_type: input of the serving_default signature (INPUT_TYPES).
    input_image_size: [height, width] of the network input; None uses
      task.model.input_size.
    batch_size: batch size of the signatures; None for any.
    function_keys: {input type or split part: signature name} to export
      several signatures; overrides input_type.
    saved_model_subdir: subdirectory of the SavedModel.
    checkpoint_subdir: subdirectory of the weights copy (the exported
      weights); None for none.
    use_ema: export the moving-average weights when the checkpoint has them.

  Returns:
    The SavedModel directory, and which weights it holds.
  """
  if input_image_size is None:
    input_image_size = params.task.model.input_size[:2]
  module = export_module.MaskConverModule(
      params, batch_size=batch_size,
      input_image_size=list(input_image_size), input_type=input_type)
  restored = experiment_loading.restore_model_weights(
      module.model, checkpoint_path, use_ema=use_ema)
  with keras_saving_utils.keras_option_scope(save_traces=False):
    export_saved_model_lib.export_inference_graph(
        input_type=input_type,
        batch_size=batch_size,
        input_image_size=list(input_image_size),
        params=params,
        checkpoint_path=None,  # restored above, EMA or raw
        export_dir=export_dir,
        export_module=module,
        function_keys=function_keys,
        export_checkpoint_subdir=checkpoint_subdir,
        export_saved_model_subdir=saved_model_subdir)
  return os.path.join(export_dir, saved_model_subdir), restored


def load_params(experiment: Optional[str], config_files: Sequence[str],
                params_override: Optional[str]) -> cfg.ExperimentConfig:
  """The experiment config with its overrides; errors name the flags."""
  try:
    params = experiment_loading.load_experiment(experiment, config_files,
                                                params_override)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  params.lock()
  return params

def parse_image_size(text: str, flag_name: str = 'input_image_size'
                     ) -> List[int]:
  """Parses 'HxW' (or 'H,W') into two positive ints; errors name the flag."""
  try:
    return command_flags.parse_input_size(text, flag_name.lstrip('-'))
  except ValueError as e:
    raise app.UsageError(str(e)) from e


def parse_function_keys(text: str) -> Optional[Dict[str, str]]:
  """Parses 'type:name,type:name'; None for an empty string."""
  if not text:
    return None
  keys = {}
  valid = export_module.INPUT_TYPES + export_module.SPLIT_PARTS
  for pair in text.split(','):
    key, sep, name = pair.partition(':')
    if not sep or not name or key not in valid:
      raise app.UsageError(
          f'--function_keys: bad entry {pair!r}; expected type:name with '
          f'type in {valid}')
    keys[key] = name
  return keys


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  command_flags.define_experiment_flags()
  command_flags.define_checkpoint_flags()
  flags.DEFINE_string('export_dir', None, 'Output directory.')
  flags.DEFINE_string(
      'input_type', 'image_tensor',
      f'Input of the serving_default signature: one of '
      f'{", ".join(export_module.INPUT_TYPES)}.')
  flags.DEFINE_string(
      'input_image_size', None,
      'Network input HxW, e.g. 640x640 (H,W works too); default: '
      'task.model.input_size.')
  flags.DEFINE_integer(
      'batch_size', None,
      'Batch size of the signature; default: any (1 for --input_type=tflite).')
  flags.DEFINE_string(
      'function_keys', '',
      'Several signatures instead of --input_type, as comma-separated '
      'input_type:signature_name pairs, e.g. '
      '"image_tensor:serving_default,tflite:tflite". Also accepts the split '
      'parts "network" and "postprocess" (see export_module).')
  flags.DEFINE_string(
      'export_saved_model_subdir', 'saved_model',
      'Subdirectory of --export_dir receiving the SavedModel.')
  flags.DEFINE_string(
      'export_checkpoint_subdir', 'checkpoint',
      'Subdirectory of --export_dir receiving a copy of the weights.')


def main(argv: Sequence[str]) -> None:
  del argv
  input_type = FLAGS.input_type
  if input_type not in export_module.INPUT_TYPES:
    raise app.UsageError(f'--input_type must be one of '
                         f'{export_module.INPUT_TYPES}, got {input_type!r}')
  if not FLAGS.export_dir:
    raise app.UsageError('--export_dir is required')
  function_keys = parse_function_keys(FLAGS.function_keys)
  input_image_size = (parse_image_size(FLAGS.input_image_size)
                      if FLAGS.input_image_size else None)
  batch_size = FLAGS.batch_size
  if batch_size is not None and batch_size <= 0:
    raise app.UsageError(f'--batch_size must be positive, got {batch_size}')
  if batch_size is None and input_type == 'tflite' and not function_keys:
    batch_size = 1
  try:
    checkpoint_path = experiment_loading.resolve_checkpoint(FLAGS.checkpoint_path)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  params = load_params(FLAGS.experiment, FLAGS.config_file,
                       FLAGS.params_override)
  try:
    saved_model_dir, restored = export_inference_graph(
        params, checkpoint_path, FLAGS.export_dir, input_type=input_type,
        input_image_size=input_image_size, batch_size=batch_size,
        function_keys=function_keys,
        saved_model_subdir=FLAGS.export_saved_model_subdir,
        checkpoint_subdir=FLAGS.export_checkpoint_subdir or None,
        use_ema=FLAGS.use_ema)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  logging.info('Exported %s: %s', saved_model_dir, restored.description)
  print(f'SavedModel written to {saved_model_dir} ({restored.description})')


def run() -> None:
  """Console entry point (`maskconver-export-saved-model`)."""
  define_flags()
  command_flags.run_command(main)


if __name__ == '__main__':
  run()
