"""The ablation YAMLs of configs/experiments/ablations/ and their headers.

Each YAML opens with comment lines:

  # Table <n> (<what the table varies>), row: <row>.
  # Paper: <the row's figures in the paper's table>.
  # <notes>
  # Measured (model_stats at HxW): <p>M params on path (<b>M built), <f>B FLOPs.

The Paper line lists, comma-separated and in this order, what the table gives:
`PQ x (things y, stuff z)` or `PQ x` or `PQ stuff x`, `<n>M params`,
`<n>B FLOPs`, `<n> FPS (V100)` (test_paper_figures.py checks them against the
paper's tables). The Measured line is `tools.model_stats`: `params_on_path`,
`params` and `flops`.
  # experiment: <registered base experiment>
"""

import dataclasses
import glob
import os
import re
from typing import List

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
ABLATIONS_DIR = os.path.join(REPO, 'configs', 'experiments', 'ablations')

_TABLE = re.compile(r'^# Table ([2-7]) \((.+)\), row: (.+)\.$')
_MEASURED = re.compile(
    r'^# Measured \(model_stats at (\d+)x(\d+)\): ([\d.]+)M params on path '
    r'\(([\d.]+)M built\), ([\d.]+)B FLOPs\.$')
_EXPERIMENT = re.compile(r'^# experiment: (\w+)$')


@dataclasses.dataclass(frozen=True)
class AblationRow:
  path: str
  name: str
  table: int
  row: str
  is_recipe: bool
  experiment: str
  paper_line: str
  input_size: List[int]
  params_millions: float
  built_params_millions: float
  flops_billions: float


def parse(path: str) -> AblationRow:
  """Reads a YAML's header; AssertionError naming the file when it is off."""
  with open(path) as f:
    header = []
    for line in f:
      if not line.startswith('#'):
        break
      header.append(line.rstrip('\n'))
  name = os.path.basename(path)
  table = _TABLE.match(header[0]) if header else None
  assert table, f'{name}: first line must be "# Table N (...), row: ...."'
  assert header[1].startswith('# Paper: '), f'{name}: second line: # Paper:'
  measured = [m for m in map(_MEASURED.match, header) if m]
  assert len(measured) == 1, f'{name}: needs one "# Measured ..." line'
  experiment = _EXPERIMENT.match(header[-1])
  assert experiment, f'{name}: last header line must be "# experiment: NAME"'
  m = measured[0]
  return AblationRow(
      path=path, name=name[:-len('.yaml')], table=int(table.group(1)),
      row=table.group(3), is_recipe=table.group(3).endswith('(the recipe)'),
      experiment=experiment.group(1), paper_line=header[1],
      input_size=[int(m.group(1)), int(m.group(2))],
      params_millions=float(m.group(3)),
      built_params_millions=float(m.group(4)),
      flops_billions=float(m.group(5)))


def all_rows() -> List[AblationRow]:
  paths = sorted(glob.glob(os.path.join(ABLATIONS_DIR, '*.yaml')))
  assert paths, f'no YAML in {ABLATIONS_DIR}'
  return [parse(p) for p in paths]


def all_paths() -> List[str]:
  return sorted(glob.glob(os.path.join(ABLATIONS_DIR, '*.yaml')))
