"""The package's layers: no folder cycle, no import of the lab.

Folders import downwards only: data/ (files and formats) sits below
dataloaders/ (the input pipeline), inference/ below serving/ and tasks/, and
nothing in the package imports the checkout's benchmarks/.
"""

import ast
import os

import pytest

_PACKAGE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'projects', 'maskconver')


def _imports(folder):
  """{path relative to the package: [imported module names]} of `folder`."""
  found = {}
  for root, _, names in os.walk(os.path.join(_PACKAGE, folder)):
    for name in names:
      if not name.endswith('.py'):
        continue
      path = os.path.join(root, name)
      with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
      modules = []
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
          modules.append(node.module)
          # `from maskconver import keys` imports maskconver.keys.
          modules.extend(f'{node.module}.{alias.name}' for alias in node.names)
      found[os.path.relpath(path, _PACKAGE)] = modules
  return found


def test_the_package_never_imports_benchmarks():
  offenders = {path: modules for path, modules in _imports('').items()
               if any(m == 'benchmarks' or m.startswith('benchmarks.')
                      for m in modules)}
  assert not offenders


@pytest.mark.parametrize('upper', ['maskconver.serving', 'maskconver.tasks'])
def test_inference_does_not_import_upper_layers(upper):
  offenders = {path: modules for path, modules in _imports('inference').items()
               if any(m == upper or m.startswith(upper + '.')
                      for m in modules)}
  assert not offenders


def _folder_graph():
  """{folder: folders of the package it imports}, over the package's folders."""
  folders = sorted(name for name in os.listdir(_PACKAGE)
                   if os.path.isfile(os.path.join(_PACKAGE, name, '__init__.py')))
  graph = {}
  for folder in folders:
    imported = set()
    for modules in _imports(folder).values():
      for module in modules:
        parts = module.split('.')
        if len(parts) > 1 and parts[0] == 'maskconver' and parts[1] in folders:
          imported.add(parts[1])
    graph[folder] = imported - {folder}
  return graph


def test_data_does_not_import_dataloaders():
  assert 'dataloaders' not in _folder_graph()['data']
  assert 'data' in _folder_graph()['dataloaders']  # the direction that holds


def test_no_folder_cycle():
  graph = _folder_graph()
  done, active = set(), []

  def visit(folder):
    if folder in active:
      cycle = active[active.index(folder):] + [folder]
      raise AssertionError('import cycle: ' + ' -> '.join(cycle))
    if folder in done:
      return
    active.append(folder)
    for other in sorted(graph[folder]):
      visit(other)
    active.pop()
    done.add(folder)

  for folder in graph:
    visit(folder)
  assert len(done) >= 10
