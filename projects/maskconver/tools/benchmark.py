"""Moved: run `python -m benchmarks.benchmark` from the repository root."""

from maskconver.tools import _moved

if __name__ == '__main__':
  _moved.exit_moved('maskconver.tools.benchmark', 'benchmarks.benchmark')
