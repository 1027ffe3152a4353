"""Commands that moved out of the package into the checkout's `benchmarks/`."""

import sys
from typing import NoReturn


def exit_moved(old_module: str, new_module: str) -> NoReturn:
  """Names the new command on one stderr line and exits with status 2.

  Args:
    old_module: the module the command was run as, e.g.
      'maskconver.tools.benchmark'.
    new_module: the module to run now, e.g. 'benchmarks.benchmark'.
  """
  print(f"{old_module} moved to the checkout's lab: run `python -m "
        f'{new_module}` from the repository root', file=sys.stderr)
  sys.exit(2)
