"""Runs the input sweep (tests/input_sweep.py) and counts the outcomes per class.

  .venv/bin/python scripts/input_sweep.py [--json FILE] [--only TEXT] [--no-cli] [--default]

One line per case that is not OK (class, id, argument, what happened), then the counts
of OK / SILENT / RAW / HANG / OVER. The gemma4 imported is the first on sys.path, so the
same cases run against another checkout:

  git -C /work/main worktree add /tmp/g4old 13243c6
  PYTHONPATH=/tmp/g4old/src:/work/main .venv/bin/python scripts/input_sweep.py --json old.json
  git -C /work/main worktree remove --force /tmp/g4old

(the cases themselves always come from this repository's tests/input_sweep.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--json', metavar='FILE', help='write every result (id, argument, class, detail)')
  p.add_argument('--only', metavar='TEXT', action='append', default=[],
                 help='run the cases whose id contains TEXT (repeatable)')
  p.add_argument('--no-cli', action='store_true', help='leave out the `gemma4` process cases')
  p.add_argument('--default', action='store_true',
                 help="only the default test's cases (not those marked slow)")
  p.add_argument('--limit', type=float, default=None, help='seconds per case (default 60)')
  p.add_argument('--no-xla-cache', action='store_true',
                 help='compile afresh (default: the persistent cache the tests use)')
  args = p.parse_args(argv)

  if ROOT not in sys.path:
    sys.path.append(ROOT)  # for tests/; after PYTHONPATH, so gemma4 comes from there first
  import jax
  if args.no_xla_cache:
    os.environ['GEMMA4_COMPILE_CACHE'] = 'off'  # gemma4's own default cache too
  else:
    jax.config.update('jax_compilation_cache_dir', os.path.join(os.environ.get(
        'GEMMA4_JAX_CACHE', os.path.expanduser('~/.cache/gemma4/jax-compilation-cache')),
        f'jax-{jax.__version__}'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  import gemma4
  where = os.path.dirname(os.path.abspath(gemma4.__file__))
  print(f'gemma4 from {where} ({_commit(where)})', flush=True)
  from tests import input_sweep as sweep

  cases = [c for c in sweep.CASES
           if (not args.only or any(t in c.id for t in args.only))
           and not (args.no_cli and c.cli) and not (args.default and c.slow)]
  ctx = sweep.Ctx()
  limit = sweep.TIME_LIMIT if args.limit is None else args.limit
  results = []
  t0 = time.perf_counter()
  try:
    for case in cases:
      r = sweep.classify(case, ctx, limit)
      results.append(r)
      if r.cls != 'OK':
        print(f'{r.cls:6}  {r.id}  [{r.arg}]  {r.detail}', flush=True)
  finally:
    shutil.rmtree(ctx.root, ignore_errors=True)
  total = time.perf_counter() - t0

  counts = collections.Counter(r.cls for r in results)
  print()
  print(f'{len(results)} cases in {total:.0f} s, gemma4 from {where}')
  width = max(len(c) for c in sweep.CLASSES)
  for cls in sweep.CLASSES:
    print(f'  {cls:{width}}  {counts.get(cls, 0):4d}')
  by_expect = collections.Counter((r.expect, r.cls) for r in results)
  print('  by expectation: ' + ', '.join(
      f'{e} {c} {n}' for (e, c), n in sorted(by_expect.items())))
  areas = collections.defaultdict(collections.Counter)
  for r in results:
    areas[_area(r.arg)][r.cls] += 1
  print()
  print(f'  {"area":18}' + ''.join(f'{c:>7}' for c in sweep.CLASSES))
  for area, n in areas.items():
    print(f'  {area:18}' + ''.join(f'{n.get(c, 0):7d}' for c in sweep.CLASSES))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'gemma4': where, 'commit': _commit(where), 'seconds': round(total, 1),
                 'counts': {c: counts.get(c, 0) for c in sweep.CLASSES},
                 'results': [r.__dict__ for r in results]}, f, indent=1)
  return 0


def _area(arg: str) -> str:
  """The part of the API an argument belongs to: 'Gemma4Sampler', 'sample', 'sampling',
  'gemma4.audio', 'cli', ..."""
  if arg.startswith('cli'):
    return 'cli'
  for prefix in ('sample.images', 'sample.audio', 'gemma4.audio', 'gemma4.models'):
    if arg.startswith(prefix):
      return prefix.replace('sample.audio', 'sample.audio*')
  return arg.split('.')[0]


def _commit(path: str) -> str:
  try:
    out = subprocess.run(['git', '-C', path, 'rev-parse', '--short', 'HEAD'],
                         capture_output=True, text=True, timeout=10)
    dirty = subprocess.run(['git', '-C', path, 'status', '--porcelain', '--', '.'],
                           capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return 'no git'
  if out.returncode:
    return 'no git'
  return out.stdout.strip() + (' + uncommitted changes' if dirty.stdout.strip() else '')


if __name__ == '__main__':
  sys.exit(main())
