"""Loading an experiment config and a checkpoint path, as the CLIs take them.

Shared by export, benchmark, model statistics and the checkpoint predictor,
so every command names the same flag in the same way when something is off.
"""

import os
from typing import Optional, Sequence

import tensorflow as tf

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams

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
