"""Every ablation YAML's `# Paper:` line states its row of the paper's tables.

The paper's tables as numbers are `paper_tables.md` beside this file (a copy
of the shared `paper/TABLES.md`). Both sides are parsed: the markdown tables
into rows of cells, each YAML's header line into its figures; the map from
YAML to table row is written out below, not derived from the file names.
No model is built.
"""

import os
import re
from typing import Dict, List

import pytest

import ablation_rows

TABLES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'paper_tables.md')
SHARED_TABLES_PATH = '/work/shared/paper/TABLES.md'

# YAML -> (table, index of the row among the table's data rows).
ROW_OF_YAML = {
    'table2_fpn': (2, 0),
    'table2_bifpn': (2, 1),
    'table2_unet_n3-9-3_d768-384-192': (2, 2),
    'table2_unet_n11-1-1_d512-384-384': (2, 3),
    'table2_unet_n18-1-1_d384_no_se': (2, 4),
    'table2_unet_n18-1-1_d384_se': (2, 5),
    'table3_conv3x3_heads': (3, 0),
    'table3_light_heads': (3, 1),
    'table4_r50_no_class_embedding': (4, 0),
    'table4_r50_class_embedding': (4, 1),
    'table4_mnmh_no_class_embedding': (4, 2),
    'table4_mnmh_class_embedding': (4, 3),
    'table5_box_centers': (5, 0),
    'table5_mask_centers': (5, 1),
    'table6_150k_jitter_0.1-1.9': (6, 0),
    'table6_270k_jitter_0.1-1.9': (6, 1),
    'table6_270k_jitter_0.05-2.9': (6, 2),
    'table6_270k_jitter_0.05-2.9_copy_paste': (6, 3),
    'table7_stuff_centers': (7, 0),
    'table7_stuff_regions': (7, 1),
}

# Column header in TABLES.md -> key of a figure.
_COLUMNS = {'PQ': 'pq', 'PQ th': 'pq_things', 'PQ st': 'pq_stuff',
            'params': 'params', 'FLOPs': 'flops', 'FPS (V100)': 'fps'}


def parse_tables(text: str) -> Dict[int, List[Dict[str, str]]]:
  """{table number: [{column header: cell}, ...]} of TABLES.md's tables."""
  tables = {}
  table = None
  lines = text.splitlines()
  for i, line in enumerate(lines):
    heading = re.match(r'^## Table (\d+):', line)
    if heading:
      table = int(heading.group(1))
      continue
    if table is None or table in tables or not line.startswith('|'):
      continue
    # The first '|' line after the heading is the header, then '| --- |'.
    header = [c.strip() for c in line.strip().strip('|').split('|')]
    rows = []
    for body in lines[i + 2:]:
      if not body.startswith('|'):
        break
      cells = [c.strip() for c in body.strip().strip('|').split('|')]
      rows.append(dict(zip(header, cells)))
    tables[table] = rows
  return tables


def figures_of_table_row(row: Dict[str, str]) -> Dict[str, float]:
  """{'pq': 53.6, 'params': 57.0 (millions), 'flops': 171.0 (billions)...}."""
  out = {}
  for column, key in _COLUMNS.items():
    cell = row.get(column, '')
    if cell in ('', '-'):
      continue
    out[key] = float(cell.rstrip('MB'))
  return out


_PQ = re.compile(r'^PQ ([\d.]+)(?: \(things ([\d.]+), stuff ([\d.]+)\))?$')
_PQ_STUFF = re.compile(r'^PQ stuff ([\d.]+)$')
_PARAMS = re.compile(r'^([\d.]+)M params$')
_FLOPS = re.compile(r'^([\d.]+)B FLOPs$')
_FPS = re.compile(r'^([\d.]+) FPS \(V100\)$')


def figures_of_header(line: str) -> Dict[str, float]:
  """Figures of '# Paper: PQ 53.6 (things 58.9, stuff 45.6), 57M params, ...'.

  Raises:
    ValueError: naming the part that is not one of the known forms.
  """
  match = re.match(r'^# Paper: (.+)\.$', line)
  if not match:
    raise ValueError(f'not "# Paper: <figures>.": {line!r}')
  out = {}
  for part in re.split(r', (?![^()]*\))', match.group(1)):
    if m := _PQ.match(part):
      out['pq'] = float(m.group(1))
      if m.group(2):
        out['pq_things'], out['pq_stuff'] = float(m.group(2)), float(
            m.group(3))
    elif m := _PQ_STUFF.match(part):
      out['pq_stuff'] = float(m.group(1))
    elif m := _PARAMS.match(part):
      out['params'] = float(m.group(1))
    elif m := _FLOPS.match(part):
      out['flops'] = float(m.group(1))
    elif m := _FPS.match(part):
      out['fps'] = float(m.group(1))
    else:
      raise ValueError(f'unknown figure {part!r} in {line!r}')
  return out


@pytest.fixture(scope='module')
def tables():
  with open(TABLES_PATH) as f:
    return parse_tables(f.read())


def test_the_copy_of_the_tables_is_the_shared_one():
  if not os.path.exists(SHARED_TABLES_PATH):
    pytest.skip(f'{SHARED_TABLES_PATH} not on this machine')
  with open(TABLES_PATH) as a, open(SHARED_TABLES_PATH) as b:
    assert a.read() == b.read()


def test_parsers_read_known_rows(tables):
  # Hand-read from the paper's Tables 2 and 7.
  assert figures_of_table_row(tables[2][5]) == {'pq': 50.8, 'params': 57.0,
                                                'flops': 171.0}
  assert figures_of_table_row(tables[7][1]) == {'pq_stuff': 45.8, 'fps': 15.4}
  assert [len(tables[n]) for n in range(1, 8)] == [8, 6, 2, 4, 2, 4, 2]
  assert figures_of_header(
      '# Paper: PQ 52.1 (things 57.2, stuff 44.1), 57M params, 171B FLOPs.'
  ) == {'pq': 52.1, 'pq_things': 57.2, 'pq_stuff': 44.1, 'params': 57.0,
        'flops': 171.0}
  with pytest.raises(ValueError, match='unknown figure'):
    figures_of_header('# Paper: PQ not available here.')


def test_every_yaml_is_mapped_to_one_row():
  names = sorted(row.name for row in ablation_rows.all_rows())
  assert names == sorted(ROW_OF_YAML)
  assert len(set(ROW_OF_YAML.values())) == len(ROW_OF_YAML)


@pytest.mark.parametrize('name', sorted(ROW_OF_YAML))
def test_header_paper_figures_are_the_tables_row(name, tables):
  table, index = ROW_OF_YAML[name]
  row = ablation_rows.parse(
      os.path.join(ablation_rows.ABLATIONS_DIR, f'{name}.yaml'))
  assert row.table == table
  expected = figures_of_table_row(tables[table][index])
  assert expected, (name, tables[table][index])
  assert figures_of_header(row.paper_line) == expected
