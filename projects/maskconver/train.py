"""Trains and evaluates MaskConver with Model Garden's trainer.

  python -m maskconver.train --experiment=maskconver_synthetic \\
      --mode=train_and_eval --model_dir=/tmp/model \\
      --config_file=configs/experiments/maskconver_synthetic.yaml \\
      --params_override='task.train_data.input_path=/data/train-*'

Model Garden's flags: --experiment, --mode (train, eval, train_and_eval,
continuous_eval), --model_dir, --config_file (repeatable), --params_override,
--tpu, --gin_file, --gin_params; ours: --seed (Python, NumPy and TensorFlow
seeds, and TensorFlow's op determinism unless --nodeterministic): the same
seeded command on the same machine writes bit-identical checkpoints
(docs/training.md, Reproducible runs). Re-running the same command resumes
from the latest checkpoint in --model_dir. Every evaluation writes
<model_dir>/eval_metrics.json.
"""

from absl import flags
from absl import logging

from official.common import distribute_utils
from official.common import flags as tfm_flags
from official.core import task_factory
from official.core import train_lib
from official.core import train_utils
from official.modeling import performance
from official.vision.utils import summary_manager
import tensorflow as tf
import tf_keras

from maskconver import registry_imports  # pylint: disable=unused-import
from maskconver.common import flags as command_flags

FLAGS = flags.FLAGS
_SEED = flags.DEFINE_integer(
    'seed', None,
    'Seeds Python, NumPy and TensorFlow (weights, shuffling, augmentation) '
    'so a run repeats; unset: not seeded.', lower_bound=0)
_DETERMINISTIC = flags.DEFINE_boolean(
    'deterministic', True,
    'With --seed: runs every TensorFlow op deterministically (and the input '
    'pipeline\'s random maps in a fixed order), so a rerun on the same '
    'machine writes bit-identical checkpoints; --nodeterministic keeps '
    'TensorFlow\'s default kernels. No effect without --seed.')


def main(_) -> None:
  if _SEED.value is not None:
    tf_keras.utils.set_random_seed(_SEED.value)
  if _SEED.value is not None and _DETERMINISTIC.value:
    tf.config.experimental.enable_op_determinism()
  params = train_utils.parse_configuration(FLAGS)
  model_dir = FLAGS.model_dir
  if 'train' in FLAGS.mode:
    # Eval-only jobs do not write the config, so a continuous evaluator does
    # not race the trainer for the same file.
    train_utils.serialize_config(params, model_dir)
  if params.runtime.mixed_precision_dtype:
    performance.set_mixed_precision_policy(
        params.runtime.mixed_precision_dtype)
  strategy = distribute_utils.get_distribution_strategy(
      distribution_strategy=params.runtime.distribution_strategy,
      all_reduce_alg=params.runtime.all_reduce_alg,
      num_gpus=params.runtime.num_gpus,
      tpu_address=params.runtime.tpu)
  with strategy.scope():
    task = task_factory.get_task(params.task, logging_dir=model_dir)
  _, eval_logs = train_lib.run_experiment(
      distribution_strategy=strategy,
      task=task,
      mode=FLAGS.mode,
      params=params,
      model_dir=model_dir,
      eval_summary_manager=summary_manager.maybe_build_eval_summary_manager(
          params=params, model_dir=model_dir))
  if eval_logs:
    logging.info('Final evaluation: %s', {
        k: v for k, v in eval_logs.items() if '/' not in k})


def run() -> None:
  """Console entry point."""
  tfm_flags.define_flags()
  flags.mark_flags_as_required(['experiment', 'mode', 'model_dir'])
  command_flags.run_command(main, also_list=[tfm_flags.__name__])


if __name__ == '__main__':
  run()
