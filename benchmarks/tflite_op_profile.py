r"""Per-operator CPU time of a TFLite model, measured op by op.

  python -m benchmarks.tflite_op_profile --tflite_path=model.tflite \
      [--kernels=xnnpack|builtin] [--num_threads=1] [--num_runs=10] [--top=15]

The Python interpreters (LiteRT's and tf.lite's) expose no profiler, and
LiteRT's `benchmark_model` binary is not on PyPI. So every operator is cut
out of the model into a one-operator model (same kernel, options, weights
and quantization), fed the values its inputs take in a run of the whole
model on a fixed random input, and timed alone (median of `--num_runs`
invokes after one warm-up). The sum over operators is printed next to the
whole model's median time: operators that XNNPACK would fuse or keep in its
own layout are timed apart here, so the sum runs a little above the whole.

Each operator is attributed to a part of MaskConver by the names of its
output tensors (the Keras layer scopes): backbone, decoder, heatmap_head,
embedding_head, mask_head, selector (top-K centers), generator (mask
embeddings and the mask einsum), merge (the panoptic post-processor) or
other. Prints the time per part, per operator type and the `--top` slowest
operators, then one JSON object on the last line.
"""

import json
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import app
from absl import flags
import numpy as np

from benchmarks import timing
from maskconver.inference import tflite_runtime

FLAGS = flags.FLAGS
KERNELS = tflite_runtime.KERNELS
# Part of the model -> substrings of output tensor names, checked in order.
PARTS = (
    ('merge', ('panoptic_postprocessor', 'image_info')),
    ('selector', ('center_selector',)),
    ('generator', ('mask_embedding_generator', 'mask_projection')),
    ('heatmap_head', ('center_heatmap_head',)),
    ('embedding_head', ('center_embedding_head',)),
    ('mask_head', ('mask_feature_head',)),
    ('decoder', ('decoder', 'deep_lab', 'conv_ne_xt', 'convnext', 'aspp',
                 'fpn')),
    ('backbone', ('backbone', 'mobile_net', 'res_net', 'mobilenet',
                  'resnet')),
)


def schema_modules():
  """(schema_py_generated, flatbuffer_utils) of LiteRT, to edit models."""
  # ai-edge-litert (setup.py). pylint: disable=g-import-not-at-top
  from ai_edge_litert import schema_py_generated
  from ai_edge_litert.tools import flatbuffer_utils
  return schema_py_generated, flatbuffer_utils


def part_of(tensor_names: Sequence[str]) -> str:
  """The MaskConver part an operator belongs to, from its output names."""
  for name in tensor_names:
    lowered = name.lower()
    for part, needles in PARTS:
      if any(needle in lowered for needle in needles):
        return part
  return 'other'


def random_inputs(interpreter: Any, seed: int = 0) -> Dict[int, np.ndarray]:
  """{input tensor index: random value} (normal floats, full-range ints)."""
  rng = np.random.default_rng(seed)
  values = {}
  for detail in interpreter.get_input_details():
    dtype = np.dtype(detail['dtype'])
    shape = detail['shape']
    if dtype.kind == 'f':
      values[detail['index']] = rng.standard_normal(shape).astype(dtype)
    else:
      info = np.iinfo(dtype)
      values[detail['index']] = rng.integers(
          info.min, info.max, size=shape, endpoint=True).astype(dtype)
  return values


def _single_op_model(schema: Any, utils: Any, model: Any,
                     op_index: int) -> Any:
  """The operator `op_index` of subgraph 0 as a model of its own.

  Returns (model bytes, [original index of each non-constant input]).
  """
  graph = model.subgraphs[0]
  op = graph.operators[op_index]
  old_tensors = [i for i in list(op.inputs) + list(op.outputs) if i >= 0]
  old_tensors = list(dict.fromkeys(old_tensors))
  new_index = {old: new for new, old in enumerate(old_tensors)}
  buffers = [schema.BufferT()]
  tensors = []
  feeds = []
  for old in old_tensors:
    tensor = graph.tensors[old]
    clone = schema.TensorT()
    for field in ('shape', 'type', 'name', 'quantization', 'isVariable',
                  'sparsity', 'shapeSignature', 'hasRank'):
      setattr(clone, field, getattr(tensor, field))
    data = model.buffers[tensor.buffer].data if tensor.buffer else None
    if data is not None and len(data):
      buffers.append(model.buffers[tensor.buffer])
      clone.buffer = len(buffers) - 1
    else:
      clone.buffer = 0
      if old in op.inputs:
        feeds.append(old)
    tensors.append(clone)
  new_op = schema.OperatorT()
  new_op.opcodeIndex = op.opcodeIndex
  new_op.inputs = [new_index[i] if i >= 0 else -1 for i in op.inputs]
  new_op.outputs = [new_index[i] for i in op.outputs]
  new_op.builtinOptionsType = op.builtinOptionsType
  new_op.builtinOptions = op.builtinOptions
  new_op.customOptions = op.customOptions
  subgraph = schema.SubGraphT()
  subgraph.tensors = tensors
  subgraph.inputs = [new_index[i] for i in feeds]
  subgraph.outputs = list(new_op.outputs)
  subgraph.operators = [new_op]
  single = schema.ModelT()
  single.version = model.version
  single.operatorCodes = model.operatorCodes
  single.subgraphs = [subgraph]
  single.buffers = buffers
  return bytes(utils.convert_object_to_bytearray(single)), feeds


def profile(tflite_model: bytes, num_threads: int = 1,
            kernels: str = 'xnnpack', num_runs: int = 10,
            seed: int = 0) -> Dict[str, Any]:
  """Times every operator of subgraph 0 alone (module doc).

  Args:
    tflite_model: the model.
    num_threads: interpreter threads.
    kernels: 'xnnpack' (the default delegate) or 'builtin' (TFLite's own
      kernels, no delegate).
    num_runs: timed invokes per operator and for the whole model.
    seed: seed of the random input.

  Returns:
    {'total_ms': whole model median, 'sum_ms': sum over operators,
     'ops': [{'index', 'op', 'part', 'output', 'ms'}] in execution order,
     'by_part': {part: ms}, 'by_op': {op type: ms}}.
  """
  schema, utils = schema_modules()
  whole = tflite_runtime.make_interpreter(tflite_model, num_threads, kernels,
                                         preserve_all_tensors=True)
  inputs = random_inputs(whole, seed)

  def run_whole():
    for index, value in inputs.items():
      whole.set_tensor(index, value)
    whole.invoke()

  total_ms = timing.time_runs(run_whole, num_runs, warmup=1)['median_ms']
  # One more run leaves every intermediate tensor of that input in place.
  run_whole()
  model = utils.read_model_from_bytearray(bytearray(tflite_model))
  graph = model.subgraphs[0]
  ops = []
  # pylint: disable-next=protected-access
  for details in whole._get_ops_details():
    if details['op_name'] == 'DELEGATE':
      continue
    index = details['index']
    single, feeds = _single_op_model(schema, utils, model, index)
    interpreter = tflite_runtime.make_interpreter(single, num_threads,
                                                  kernels)
    values = [whole.get_tensor(i) for i in feeds]
    input_indices = [d['index'] for d in interpreter.get_input_details()]

    def run_op(interpreter=interpreter, values=values,
               input_indices=input_indices):
      for tensor_index, value in zip(input_indices, values):
        interpreter.set_tensor(tensor_index, value)
      interpreter.invoke()

    outputs = [graph.tensors[i].name.decode() if isinstance(
        graph.tensors[i].name, bytes) else str(graph.tensors[i].name)
               for i in graph.operators[index].outputs]
    ops.append({'index': index, 'op': details['op_name'],
                'part': part_of(outputs), 'output': outputs[0],
                'ms': timing.time_runs(run_op, num_runs,
                                         warmup=1)['median_ms']})
  by_part: Dict[str, float] = {}
  by_op: Dict[str, float] = {}
  for op in ops:
    by_part[op['part']] = by_part.get(op['part'], 0.0) + op['ms']
    by_op[op['op']] = by_op.get(op['op'], 0.0) + op['ms']
  return {
      'kernels': kernels, 'num_threads': num_threads,
      'total_ms': total_ms, 'sum_ms': sum(op['ms'] for op in ops),
      'ops': ops,
      'by_part': dict(sorted(by_part.items(), key=lambda kv: -kv[1])),
      'by_op': dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
  }


def format_profile(result: Mapping[str, Any], top: int = 15,
                   title: Optional[str] = None) -> str:
  """The human-readable report of `profile`."""
  total = result['sum_ms'] or 1.0
  lines = []
  if title:
    lines.append(title)
  lines.append(f'kernels {result["kernels"]}, {result["num_threads"]} '
               f'thread(s): whole model {result["total_ms"]:.1f} ms (median), '
               f'sum over {len(result["ops"])} ops {result["sum_ms"]:.1f} ms')
  lines.append(f'{"part":<16}{"ms":>9}{"share":>8}')
  for part, ms in result['by_part'].items():
    lines.append(f'{part:<16}{ms:>9.1f}{100 * ms / total:>7.1f}%')
  lines.append(f'{"op type":<24}{"ms":>9}{"share":>8}')
  for name, ms in list(result['by_op'].items())[:top]:
    lines.append(f'{name:<24}{ms:>9.1f}{100 * ms / total:>7.1f}%')
  lines.append(f'{"slowest ops":<24}{"ms":>9}  part / output tensor')
  for op in sorted(result['ops'], key=lambda o: -o['ms'])[:top]:
    lines.append(f'{op["op"]:<24}{op["ms"]:>9.2f}  {op["part"]} / '
                 f'{op["output"][:70]}')
  return '\n'.join(lines)


def read_model_flag(path: str) -> bytes:
  """The bytes of the `--tflite_path` file; a usage error naming it if not."""
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:
    raise app.UsageError(f'--tflite_path={path}: {e}') from e


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  flags.DEFINE_string('tflite_path', None, 'The .tflite model.')
  flags.DEFINE_enum('kernels', 'xnnpack', list(KERNELS),
                    'xnnpack (default delegate) or builtin kernels.')
  flags.DEFINE_integer('num_threads', 1, 'Interpreter threads.')
  flags.DEFINE_integer('num_runs', 10, 'Timed invokes per operator.')
  flags.DEFINE_integer('top', 15, 'Operator types and operators listed.')


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  if not FLAGS.tflite_path:
    raise app.UsageError('--tflite_path is required')
  if FLAGS.num_runs <= 0 or FLAGS.num_threads <= 0:
    raise app.UsageError('--num_runs and --num_threads must be positive')
  model = read_model_flag(FLAGS.tflite_path)
  result = profile(model, FLAGS.num_threads, FLAGS.kernels, FLAGS.num_runs)
  print(format_profile(result, FLAGS.top, title=FLAGS.tflite_path))
  sys.stdout.flush()
  summary: List[Any] = [dict(op) for op in result['ops']]
  print(json.dumps(dict(result, ops=summary)))
  return 0


def run() -> None:
  """Console entry point."""
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
