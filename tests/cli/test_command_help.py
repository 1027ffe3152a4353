"""Every command of the guide exists, and its --help lists its own flags.

Each console script of the package and its `python -m` module print the same
flags, and every flag the README's code blocks pass to a command is among
them, so the guide cannot drift from the commands.
"""

import concurrent.futures
import functools
import importlib.metadata
import os
import re
import subprocess
import sys
from typing import Dict, List, Set, Tuple

from absl import flags
import pytest

from maskconver.common import flags as command_flags

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
_FLAG_LINE = re.compile(r'^\s+--(?:\[no\])?([A-Za-z_][\w]*):', re.M)
_PASSED_FLAG = re.compile(r'(?<![\w-])--(?:no)?([a-z_][a-z0-9_]*)')
# Flags every absl program takes (not the command's own).
_ABSL_FLAGS = {'help', 'helpfull', 'helpshort', 'helpxml', 'flagfile',
               'undefok'}


def _console_scripts() -> Dict[str, str]:
  """Console script name -> the module it runs, from the installed package."""
  entry_points = importlib.metadata.distribution('maskconver').entry_points
  return {ep.name: ep.value.split(':')[0] for ep in entry_points
          if ep.group == 'console_scripts'}


def _readme_commands() -> List[Tuple[str, Set[str]]]:
  """(module or console script, flags passed) for each README command."""
  with open(os.path.join(_REPO, 'README.md'), encoding='utf-8') as f:
    text = f.read()
  commands = []
  for block in re.findall(r'```[a-z]*\n(.*?)```', text, re.S):
    for line in block.replace('\\\n', ' ').splitlines():
      line = line.split('#')[0] if line.lstrip().startswith('#') else line
      match = (re.search(r'python -m (maskconver[\w.]*)(.*)', line) or
               re.search(r'(?<![\w/-])(maskconver-[a-z-]+)(.*)', line))
      if match:
        commands.append((match.group(1),
                         set(_PASSED_FLAG.findall(match.group(2)))))
  return commands


def _help_flags(argv: List[str]) -> Tuple[int, Set[str], str]:
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  result = subprocess.run([*argv, '--help'], capture_output=True, text=True,
                          timeout=300, check=False, env=env, cwd=_REPO)
  output = result.stdout + result.stderr
  return (result.returncode, set(_FLAG_LINE.findall(output)) - _ABSL_FLAGS,
          output)


@functools.lru_cache(maxsize=None)
def _all_help() -> Dict[Tuple[str, str], Tuple[int, Set[str], str]]:
  """--help of every console script and module, two processes at a time."""
  bin_dir = os.path.dirname(sys.executable)
  runs = {}
  for script, module in _console_scripts().items():
    runs[('script', script)] = [os.path.join(bin_dir, script)]
    runs[('module', module)] = [sys.executable, '-m', module]
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    results = pool.map(_help_flags, runs.values())
    return dict(zip(runs, results))


def test_every_readme_command_is_a_console_script_or_its_module():
  scripts = _console_scripts()
  commands = _readme_commands()
  assert len(commands) >= 8, commands
  for command, _ in commands:
    assert command in scripts or command in scripts.values(), (
        f'README names {command}, which is neither a console script of the '
        f'package nor the module of one: {sorted(scripts)}')


@pytest.mark.parametrize('script', sorted(_console_scripts()))
def test_console_script_and_module_list_the_same_own_flags(script):
  module = _console_scripts()[script]
  code, script_flags, script_output = _all_help()[('script', script)]
  assert code == 0, script_output
  code, module_flags, module_output = _all_help()[('module', module)]
  assert code == 0, module_output
  assert script_flags, f'{script} --help lists no flag:\n{script_output}'
  assert script_flags == module_flags, (script_flags ^ module_flags)
  # TensorFlow's C++ start-up lines stay off by default.
  assert 'cuda' not in script_output.lower(), script_output


def test_readme_flags_are_listed_by_the_command():
  scripts = _console_scripts()
  for command, passed in _readme_commands():
    key = ('script', command) if command in scripts else ('module', command)
    _, listed, output = _all_help()[key]
    missing = passed - listed
    assert not missing, (f'README passes {sorted(missing)} to {command}, '
                         f'whose --help does not list them:\n{output}')


def test_shared_flags_read_the_same_in_every_command():
  """--experiment is the one of common.flags wherever a command takes it."""
  values = flags.FlagValues()
  command_flags.define_experiment_flags(values)
  expected = ' '.join(values['experiment'].help.split())
  takers = 0
  for (kind, name), (_, listed, output) in _all_help().items():
    if kind != 'script' or 'experiment' not in listed:
      continue
    match = re.search(r'^\s+--experiment:(.*?)(?=^\s+--|^Try|\Z)', output,
                      re.M | re.S)
    text = ' '.join(match.group(1).split())
    if name == 'maskconver-train':  # Model Garden's trainer flags.
      continue
    takers += 1
    assert text == expected, (name, text)
  assert takers >= 4
