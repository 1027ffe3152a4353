"""The litert-benchmark grid: parsing, ratios and the command line."""

import json
import os
import stat
import sys

from absl import app
import pytest

from benchmarks import litert_benchmark
from benchmarks import timing

# Stands in for litert-benchmark: writes --result_json with a median that
# the model file holds (its text) times 10 / --num_threads; a model file
# holding "fail" makes it fail like a model whose invoke fails.
_FAKE = """\
import json, sys
args = dict(a[2:].split('=', 1) for a in sys.argv[1:])
text = open(args['model']).read()
if text == 'fail':
  print('ERROR: gather index out of bounds', file=sys.stderr)
  sys.exit(1)
median = float(text) * 10 / int(args['num_threads'])
json.dump({'latency': {'median_ms': median}}, open(args['result_json'], 'w'))
"""


def test_parse_models_keeps_order_and_names_the_flag():
  assert litert_benchmark.parse_models(['a=x.tflite', 'b=y=z.tflite']) == [
      ('a', 'x.tflite'), ('b', 'y=z.tflite')]
  for bad in (['x.tflite'], ['=x'], ['a=x', 'a=y'], []):
    with pytest.raises(app.UsageError, match='--tflite'):
      litert_benchmark.parse_models(bad)


def test_parse_threads_names_the_flag():
  assert timing.parse_threads(['1', '2']) == [1, 2]
  for bad in (['0'], ['two'], []):
    with pytest.raises(app.UsageError, match='--num_threads'):
      timing.parse_threads(bad)


def test_read_median_of_a_result_json():
  assert litert_benchmark.read_median(
      {'latency': {'median_ms': 26.1, 'avg_ms': 27.0}}) == 26.1
  with pytest.raises(ValueError, match='median_ms'):
    litert_benchmark.read_median({'latency': {}})


def test_summarize_pairs_rounds_for_the_ratios():
  summary = litert_benchmark.summarize(
      {'float32': {1: [10.0, 20.0, 12.0]}, 'int8': {1: [5.0, 5.0, 12.0]}},
      'float32')
  assert summary['float32'][1]['ratio'] == 1.0
  cell = summary['int8'][1]
  assert (cell['median_ms'], cell['min_ms'], cell['max_ms']) == (5.0, 5.0,
                                                                 12.0)
  assert cell['ratio'] == 5.0 / 12.0
  assert (cell['ratio_min'], cell['ratio_max']) == (0.25, 1.0)


def test_cpu_info_lists_int8_features(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f '
                     'avx512_vnni\nmodel name\t: other\n')
  info = litert_benchmark.cpu_info(str(cpuinfo))
  assert info['cpu'] == 'AMD EPYC'
  assert info['features'] == ['avx2', 'avx512f', 'avx512_vnni']


def test_cli_runs_every_cell_and_prints_json_last(tmp_path, run_lab):
  fake = tmp_path / 'fake_benchmark'
  fake.write_text(f'#!{sys.executable}\n{_FAKE}')
  fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
  for name, value in (('float', '4'), ('int8', '2'), ('broken', 'fail')):
    (tmp_path / f'{name}.tflite').write_text(value)
  result = run_lab('litert_benchmark', [
      f'--tflite=float32={tmp_path / "float.tflite"}',
      f'--tflite=int8={tmp_path / "int8.tflite"}',
      f'--tflite=fp16={tmp_path / "broken.tflite"}', '--num_threads=1,2',
      '--rounds=2', f'--litert_benchmark={fake}'], timeout=60)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert lines[0].startswith('fake_benchmark --model=')
  report = json.loads(lines[-1])
  assert report['reference'] == 'float32'
  assert report['latency']['float32']['2']['median_ms'] == 20.0
  int8 = report['latency']['int8']['1']
  assert int8['round_medians_ms'] == [20.0, 20.0]
  assert int8['ratio'] == 0.5
  assert report['latency']['fp16'] == {}
  assert report['errors']['fp16']['2'] == (
      'exit 1: ERROR: gather index out of bounds')
  assert any(l.split()[:3] == ['fp16', '1', 'failed:'] for l in lines)


def test_cli_names_a_missing_model(tmp_path, run_lab):
  result = run_lab('litert_benchmark', [
      f'--tflite=float32={tmp_path / "absent.tflite"}'], timeout=60)
  assert result.returncode != 0
  assert '--tflite=float32=' in result.stderr
  assert os.path.basename(str(tmp_path / 'absent.tflite')) in result.stderr
