"""Every ablation YAML states its row and loads as the switch it names."""

import os

import pytest

from official.core import exp_factory

from maskconver import experiment_loading

import ablation_rows

_PATHS = ablation_rows.all_paths()
_IDS = [os.path.basename(p)[:-len('.yaml')] for p in _PATHS]


def _leaves(tree, prefix=''):
  """{'a.b.c': value} of a nested dict."""
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_leaves(value, f'{prefix}{key}.'))
    return out
  return {prefix[:-1]: tree}


def _diff(a, b):
  a, b = _leaves(a), _leaves(b)
  return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


@pytest.mark.parametrize('path', _PATHS, ids=_IDS)
def test_header_names_table_row_paper_and_a_registered_experiment(path):
  row = ablation_rows.parse(path)
  exp_factory.get_exp_config(row.experiment)  # registered (else LookupError)
  assert row.params_millions > 0 and row.flops_billions > 0
  assert row.name.startswith(f'table{row.table}_')


@pytest.mark.parametrize('path', _PATHS, ids=_IDS)
def test_yaml_loads_and_changes_the_recipe_only_where_the_row_says(path):
  row = ablation_rows.parse(path)
  base = experiment_loading.load_experiment(row.experiment).as_dict()
  params = experiment_loading.load_experiment(row.experiment, [path])
  changed = _diff(base, params.as_dict())
  if row.is_recipe:
    # A recipe row restates the recipe: nothing changes.
    assert not changed, changed
    return
  assert changed
  # What each table varies, and nothing else.
  allowed = {
      2: ('task.model.decoder.',),
      3: ('task.model.center_head.', 'task.model.mask_head.'),
      4: ('task.model.use_class_embedding',),
      5: ('task.train_data.parser.center_type',
          'task.validation_data.parser.center_type'),
      6: ('task.train_data.parser.aug_scale_',
          'task.train_data.parser.copy_paste_prob', 'trainer.train_steps',
          'trainer.optimizer_config.learning_rate.cosine.decay_steps'),
      7: ('task.model.stuff_representation',),
  }[row.table]
  outside = [k for k in changed if not k.startswith(allowed)]
  assert not outside, outside


def test_rows_of_a_table_differ_from_each_other():
  seen = {}
  for row in ablation_rows.all_rows():
    params = experiment_loading.load_experiment(row.experiment, [row.path])
    key = (row.table, repr(params.as_dict()))
    assert key not in seen, (row.name, seen.get(key))
    seen[key] = row.name


def test_ablations_doc_lists_every_row():
  with open(os.path.join(ablation_rows.REPO, 'docs', 'ablations.md')) as f:
    doc = f.read()
  missing = [name for name in _IDS
             if f'ablations/{name}.yaml' not in doc]
  assert not missing, missing
