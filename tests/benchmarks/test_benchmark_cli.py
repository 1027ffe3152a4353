"""The latency benchmark: helpers with hand numbers, and the command line."""

import json

from absl import app
import pytest

from benchmarks import benchmark
from benchmarks import timing


def _latency(median):
  return {part: {'median_ms': median * scale, 'min_ms': 1.0, 'max_ms': 9.0}
          for part, scale in zip(benchmark.PARTS, (1.0, 0.5, 1.5))}


def test_latency_ratios_divide_medians():
  latency = {'tflite_int8': _latency(4.0), 'tflite_float32': _latency(8.0),
             'keras': {'error': 'boom'}}
  ratios = benchmark.latency_ratios(latency, 'tflite_int8', 'tflite_float32')
  assert ratios == {'network': 0.5, 'postprocess': 0.5, 'total': 0.5}
  assert benchmark.latency_ratios(latency, 'keras', 'tflite_float32') is None
  assert benchmark.latency_ratios(latency, 'tflite_fp16',
                                  'tflite_float32') is None


def test_table_lists_every_format():
  result = {'experiment': 'x', 'input_size': [64, 32],
            'machine': {'cpu': 'cpu', 'cpu_count': 2, 'num_threads': 1},
            'params': 2_500_000, 'flops': 1_500_000_000,
            'latency': {'keras': _latency(10.0),
                        'tflite_int8': {'error': 'no kernel'}},
            'int8_float_ratio': None}
  table = benchmark.format_table(result)
  assert 'input size   64x32' in table
  assert 'params       2.50 M' in table
  assert 'FLOPs        1.50 B' in table
  keras_row = next(l for l in table.splitlines() if l.startswith('keras'))
  assert keras_row.split()[1:4] == ['10.0', '/', '1.0']
  int8_row = next(l for l in table.splitlines()
                  if l.startswith('tflite_int8'))
  assert int8_row.split()[1:] == ['failed:', 'no', 'kernel']


def test_cli_prints_json_last(serving, tiny_module, run_lab):
  result = run_lab('benchmark', [
      f'--experiment={serving.experiment}',
      f'--params_override={serving.override_flag}', '--formats=keras',
      '--num_runs=2', '--warmup=1'])
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  report = json.loads(lines[-1])
  assert report['input_size'] == [64, 64]
  assert report['params'] == tiny_module.model.count_params()
  assert report['flops'] > 0
  assert report['machine']['num_threads'] == [1]
  assert report['machine']['tflite_kernels'] == ['xnnpack']
  assert list(report['latency']) == ['keras']
  for part in benchmark.PARTS:
    stats = report['latency']['keras'][part]
    assert 0 < stats['min_ms'] <= stats['median_ms'] <= stats['max_ms']
  assert report['int8_float_ratio'] is None
  assert any(l.startswith('keras') for l in lines[:-1])


def test_ratios_and_rows_of_several_kernels_and_threads():
  assert benchmark.row_name('tflite_int8', 'builtin', 2, False) == (
      'tflite_int8:builtin:2t')
  assert benchmark.row_name('tflite_int8', 'builtin', 2, True) == (
      'tflite_int8')
  assert timing.parse_threads(['1', '2']) == [1, 2]
  with pytest.raises(app.UsageError, match='--num_threads'):
    timing.parse_threads(['0'])
  assert benchmark.parse_kernels(['xnnpack', 'builtin']) == ['xnnpack',
                                                             'builtin']
  with pytest.raises(app.UsageError, match=r"--tflite_kernels: .*\['gpu'\]"):
    benchmark.parse_kernels(['gpu'])


def test_bad_formats_are_named():
  assert benchmark.parse_formats(['keras', 'tflite_int8']) == [
      'keras', 'tflite_int8']
  with pytest.raises(app.UsageError,
                     match=r"--formats: unknown format\(s\) \['onnx'\]"):
    benchmark.parse_formats(['keras', 'onnx'])


@pytest.mark.slow
def test_cli_all_formats(serving, tmp_path, run_lab):
  result = run_lab('benchmark', [
      f'--experiment={serving.experiment}',
      f'--params_override={serving.override_flag}', '--num_runs=2',
      '--warmup=1', f'--work_dir={tmp_path}'])
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert list(report['latency']) == list(benchmark.FORMATS)
  for name, parts in report['latency'].items():
    assert 'error' not in parts, (name, parts)
  assert set(report['int8_float_ratio']) == set(benchmark.PARTS)
  assert (tmp_path / 'tflite_int8_total.tflite').exists()
  # The float32 row is its own reference.
  assert report['ratio_to_tflite_float32']['tflite_float32'] == {
      part: 1.0 for part in benchmark.PARTS}


@pytest.mark.slow
def test_cli_kernels_and_threads(serving, tmp_path, run_lab):
  result = run_lab('benchmark', [
      f'--experiment={serving.experiment}',
      f'--params_override={serving.override_flag}', '--num_runs=2',
      '--warmup=1', '--formats=saved_model,tflite_float32,tflite_int8',
      '--num_threads=1,2', '--tflite_kernels=xnnpack,builtin'])
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout.strip().splitlines()[-1])
  rows = [f'{f}:{k}:{t}t' for f in ('tflite_float32', 'tflite_int8')
          for k in ('xnnpack', 'builtin') for t in (1, 2)]
  assert list(report['latency']) == ['saved_model'] + rows
  ratios = report['ratio_to_tflite_float32']
  assert set(ratios) == set(report['latency'])
  for row in rows[:4]:
    assert ratios[row]['total'] == 1.0
  for row, share in report['merge_share'].items():
    assert 0.0 < share < 1.5, row
