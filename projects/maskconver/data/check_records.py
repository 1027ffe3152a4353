"""The record checker's old command name; it lives in `maskconver.dataloaders`.

Run `python -m maskconver.dataloaders.check_records` (console script
`maskconver-check-records`), with the same flags.
"""

import sys

if __name__ == '__main__':
  print('maskconver.data.check_records moved: run `python -m '
        'maskconver.dataloaders.check_records` (or maskconver-check-records) '
        'with the same flags', file=sys.stderr)
  sys.exit(2)
