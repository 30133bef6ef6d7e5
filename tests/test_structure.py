"""The house in order: no import circle among gemma4's modules (imports inside functions
counted too), and no module reaching into another's private names."""

import ast
import os

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src')


def _modules() -> dict[str, str]:
  out = {}
  for folder, _, files in os.walk(os.path.join(SRC, 'gemma4')):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(folder, f)
        name = os.path.relpath(path, SRC)[:-3].replace(os.sep, '.')
        out[name.removesuffix('.__init__')] = path
  return out


def _imports(mods: dict[str, str]) -> dict[str, set[tuple[str, str]]]:
  """module -> {(imported module, imported name or '')} over every import statement."""
  out = {}
  for name, path in mods.items():
    pkg = name if path.endswith('__init__.py') else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Import):
        found |= {(a.name, '') for a in node.names if a.name in mods}
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:
          parts = pkg.split('.')[:len(pkg.split('.')) - node.level + 1]
          base = '.'.join(parts + ([base] if base else []))
        for a in node.names:
          if f'{base}.{a.name}' in mods:
            found.add((f'{base}.{a.name}', ''))
          elif base in mods:
            found.add((base, a.name))
    out[name] = found
  return out


def test_no_import_circle():
  mods = _modules()
  edges = {m: {t for t, _ in targets if t not in (m, 'gemma4')}
           for m, targets in _imports(mods).items()}
  circles, state, stack = [], {}, []
  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for t in sorted(edges[m]):
      if state.get(t) == 'open':
        circles.append(' -> '.join(stack[stack.index(t):] + [t]))
      elif t not in state:
        visit(t)
    stack.pop()
    state[m] = 'done'
  for m in sorted(edges):
    if m not in state:
      visit(m)
  assert circles == []


def test_no_private_names_imported_across_modules():
  bad = [f'{m} imports {name} from {t}' for m, targets in _imports(_modules()).items()
         for t, name in targets if name.startswith('_') and not name.startswith('__')]
  assert bad == []
