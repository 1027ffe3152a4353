"""The commands that moved to benchmarks/ name their new command and exit 2."""

import runpy

import pytest


@pytest.mark.parametrize('name', ['benchmark', 'tflite_op_profile',
                                  'tflite_stage_profile'])
def test_old_command_names_the_new_one(name, capsys):
  with pytest.raises(SystemExit) as exited:
    runpy.run_module(f'maskconver.tools.{name}', run_name='__main__')
  assert exited.value.code == 2
  captured = capsys.readouterr()
  assert captured.out == ''
  assert captured.err == (
      f"maskconver.tools.{name} moved to the checkout's lab: run "
      f'`python -m benchmarks.{name}` from the repository root\n')
