"""Fixtures of the lab's tests (`benchmarks/`).

* `serving`, `tiny_params`, `test_image`, `tiny_module`: the tiny MaskConver
  of the export tests and their helpers (tests/serving/conftest.py).
* `run_lab(module, args)`: `python -m benchmarks.<module> args` run from the
  checkout root, a finished subprocess.
"""

import os
import subprocess
import sys
from typing import Callable, List

import pytest

# pylint: disable=unused-import
from tests.serving.conftest import serving
from tests.serving.conftest import test_image
from tests.serving.conftest import tiny_module
from tests.serving.conftest import tiny_params
# pylint: enable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope='session')
def run_lab() -> Callable[[str, List[str]], subprocess.CompletedProcess]:
  def run(module: str, args: List[str],
          timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', f'benchmarks.{module}', *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  return run
