"""Picks the `Predictor` backend from what the user points at."""

import os
from typing import Optional, Sequence

from maskconver import experiment_loading
from maskconver.inference import checkpoint_predictor
from maskconver.inference import predictor
from maskconver.inference import saved_model_predictor
from maskconver.inference import tflite_predictor


def load_predictor(model: Optional[str] = None,
                   experiment: Optional[str] = None,
                   checkpoint_path: Optional[str] = None,
                   config_files: Sequence[str] = (),
                   params_override: Optional[str] = None,
                   score_threshold: Optional[float] = None,
                   num_threads: Optional[int] = None,
                   use_ema: bool = True) -> predictor.Predictor:
  """Loads a model as a `Predictor`.

  Exactly one of `model` (a SavedModel directory or a .tflite file) and
  `experiment` + `checkpoint_path` must be given.

  Args:
    model: SavedModel directory or .tflite file.
    experiment: registered experiment name (checkpoint backend).
    checkpoint_path: checkpoint prefix or folder (checkpoint backend).
    config_files: YAML overrides of the experiment.
    params_override: overrides of the experiment (YAML string or k=v list).
    score_threshold: the checkpoint backend merges with this threshold;
      exported models keep theirs (the demo filters their segments).
    num_threads: TFLite interpreter threads.
    use_ema: the checkpoint backend uses the moving-average weights when the
      checkpoint has them (exported models hold what was exported).

  Returns:
    The predictor.

  Raises:
    ValueError: with the flag name, if the arguments are inconsistent or
      the model cannot be loaded.
  """
  if model and experiment:
    raise ValueError('give either --model or --experiment with '
                     '--checkpoint_path, not both')
  if model:
    if config_files or params_override or checkpoint_path:
      raise ValueError('--config_file, --params_override and '
                       '--checkpoint_path go with --experiment, not --model')
    if os.path.isdir(model):
      return saved_model_predictor.SavedModelPredictor(model)
    if os.path.isfile(model):
      if not model.lower().endswith('.tflite'):
        raise ValueError(f'--model={model}: expected a SavedModel directory '
                         'or a .tflite file')
      return tflite_predictor.TfLitePredictor(model, num_threads=num_threads)
    raise ValueError(f'--model={model}: no such file or directory')
  if experiment:
    if not checkpoint_path:
      raise ValueError('--experiment needs --checkpoint_path')
    params = experiment_loading.load_experiment(experiment, config_files,
                                                  params_override)
    return checkpoint_predictor.CheckpointPredictor(
        params, checkpoint_path, score_threshold=score_threshold,
        use_ema=use_ema)
  raise ValueError('give --model (SavedModel directory or .tflite file) or '
                   '--experiment with --checkpoint_path')
