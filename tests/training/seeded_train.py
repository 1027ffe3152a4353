"""`python -m maskconver.train` with a fixed seed and optional logical CPUs.

  python tests/training/seeded_train.py --seed=1 --logical_cpus=2 \\
      --experiment=maskconver_synthetic --mode=train --model_dir=DIR \\
      --config_file=tests/training/tiny_maskconver.yaml \\
      --params_override='runtime.distribution_strategy=mirrored,...'

Test driver for the distributed-training tests. It runs `maskconver.train`'s
own `main` with its flags (`--seed` seeds every run and every worker alike;
seeding belongs to the driver, not to the task), after one thing train.py
does not do:

* `--logical_cpus=N` (N > 1): splits the CPU into N logical devices. Model
  Garden's `distribute_utils.get_distribution_strategy('mirrored',
  num_gpus=0)` mirrors over CPU:0 only; with this flag it mirrors over all N
  logical CPUs, so MirroredStrategy runs N replicas on one machine. Every
  other strategy (one_device, multi_worker_mirrored from TF_CONFIG) is Model
  Garden's, unchanged.
"""

from absl import app
from absl import flags
import tensorflow as tf

from official.common import distribute_utils
from official.common import flags as tfm_flags

from maskconver import train

flags.DEFINE_integer('logical_cpus', 1,
                     'Logical CPU devices; > 1 makes "mirrored" with '
                     'num_gpus=0 mirror over all of them.')

FLAGS = flags.FLAGS


def _split_cpu(num_devices: int) -> None:
  """Splits the first physical CPU into `num_devices` logical devices."""
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
  model_garden_strategy = distribute_utils.get_distribution_strategy

  def get_distribution_strategy(distribution_strategy='mirrored', num_gpus=0,
                                **kwargs):
    if distribution_strategy == 'mirrored' and num_gpus == 0:
      devices = [d.name for d in tf.config.list_logical_devices('CPU')]
      return tf.distribute.MirroredStrategy(devices=devices)
    return model_garden_strategy(
        distribution_strategy=distribution_strategy, num_gpus=num_gpus,
        **kwargs)

  distribute_utils.get_distribution_strategy = get_distribution_strategy


def main(argv) -> None:
  if FLAGS.logical_cpus > 1:
    _split_cpu(FLAGS.logical_cpus)
  train.main(argv)


if __name__ == '__main__':
  tfm_flags.define_flags()
  flags.mark_flags_as_required(['experiment', 'mode', 'model_dir'])
  app.run(main)
