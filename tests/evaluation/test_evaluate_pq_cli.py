"""Tests of `python -m maskconver.tools.evaluate_pq`."""

import json
import pathlib
import subprocess
import sys

_CASE = pathlib.Path(__file__).resolve().parents[1] / 'data' / 'pq_cases' / '02'


def _run(*flags):
  return subprocess.run(
      [sys.executable, '-m', 'maskconver.tools.evaluate_pq', *flags],
      capture_output=True, text=True, timeout=60, check=False)


def _case_flags(pred_folder=_CASE / 'pred'):
  return [f'--gt_json={_CASE / "gt.json"}', f'--gt_folder={_CASE / "gt"}',
          f'--pred_json={_CASE / "pred.json"}', f'--pred_folder={pred_folder}']


def test_prints_table_and_writes_json(tmp_path):
  output_json = tmp_path / 'pq.json'
  completed = _run(*_case_flags(), f'--output_json={output_json}')
  assert completed.returncode == 0, completed.stderr
  # Reference PQ of case 02 (panopticapi): All 27.07, Things 24.89,
  # Stuff 29.25.
  lines = completed.stdout.splitlines()
  assert lines[0].split() == ['|', 'PQ', 'SQ', 'RQ', 'N']
  assert lines[2].split() == ['All', '|', '27.1', '36.8', '34.4', '6']
  assert lines[3].split() == ['Things', '|', '24.9', '44.4', '35.6', '3']
  assert lines[4].split() == ['Stuff', '|', '29.3', '29.3', '33.3', '3']
  result = json.loads(output_json.read_text())
  reference = json.loads((_CASE / 'reference.json').read_text())
  assert abs(result['All']['pq'] - reference['All']['pq']) < 1e-12
  assert result['per_class']['7']['fp'] == 2


def test_bad_paths_are_named_and_fail():
  completed = _run(*_case_flags(pred_folder='/nonexistent/preds'))
  assert completed.returncode != 0
  assert ('--pred_folder=/nonexistent/preds: no such folder'
          in completed.stderr)


def test_inconsistent_files_fail_with_the_file_name():
  # The ground-truth PNGs as predictions: their ids are not in pred.json.
  completed = _run(*_case_flags(pred_folder=_CASE / 'gt'))
  assert completed.returncode != 0
  assert 'gt/000000424242.png vs' in completed.stderr
  assert 'not in its segments_info' in completed.stderr


def test_missing_flag_fails():
  completed = _run(f'--gt_json={_CASE / "gt.json"}')
  assert completed.returncode != 0
  assert '--pred_json' in completed.stderr
