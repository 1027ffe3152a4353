r"""Where a TFLite model spends its time, by name scope, timed in the model.

  python -m benchmarks.tflite_stage_profile --tflite_path=model.tflite \
      [--scope_depth=2] [--kernels=xnnpack|builtin] [--num_threads=1] \
      [--num_runs=100] [--rounds=5]

`benchmarks.tflite_op_profile` times every operator alone, which misleads for
models of many small operators such as the fast merge: XNNPACK's elementwise
operators run several times faster inside their delegate partition than cut
out alone, and the builtin operators between partitions cost more in place.
This tool times the model's own prefixes instead. Operators run in the order
of the model's operator list; consecutive operators whose first output
tensor has the same name scope (the first `--scope_depth` components of the
name, without the operator's own name) form a group; unscoped operators,
such as the converter's casts to the model's outputs, join the group before
them. For every group, the
model cut after it -- the same operators, weights and kernels, with every
tensor a later operator reads as an output, so nothing is dead -- is timed,
all cuts interleaved in `--rounds` rounds of warm blocks (invokes only; the
inputs are set once). A group costs the difference between the median of
its cut and of the cut before it; a scope costs the sum over its groups (the
converter interleaves scopes, so a scope may own several groups). The sum
over scopes is the whole model's median by construction; single groups are
as noisy as the machine (a difference of two medians), sums over a scope
less so.

The post-processor's fast merge names its stages (`rank`, `labels`,
`uniform`, `cells`, `refine`, `areas`, `paint`, `unpack`), so on the merge
model exported by `benchmarks.benchmark` (`WORK_DIR/tflite_float32_postprocess
.tflite`) this prints where the merge goes. Inputs are random (normal
floats, full-range integers): for the merge model no detection is then
valid, which is what the benchmark's random weights give too. Every cut is
an interpreter of its own: memory grows with the number of groups (about
40 for the merge).

Prints the scopes by time, then one JSON object on the last line.
"""

import json
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import app
from absl import flags

from benchmarks import timing
from benchmarks import tflite_op_profile
from maskconver.inference import tflite_runtime

FLAGS = flags.FLAGS


def _name(tensor: Any) -> str:
  name = tensor.name
  return name.decode() if isinstance(name, bytes) else str(name)


def scope_of(tensor_name: str, depth: int) -> str:
  """The name scope of a tensor, its first `depth` components.

  TFLite names a fused operator's output with its parts' names joined by
  ';'; the first part decides. 'a/b/c/Mul' at depth 2 is 'a/b', 'a/Mul' is
  'a', 'Mul' (no scope) is ''.
  """
  if depth <= 0:
    raise ValueError(f'depth must be positive, got {depth}')
  return '/'.join(tensor_name.split(';')[0].split('/')[:-1][:depth])


def groups(model: Any, depth: int) -> List[Dict[str, Any]]:
  """Consecutive operators of subgraph 0 with the same scope.

  Args:
    model: a flatbuffer_utils ModelT.
    depth: name scope components that decide the group (`scope_of`).

  Returns:
    [{'scope', 'start', 'end'}] in execution order; operators start .. end - 1.
    An unscoped operator (e.g. the converter's casts to the model's outputs,
    named Identity*) joins the group before it.
  """
  graph = model.subgraphs[0]
  result: List[Dict[str, Any]] = []
  for index, op in enumerate(graph.operators):
    scope = scope_of(_name(graph.tensors[op.outputs[0]]), depth)
    if result and scope in ('', result[-1]['scope']):
      result[-1]['end'] = index + 1
    else:
      result.append({'scope': scope, 'start': index, 'end': index + 1})
  return result


def cut_after(schema: Any, utils: Any, model: Any, end: int) -> bytes:
  """The model's first `end` operators of subgraph 0, as a model.

  Its outputs are every tensor those operators produce that a later
  operator reads or the model returns (and the last operator's outputs), so
  the interpreter computes exactly the prefix. The inputs stay the model's.
  """
  graph = model.subgraphs[0]
  operators = list(graph.operators)
  produced = []
  for op in operators[:end]:
    produced.extend(i for i in op.outputs if i >= 0)
  read_later = {i for op in operators[end:] for i in op.inputs if i >= 0}
  read_later.update(int(i) for i in graph.outputs)
  outputs = [i for i in produced if i in read_later]
  outputs += [i for i in operators[end - 1].outputs
              if i >= 0 and i not in outputs]
  subgraph = schema.SubGraphT()
  subgraph.tensors = graph.tensors
  subgraph.inputs = graph.inputs
  subgraph.outputs = outputs
  subgraph.operators = operators[:end]
  subgraph.name = graph.name
  cut = schema.ModelT()
  cut.version = model.version
  cut.operatorCodes = model.operatorCodes
  cut.subgraphs = [subgraph]
  cut.buffers = model.buffers
  cut.description = model.description
  return bytes(utils.convert_object_to_bytearray(cut))


def profile(tflite_model: bytes, scope_depth: int = 2,
            num_threads: int = 1, kernels: str = 'xnnpack',
            num_runs: int = 100, rounds: int = timing.ROUNDS,
            seed: int = 0) -> Dict[str, Any]:
  """Times the model's cuts after every group (module doc).

  Args:
    tflite_model: the model (one subgraph is profiled: the first).
    scope_depth: name scope components that make a group.
    num_threads: interpreter threads.
    kernels: 'xnnpack' or 'builtin' (tflite_runtime.KERNELS).
    num_runs: timed invokes per cut, spread over the rounds.
    rounds: blocks per cut, interleaved with the other cuts' blocks.
    seed: seed of the random inputs.

  Returns:
    {'total_ms': the whole model's median (the last cut),
     'groups': [{'scope', 'start', 'end', 'cumulative_ms', 'ms'}] in
       execution order,
     'scopes': {scope: {'ms', 'ops', 'groups'}}, slowest first,
     plus the arguments}.
  """
  if num_runs <= 0 or rounds <= 0 or num_threads <= 0:
    raise ValueError('num_runs, rounds and num_threads must be positive, got '
                     f'{num_runs}, {rounds}, {num_threads}')
  schema, utils = tflite_op_profile.schema_modules()
  model = utils.read_model_from_bytearray(bytearray(tflite_model))
  found = groups(model, scope_depth)
  interpreters = []
  inputs = None
  for group in found:
    cut = (tflite_model if group['end'] == len(model.subgraphs[0].operators)
           else cut_after(schema, utils, model, group['end']))
    interpreter = tflite_runtime.make_interpreter(cut, num_threads, kernels)
    if inputs is None:
      inputs = tflite_op_profile.random_inputs(interpreter, seed)
    for index, value in inputs.items():
      interpreter.set_tensor(index, value)
    interpreter.invoke()
    interpreters.append(interpreter)
  # Per round, each cut runs once untimed (warm again after the others ran),
  # then its block of timed invokes.
  latency = timing.time_interleaved(
      {str(index): {'cut': interpreter.invoke}
       for index, interpreter in enumerate(interpreters)},
      num_runs, warmup=0, rounds=rounds)
  previous = 0.0
  scopes: Dict[str, Dict[str, Any]] = {}
  for index, group in enumerate(found):
    group['cumulative_ms'] = latency[str(index)]['cut']['median_ms']
    group['ms'] = group['cumulative_ms'] - previous
    previous = group['cumulative_ms']
    entry = scopes.setdefault(group['scope'],
                              {'ms': 0.0, 'ops': 0, 'groups': 0})
    entry['ms'] += group['ms']
    entry['ops'] += group['end'] - group['start']
    entry['groups'] += 1
  return {
      'kernels': kernels, 'num_threads': num_threads,
      'scope_depth': scope_depth, 'num_runs': num_runs,
      'rounds': min(rounds, num_runs),
      'total_ms': previous, 'groups': found,
      'scopes': dict(sorted(scopes.items(), key=lambda kv: -kv[1]['ms'])),
  }


def format_profile(result: Mapping[str, Any],
                   title: Optional[str] = None) -> str:
  """The human-readable report of `profile`."""
  total = result['total_ms'] or 1.0
  lines = [title] if title else []
  lines.append(
      f'kernels {result["kernels"]}, {result["num_threads"]} thread(s): '
      f'whole model {result["total_ms"]:.3f} ms (median of '
      f'{result["num_runs"]} invokes); {len(result["groups"])} groups, '
      f'scope depth {result["scope_depth"]}')
  lines.append(f'{"scope":<48}{"ms":>9}{"share":>8}{"ops":>6}{"groups":>8}')
  for scope, entry in result['scopes'].items():
    lines.append(f'{scope or "(no scope)":<48}{entry["ms"]:>9.3f}'
                 f'{100 * entry["ms"] / total:>7.1f}%{entry["ops"]:>6}'
                 f'{entry["groups"]:>8}')
  return '\n'.join(lines)


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program)."""
  flags.DEFINE_string('tflite_path', None, 'The .tflite model.')
  flags.DEFINE_integer('scope_depth', 2,
                       'Name scope components that make a group.')
  flags.DEFINE_enum('kernels', 'xnnpack', list(tflite_runtime.KERNELS),
                    'xnnpack (default delegate) or builtin kernels.')
  flags.DEFINE_integer('num_threads', 1, 'Interpreter threads.')
  flags.DEFINE_integer('num_runs', 100, 'Timed invokes per cut.')
  flags.DEFINE_integer('rounds', timing.ROUNDS,
                       'Interleaved blocks per cut.')


def main(argv: Sequence[str]) -> Optional[int]:
  del argv
  if not FLAGS.tflite_path:
    raise app.UsageError('--tflite_path is required')
  for name in ('scope_depth', 'num_threads', 'num_runs', 'rounds'):
    if getattr(FLAGS, name) <= 0:
      raise app.UsageError(f'--{name} must be positive, got '
                           f'{getattr(FLAGS, name)}')
  model = tflite_op_profile.read_model_flag(FLAGS.tflite_path)
  result = profile(model, FLAGS.scope_depth, FLAGS.num_threads,
                   FLAGS.kernels, FLAGS.num_runs, FLAGS.rounds)
  print(format_profile(result, title=FLAGS.tflite_path))
  sys.stdout.flush()
  print(json.dumps(result))
  return 0


def run() -> None:
  """Console entry point."""
  define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
