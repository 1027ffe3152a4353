"""`python -m maskconver.tools.scale_report` on the synthetic recipe."""

import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)


def test_scale_report_prints_the_table_and_json():
  result = subprocess.run(
      [sys.executable, '-m', 'maskconver.tools.scale_report',
       '--experiment=maskconver_synthetic', '--global_batch_size=32',
       '--config_file=tests/training/tiny_maskconver.yaml',
       '--num_examples=2', '--steps_per_second=1,3', '--source_size=96',
       '--compile_batch_size=2',
       '--params_override=task.train_data.parser.source_padded_size=[96,96]'],
      capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  # The tiny test model with the resize on the device: the 96x96 padded
  # uint8 source; labels at the 64x64 input: 16x16 uint8 slot map + 8x8
  # uint8 ignore counts + 16 slots x 20 B + 4 B (hand count, K = 16).
  assert report['bytes_per_example'] == {
      'image': 96 * 96 * 3, 'labels': 256 + 64 + 16 * 20 + 4,
      'total': 96 * 96 * 3 + 644}
  assert report['bytes_per_step'] == 32 * (96 * 96 * 3 + 644)
  cpu_ms = report['host_cpu_ms_per_example']
  assert cpu_ms > 0
  # Cores = steps/s x batch x CPU seconds per example; the report rounds
  # the ms to 0.1 and the cores to 0.1, each from the unrounded time.
  assert abs(report['host_cores_needed']['3.0'] - 3 * 32 * cpu_ms / 1e3) <= (
      0.05 + 3 * 32 * 0.05 / 1e3 + 1e-9)
  assert report['train_flops_per_example'] == (
      3 * report['forward_flops_per_example'])
  # The compiled step resizes the padded sources on the device.
  assert report['xla_compile_s'] > 0
  assert report['compile_batch_size'] == 2
  assert 'wire bytes / example' in result.stdout


def test_scale_report_names_a_bad_flag():
  result = subprocess.run(
      [sys.executable, '-m', 'maskconver.tools.scale_report',
       '--experiment=no_such_recipe', '--skip_compile'],
      capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
  assert result.returncode != 0
  assert '--experiment=no_such_recipe' in result.stderr
