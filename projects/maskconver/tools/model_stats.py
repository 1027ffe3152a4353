"""Parameters and FLOPs of a registered MaskConver experiment.

FLOPs convention (the one of the paper's Table 1, of detectron2's fvcore and of
most detection papers): one multiply-add counts as ONE FLOP. TensorFlow's
profiler counts two (a multiply and an add), so its total is halved. The count
covers the whole network at batch 1, from the normalized image to the K mask
logits of the top-K centers (backbone, decoder, heads, center selection, mask
embeddings, mask einsum); it leaves out the panoptic merge, which is not a
network layer and depends on the number of kept masks. Parameters are all
weights, trainable or not (batch-norm statistics included), as Keras counts.
`params` counts every weight the model builds; `params_on_path` counts only
the weights an image's inference forward pass reads on the way to the outputs
(the variables of the traced forward graph that its outputs depend on), so a
layer that is built but whose result no output uses (Model Garden MobileNet's
classification conv after the global pooling) is in `params` and not in
`params_on_path`.

  python -m maskconver.tools.model_stats --experiment=maskconver_r50_coco \\
      --input_size=800x1200

prints a table and, on its last line, one JSON object:
{"experiment", "input_size", "params", "params_on_path", "flops"}.
"""

import json
import sys
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tf_keras
from tensorflow.python.framework import convert_to_constants

from official.modeling import hyperparams

from maskconver import experiment_loading
from maskconver.common import flags as command_flags
from maskconver.modeling import factory

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program).

  Importing this module for its functions defines no flag, so it does not
  collide with the flags of other tools imported in the same process.
  """
  command_flags.define_experiment_flags()
  flags.DEFINE_string(
      'input_size', None,
      'Network input HxW, e.g. 800x1200 (H,W works too); default: the '
      "experiment's task.model.input_size.")


def _forward(model: tf_keras.Model, height: int,
             width: int) -> tf.types.experimental.ConcreteFunction:
  """The model's inference forward pass at batch 1, traced."""
  function = tf.function(lambda images: model(images, training=False))
  return function.get_concrete_function(
      tf.TensorSpec([1, height, width, 3], tf.float32))


def count_params_on_path(model: tf_keras.Model, height: int,
                         width: int) -> int:
  """Weights (trainable or not) that one inference forward pass reads."""
  return _params_read(_forward(model, height, width))


def _params_read(concrete: tf.types.experimental.ConcreteFunction) -> int:
  """Sizes of the variables the function's outputs depend on.

  Walks the traced graph back from its outputs through op inputs, so a
  variable read only by an op whose result no output uses (a built but
  unused endpoint) is not counted.
  """
  graph = concrete.graph
  visited = set()
  stack = [t.op for t in concrete.outputs]
  while stack:
    op = stack.pop()
    if op.name in visited:
      continue
    visited.add(op.name)
    stack.extend(t.op for t in op.inputs)
  by_handle = {id(v.handle): v for v in concrete.variables}
  reached = {}
  for external, internal in graph.captures:
    variable = by_handle.get(id(external))
    if variable is not None and internal.op.name in visited:
      reached[id(variable)] = variable
  return sum(int(v.shape.num_elements()) for v in reached.values())


def count_flops(model: tf_keras.Model, height: int, width: int) -> int:
  """Multiply-adds of one inference forward pass at batch 1 (see module doc)."""
  return _flops(_forward(model, height, width))


def _flops(concrete: tf.types.experimental.ConcreteFunction) -> int:
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  profile = tf.compat.v1.profiler.profile(
      graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd='op',
      options=options)
  return profile.total_float_ops // 2


def model_stats(model_config: hyperparams.Config,
                input_size: Sequence[int]) -> Dict[str, object]:
  """Builds the model and returns its parameter and FLOP counts."""
  height, width = input_size
  model = factory.build_maskconver_model(
      tf_keras.layers.InputSpec(shape=[None, height, width, 3]), model_config)
  parts = {
      name: getattr(model, name).count_params()
      for name in ('backbone', 'decoder', 'heatmap_head', 'embedding_head',
                   'mask_head', 'generator') if getattr(model, name)
  }
  concrete = _forward(model, height, width)
  return {
      'params': model.count_params(),
      'params_on_path': _params_read(concrete),
      'flops': _flops(concrete),
      'params_by_part': parts,
  }


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  logging.set_verbosity(logging.ERROR)
  try:
    params = experiment_loading.load_experiment(
        FLAGS.experiment, FLAGS.config_file, FLAGS.params_override)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  model_config = params.task.model
  try:
    input_size = (command_flags.parse_input_size(FLAGS.input_size) if FLAGS.input_size else
                  list(model_config.input_size[:2]))
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  stats = model_stats(model_config, input_size)
  print(f'experiment   {FLAGS.experiment}')
  print(f'input size   {input_size[0]}x{input_size[1]}')
  for name, count in stats['params_by_part'].items():
    print(f'  {name:<16} {count / 1e6:8.2f} M params')
  print(f'params       {stats["params"] / 1e6:.2f} M (built)')
  print(f'on path      {stats["params_on_path"] / 1e6:.2f} M '
        '(read by the forward pass)')
  print(f'FLOPs        {stats["flops"] / 1e9:.2f} B (multiply-adds)')
  sys.stdout.flush()
  print(json.dumps({
      'experiment': FLAGS.experiment,
      'input_size': input_size,
      'params': stats['params'],
      'params_on_path': stats['params_on_path'],
      'flops': stats['flops'],
  }))
  return 0


def run() -> None:
  """Console entry point (`maskconver-model-stats`)."""
  define_flags()
  command_flags.run_command(main)


if __name__ == '__main__':
  run()
