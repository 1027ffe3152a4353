"""Tests of the TFLite profilers: op by op, and by name scope in the model."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import tflite_op_profile
from benchmarks import tflite_stage_profile
from maskconver import keys
from maskconver.inference import tflite_runtime
from maskconver.modeling import panoptic_postprocessor


@tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32)])
def _scoped(x):
  with tf.name_scope('head'):
    a = tf.exp(x)
  with tf.name_scope('body'):
    b = tf.math.sin(a)
    c = tf.math.cos(a)
  with tf.name_scope('tail'):
    d = tf.abs(b * c)
  return tf.sqrt(d)


def _convert(function):
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [function.get_concrete_function()], function)
  return converter.convert()


@pytest.fixture(scope='module')
def scoped_model():
  return _convert(_scoped)


def _read(model):
  _, utils = tflite_op_profile.schema_modules()
  return utils.read_model_from_bytearray(bytearray(model))


def _reference(model_bytes, seed):
  """(schema, utils, ModelT, random inputs, every tensor's value)."""
  schema, utils = tflite_op_profile.schema_modules()
  interpreter = tflite_runtime.make_interpreter(model_bytes, 1, 'builtin')
  inputs = tflite_op_profile.random_inputs(interpreter, seed=seed)
  return (schema, utils, _read(model_bytes), inputs,
          _all_tensors(model_bytes, inputs))


def _all_tensors(model, inputs):
  """{tensor index: value} of every tensor after one run of `model`."""
  interpreter = tflite_runtime.make_interpreter(
      model, 1, 'builtin', preserve_all_tensors=True)
  for index, value in inputs.items():
    interpreter.set_tensor(index, value)
  interpreter.invoke()
  graph = _read(model).subgraphs[0]
  return {i: interpreter.get_tensor(i)
          for op in graph.operators for i in op.outputs}


@pytest.mark.parametrize('name, depth, scope', [
    ('a/b/c/Mul', 2, 'a/b'),
    ('a/b/c/Mul', 1, 'a'),
    ('a/b/c/Mul', 5, 'a/b/c'),
    ('a/Mul', 2, 'a'),
    ('Mul', 2, ''),
    # A fused operator: its first part decides.
    ('x/y/Relu;x/z/add', 2, 'x/y'),
])
def test_scope_of(name, depth, scope):
  assert tflite_stage_profile.scope_of(name, depth) == scope


def test_scope_of_rejects_a_depth_below_one():
  with pytest.raises(ValueError, match='depth'):
    tflite_stage_profile.scope_of('a/b', 0)


def test_groups_follow_the_scopes_in_execution_order(scoped_model):
  found = tflite_stage_profile.groups(_read(scoped_model), 1)
  # exp | sin, cos | mul, abs and sqrt (the model's output, unscoped, joins
  # the group before it).
  assert [(g['scope'], g['start'], g['end']) for g in found] == [
      ('head', 0, 1), ('body', 1, 3), ('tail', 3, 6)]


def test_each_cut_computes_the_prefix_exactly(scoped_model):
  schema, utils, model, inputs, expected = _reference(scoped_model, 3)
  graph = model.subgraphs[0]
  for end in range(1, len(graph.operators) + 1):
    cut = tflite_stage_profile.cut_after(schema, utils, model, end)
    cut_model = _read(cut)
    assert len(cut_model.subgraphs[0].operators) == end
    produced = [i for op in graph.operators[:end] for i in op.outputs]
    outputs = list(cut_model.subgraphs[0].outputs)
    # Every tensor of the prefix that a later operator reads is an output.
    read_later = {i for op in graph.operators[end:] for i in op.inputs}
    assert {i for i in produced if i in read_later} <= set(outputs)
    assert set(outputs) <= set(produced)
    values = _all_tensors(cut, inputs)
    for index in outputs:
      np.testing.assert_array_equal(values[index], expected[index])


def test_stage_profile_sums_to_the_whole_model(scoped_model):
  result = tflite_stage_profile.profile(scoped_model, scope_depth=1,
                                        num_runs=6, rounds=2)
  assert [g['scope'] for g in result['groups']] == ['head', 'body', 'tail']
  assert set(result['scopes']) == {'head', 'body', 'tail'}
  assert result['total_ms'] == result['groups'][-1]['cumulative_ms'] > 0.0
  assert math.isclose(sum(s['ms'] for s in result['scopes'].values()),
                      result['total_ms'], rel_tol=1e-9)
  assert sum(s['ops'] for s in result['scopes'].values()) == 6
  assert result['scopes']['body'] == pytest.approx(
      {'ms': result['groups'][1]['ms'], 'ops': 2, 'groups': 1})
  text = tflite_stage_profile.format_profile(result, title='scoped')
  assert text.splitlines()[0] == 'scoped'
  assert [line.split()[0] for line in text.splitlines()[3:]] == list(
      result['scopes'])


@pytest.mark.parametrize('arguments', [{'num_runs': 0}, {'rounds': 0},
                                       {'num_threads': 0}])
def test_stage_profile_rejects_non_positive_counts(scoped_model, arguments):
  with pytest.raises(ValueError, match='positive'):
    tflite_stage_profile.profile(scoped_model, **arguments)


def test_op_profile_cuts_every_op_out_exactly(scoped_model):
  schema, utils, model, inputs, expected = _reference(scoped_model, 1)
  graph = model.subgraphs[0]
  for index, op in enumerate(graph.operators):
    # pylint: disable-next=protected-access
    single, feeds = tflite_op_profile._single_op_model(schema, utils, model,
                                                       index)
    alone = tflite_runtime.make_interpreter(single, 1, 'builtin')
    for detail, feed in zip(alone.get_input_details(), feeds):
      alone.set_tensor(detail['index'], expected.get(feed, inputs.get(feed)))
    alone.invoke()
    output = alone.get_output_details()[0]['index']
    np.testing.assert_array_equal(alone.get_tensor(output),
                                  expected[op.outputs[0]])


def test_op_profile_lists_every_op(scoped_model):
  result = tflite_op_profile.profile(scoped_model, kernels='builtin',
                                     num_runs=2)
  assert [op['op'] for op in result['ops']] == [
      'EXP', 'COS', 'SIN', 'MUL', 'ABS', 'SQRT']
  assert result['sum_ms'] == pytest.approx(
      sum(op['ms'] for op in result['ops']))
  assert set(result['by_part']) == {'other'}


def test_the_fast_merge_names_its_stages():
  """The README's stage profile of the merge relies on these scopes."""
  layer = panoptic_postprocessor.PanopticPostprocessor(
      num_classes=3, num_thing_classes=2, output_size=(16, 16),
      merge_method='fast', mask_activation='hard_sigmoid')

  @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 6]),
                                tf.TensorSpec([1, 6], tf.int32),
                                tf.TensorSpec([1, 6])])
  def merge(logits, classes, scores):
    return layer({keys.MASK_LOGITS: logits, keys.DETECTED_CLASSES: classes,
                  keys.DETECTED_SCORES: scores})

  found = tflite_stage_profile.groups(_read(_convert(merge)), 2)
  # The layer's scope is 'panoptic_postprocessor', with a counter when the
  # process built others before.
  layer_scope = layer.name
  assert layer_scope.startswith('panoptic_postprocessor')
  scopes = {g['scope'] for g in found}
  stages = ('rank', 'labels', 'uniform', 'cells', 'refine', 'areas', 'paint',
            'unpack')
  assert {f'{layer_scope}/{s}' for s in stages} <= scopes


def _run_cli(*arguments):
  # From the checkout root, where `benchmarks` is.
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  return subprocess.run(
      [sys.executable, '-m', 'benchmarks.tflite_stage_profile', *arguments],
      capture_output=True, text=True, check=False, cwd=root,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))


def test_cli_prints_the_scopes_and_json(scoped_model, tmp_path):
  path = tmp_path / 'scoped.tflite'
  path.write_bytes(scoped_model)
  result = _run_cli(f'--tflite_path={path}', '--scope_depth=1',
                    '--num_runs=4', '--rounds=2')
  assert result.returncode == 0, result.stderr
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  assert set(summary['scopes']) == {'head', 'body', 'tail'}
  assert summary['num_runs'] == 4
  assert 'body' in result.stdout


@pytest.mark.parametrize('arguments, message', [
    (['--tflite_path=/nonexistent/model.tflite'], '/nonexistent/model.tflite'),
    (['--tflite_path=x.tflite', '--num_runs=0'], '--num_runs'),
    ([], '--tflite_path'),
])
def test_cli_names_the_bad_argument(arguments, message):
  result = _run_cli(*arguments)
  assert result.returncode != 0
  assert message in result.stderr
