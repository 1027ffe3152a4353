"""The package never imports the lab, and inference stays below serving."""

import ast
import os

import pytest

_PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'projects', 'maskconver')


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
