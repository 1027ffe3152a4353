"""Condenses Model Garden's training log into one line per logged step.

Reads the trainer's output on stdin; prints the `train | step ...` and
`eval | step ...` lines with their losses or PQ on one line each, and any
traceback or error in full, so a quickstart shows progress, not log noise.
"""

import re
import sys

_STEP = re.compile(r'^\s*(train|eval) \| step:\s*(\d+)(.*)\| output: ?$')
_KEEP = ('training_loss', 'validation_loss', 'heatmap_loss', 'mask_bce_loss',
         'mask_dice_loss', 'PQ_all', 'PQ_things', 'PQ_stuff')


def _summary(block: str) -> str:
  """Picks the losses and PQ out of the dict printed after a step line."""
  values = []
  for key in _KEEP:
    match = re.search(r"'%s': (?:np\.float\d+\()?([-+0-9.eE]+|nan|inf)" % key,
                      block)
    if match:
      values.append(f'{key} {float(match.group(1)):.4g}')
  return '  '.join(values)


def main() -> int:
  lines = iter(sys.stdin)
  in_traceback = False
  for line in lines:
    line = line.rstrip('\n')
    match = _STEP.match(line)
    if match:
      block = []
      for follow in lines:
        block.append(follow.rstrip('\n'))
        if follow.rstrip().endswith('}'):
          break
      kind, step, rate = match.groups()
      rate = rate.strip(' |')
      print(f'{kind:5s} step {int(step):6d}  {rate}  {_summary(" ".join(block))}',
            flush=True)
      continue
    if line.startswith('Traceback') or in_traceback:
      in_traceback = True
      print(line, flush=True)
    elif re.search(r'\b(Error|error:|FATAL)\b', line):
      print(line, flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
