"""Loading an experiment config and a checkpoint, as the CLIs take them.

Shared by export, benchmark, model statistics and the checkpoint predictor,
so every command names the same flag in the same way when something is off,
and restores the same weights.

Which weights: Model Garden's trainer, with `optimizer_config.ema` set, wraps
the optimizer in `ExponentialMovingAverage`, which keeps the average of every
model variable as an optimizer slot named 'average'. So each regular
checkpoint (`model_dir/ckpt-N`) holds the raw weights under `model/...` and
their averages under `model/.../.OPTIMIZER_SLOT/optimizer/average/...`.
Evaluation swaps the averages in (`base_trainer.eval_begin` / `eval_end`),
so the evaluated model is the EMA one; after each evaluation the
`EMACheckpointing` action (`official.core.actions`) also saves the trainer's
checkpoint with the weights swapped, under
`model_dir/ema_checkpoints/average_weights-N`: there `model/...` holds the
averages and the 'average' slots the raw weights. `restore_model_weights`
reads either kind and gives the EMA weights whenever the checkpoint has them
(unless told not to), and says which it restored.
"""

import dataclasses
import os
from typing import Optional, Sequence

import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization

from maskconver import registry_imports  # pylint: disable=unused-import


def load_experiment(experiment: Optional[str],
                    config_files: Sequence[str] = (),
                    params_override: Optional[str] = None
                    ) -> cfg.ExperimentConfig:
  """A registered experiment with YAML files and overrides applied.

  Args:
    experiment: registered experiment name (--experiment).
    config_files: YAML files applied in order (--config_file).
    params_override: YAML string or comma-separated key=value overrides
      (--params_override).

  Returns:
    The validated experiment config.

  Raises:
    ValueError: naming the flag, when the experiment is missing or unknown,
      a file does not exist, or a file / override does not fit the config.
  """
  if not experiment:
    raise ValueError('--experiment is required, e.g. '
                     '--experiment=maskconver_mnmh_coco_640')
  try:
    params = exp_factory.get_exp_config(experiment)
  except LookupError as e:
    raise ValueError(f'--experiment={experiment}: not a registered '
                     'experiment') from e
  for config_file in config_files or ():
    if not os.path.isfile(config_file):
      raise ValueError(f'--config_file: {config_file} does not exist')
    try:
      params = hyperparams.override_params_dict(params, config_file,
                                                is_strict=True)
    except (KeyError, ValueError) as e:
      raise ValueError(f'--config_file={config_file}: {e}') from e
  if params_override:
    try:
      params = hyperparams.override_params_dict(params, params_override,
                                                is_strict=True)
    except (KeyError, ValueError) as e:
      raise ValueError(f'--params_override: {e}') from e
  params.validate()
  return params


def resolve_checkpoint(checkpoint_path: Optional[str],
                       flag_name: str = '--checkpoint_path') -> str:
  """Returns the checkpoint prefix of a prefix or a directory.

  Args:
    checkpoint_path: a checkpoint prefix, or a directory of checkpoints
      (its latest is used), e.g. a training model_dir.
    flag_name: how the error messages name the argument.

  Returns:
    The checkpoint prefix.

  Raises:
    ValueError: no path, or no checkpoint there.
  """
  if not checkpoint_path:
    raise ValueError(f'{flag_name} is required: a checkpoint prefix or a '
                     'directory of checkpoints (e.g. the training model_dir)')
  if tf.io.gfile.isdir(checkpoint_path):
    latest = tf.train.latest_checkpoint(checkpoint_path)
    if latest is None:
      raise ValueError(f'{flag_name}={checkpoint_path}: no checkpoint in '
                       'this directory')
    return latest
  if not tf.io.gfile.exists(checkpoint_path + '.index'):
    raise ValueError(f'{flag_name}={checkpoint_path}: not a checkpoint '
                     f'({checkpoint_path}.index does not exist) nor a '
                     'directory')
  return checkpoint_path


# Checkpoint key suffix of the EMA optimizer's 'average' slot of a variable.
_AVERAGE_SLOT_SUFFIX = (
    '/.OPTIMIZER_SLOT/optimizer/average/.ATTRIBUTES/VARIABLE_VALUE')
# Prefix of the checkpoints EMACheckpointing writes (model = averages).
EMA_CHECKPOINT_PREFIX = 'average_weights'


@dataclasses.dataclass(frozen=True)
class RestoredWeights:
  """What `restore_model_weights` restored.

  Attributes:
    checkpoint_path: the checkpoint prefix read.
    ema: True if the model now holds the moving-average weights.
    description: one line for users, e.g. 'EMA weights of /m/ckpt-1500'.
  """
  checkpoint_path: str
  ema: bool
  description: str


def _read(checkpoint: tf.train.Checkpoint, path: str, flag_name: str) -> None:
  try:
    status = checkpoint.read(path)
    status.expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise ValueError(
        f'{flag_name}={path}: the checkpoint does not match the model of the '
        f'experiment ({str(e)[:500]})') from e


def _assign_slot_values(model: tf_keras.Model, path: str, num_slots: int,
                        flag_name: str) -> None:
  """Restores the model, then overwrites it with its 'average' slots.

  The slots are reached the way the trainer wrote them: through an
  `ExponentialMovingAverage` optimizer that shadows the same variables
  (all of them, or the trainable ones: whichever the checkpoint has).
  """
  if num_slots == len(model.variables):
    trainable_only = False
  elif num_slots == len(model.trainable_variables):
    trainable_only = True
  else:
    raise ValueError(
        f'{flag_name}={path}: the checkpoint has {num_slots} moving '
        f'averages, but the model has {len(model.variables)} variables '
        f'({len(model.trainable_variables)} trainable)')
  optimizer = optimization.ExponentialMovingAverage(
      tf_keras.optimizers.legacy.SGD(), trainable_weights_only=trainable_only)
  shadowed = model.trainable_variables if trainable_only else model.variables
  optimizer.shadow_copy(model)
  _read(tf.train.Checkpoint(model=model, optimizer=optimizer), path,
        flag_name)
  # As the evaluation's swap_weights does, batch-norm statistics included
  # (the optimizer's assign_average_vars skips non-trainable variables).
  for variable in shadowed:
    variable.assign(optimizer.get_slot(variable, 'average'))


def restore_model_weights(model: tf_keras.Model,
                          checkpoint_path: Optional[str],
                          use_ema: bool = True,
                          flag_name: str = '--checkpoint_path'
                          ) -> RestoredWeights:
  """Restores a training checkpoint into `model`, EMA weights by default.

  Args:
    model: the built model of the experiment.
    checkpoint_path: a checkpoint prefix or a directory (its latest): a
      model_dir (`ckpt-N`, raw weights plus their averages when the
      optimizer kept an EMA) or its `ema_checkpoints/` (`average_weights-N`,
      averages plus the raw weights as slots).
    use_ema: restore the moving averages when the checkpoint has them;
      False restores the raw (last step's) weights.
    flag_name: how the error messages name the argument.

  Returns:
    What was restored (see RestoredWeights).

  Raises:
    ValueError: naming the flag, when there is no checkpoint, it does not
      hold this model, or the raw weights are asked of an `ema_checkpoints`
      checkpoint that does not have them.
  """
  path = resolve_checkpoint(checkpoint_path, flag_name)
  keys = tf.train.load_checkpoint(path).get_variable_to_shape_map()
  num_slots = sum(1 for k in keys
                  if k.startswith('model/') and k.endswith(_AVERAGE_SLOT_SUFFIX))
  model_holds_averages = os.path.basename(path).startswith(
      EMA_CHECKPOINT_PREFIX)
  if use_ema == model_holds_averages or not num_slots:
    if not use_ema and model_holds_averages:
      raise ValueError(
          f'{flag_name}={path}: this EMA checkpoint does not hold the raw '
          'weights; point at the model_dir (ckpt-N) for them')
    _read(tf.train.Checkpoint(model=model), path, flag_name)
    ema = model_holds_averages
  else:
    # The slots hold what the model variables do not: the averages of a
    # regular checkpoint, the raw weights of an EMA one.
    _assign_slot_values(model, path, num_slots, flag_name)
    ema = not model_holds_averages
  if ema:
    description = f'EMA weights of {path}'
  elif use_ema:
    description = f'raw weights of {path} (it has no EMA weights)'
  else:
    description = f'raw weights of {path} (EMA weights not used)'
  return RestoredWeights(checkpoint_path=path, ema=ema,
                         description=description)
