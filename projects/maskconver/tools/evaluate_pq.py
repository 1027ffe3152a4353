r"""Evaluates COCO panoptic predictions with the official PQ rules.

Usage:
  python -m maskconver.tools.evaluate_pq \
    --gt_json=panoptic_val2017.json --gt_folder=panoptic_val2017 \
    --pred_json=results/panoptic.json --pred_folder=results/panoptic \
    [--output_json=pq.json] [--per_class] [--num_workers=N]

Prints PQ, SQ, RQ (x100) and the number of categories for All, Things and
Stuff, as panopticapi does, and optionally writes the full result (fractions,
per-class counts) as JSON. Predictions of images absent from the ground truth
are ignored with a warning naming them, as panopticapi ignores them; any
other inconsistency (a ground-truth image without prediction, a segment in a
PNG but not in its JSON or the reverse, PNGs of different sizes, an unknown
category id) is an error naming the files, image and segment, also when a
worker process found it. Exit status: 0 on success, 1 on an error.

`--num_workers` processes read and score the images (default: one per CPU
core; 1 scores them in this process); the result does not depend on it.
"""

import os
import sys
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags

from maskconver.common import flags as command_flags
from maskconver.data import coco_panoptic_io
from maskconver.evaluation import panoptic_quality

_GT_JSON = flags.DEFINE_string('gt_json', None, 'Ground-truth COCO panoptic '
                               'JSON (with categories).')
_GT_FOLDER = flags.DEFINE_string('gt_folder', None,
                                 'Folder of the ground-truth PNGs.')
_PRED_JSON = flags.DEFINE_string('pred_json', None, 'Predictions in the COCO '
                                 'panoptic results format.')
_PRED_FOLDER = flags.DEFINE_string('pred_folder', None,
                                   'Folder of the predicted PNGs.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Where to write the result as JSON.')
_NUM_WORKERS = flags.DEFINE_integer(
    'num_workers', os.cpu_count() or 1,
    'Processes that read and score the images (1: in this process).',
    lower_bound=1)
_PER_CLASS = flags.DEFINE_boolean('per_class', False,
                                  'Also print PQ, SQ, RQ of every category.')


def format_table(result: Dict[str, Any]) -> str:
  """Formats All / Things / Stuff PQ, SQ, RQ (x100) and N like panopticapi."""
  lines = ['{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}'.format(
      '', 'PQ', 'SQ', 'RQ', 'N'), '-' * 38]
  for group in ('All', 'Things', 'Stuff'):
    stats = result[group]
    lines.append('{:10s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}'.format(
        group, 100 * stats['pq'], 100 * stats['sq'], 100 * stats['rq'],
        stats['n']))
  return '\n'.join(lines)


def format_per_class(result: Dict[str, Any]) -> str:
  """Formats per-category PQ, SQ, RQ (x100) and tp / fp / fn."""
  lines = ['{:>8s} {:24s} {:>5s}  {:>5s}  {:>5s} {:>6s} {:>6s} {:>6s}'.format(
      'id', 'name', 'PQ', 'SQ', 'RQ', 'TP', 'FP', 'FN')]
  for category_id, stats in result['per_class'].items():
    lines.append(
        '{:>8s} {:24.24s} {:5.1f}  {:5.1f}  {:5.1f} {:6d} {:6d} {:6d}'.format(
            category_id, stats['name'], 100 * stats['pq'], 100 * stats['sq'],
            100 * stats['rq'], stats['tp'], stats['fp'], stats['fn']))
  return '\n'.join(lines)


def _check_paths() -> List[str]:
  """Returns one message per missing input or output location."""
  problems = []
  for flag, is_file in ((_GT_JSON, True), (_GT_FOLDER, False),
                        (_PRED_JSON, True), (_PRED_FOLDER, False)):
    exists = os.path.isfile if is_file else os.path.isdir
    if not exists(flag.value):
      kind = 'file' if is_file else 'folder'
      problems.append(f'--{flag.name}={flag.value}: no such {kind}')
  if _OUTPUT_JSON.value:
    parent = os.path.dirname(os.path.abspath(_OUTPUT_JSON.value))
    if not os.path.isdir(parent):
      problems.append(f'--output_json={_OUTPUT_JSON.value}: folder {parent} '
                      'does not exist')
  return problems


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  problems = _check_paths()
  if problems:
    print('\n'.join(f'error: {p}' for p in problems), file=sys.stderr)
    sys.exit(1)
  try:
    result = panoptic_quality.evaluate_coco_panoptic(
        _GT_JSON.value, _GT_FOLDER.value, _PRED_JSON.value, _PRED_FOLDER.value,
        warn=lambda message: print(f'warning: {message}', file=sys.stderr),
        num_workers=_NUM_WORKERS.value)
  except panoptic_quality.PanopticFormatError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(format_table(result))
  if _PER_CLASS.value:
    print()
    print(format_per_class(result))
  if _OUTPUT_JSON.value:
    coco_panoptic_io.write_json(_OUTPUT_JSON.value, result)
    print(f'wrote {_OUTPUT_JSON.value}')


def run() -> None:
  """Console-script entry point (`maskconver-evaluate-pq`)."""
  flags.mark_flags_as_required(['gt_json', 'gt_folder', 'pred_json',
                                'pred_folder'])
  command_flags.run_command(main)


if __name__ == '__main__':
  run()
