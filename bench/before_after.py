"""One change, end to end: gemma4 at git revision BEFORE against AFTER (default: this
tree), each in a temporary worktree, its src/ first on the child's PYTHONPATH.

Each run is bench/speed.py's gemma4 child (the same figures, the same method: a fresh
process with an empty compilation cache of its own, greedy), the two codes alternating
round after round; medians (min-max) over the rounds. Models: the real Gemma 3 270M
int8 (`270m`) or speed.py's E2B-shaped model (`e2b`: E2B width, 10 layers, random
weights, int8). The greedy texts of both codes are printed, to be compared.

Not a test: `.venv/bin/python bench/before_after.py --before REV [--after REV]
[--model 270m|e2b] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import speed  # noqa: E402  (bench/speed.py: the child and its arguments)

KEYS = [('first_call_s', 'first call s', 2), ('fixed_s', 'fixed s', 3),
        ('prefill1000_tps', 'prefill ~1000 tok/s', 1), ('decode_tps', 'decode tok/s', 1),
        ('decode_b8_tps', 'decode batch 8 tok/s', 1), ('stream_tps', 'stream() tok/s', 1),
        ('peak_mib', 'peak RSS MiB', 0)]


def _worktree(rev: str) -> tuple[str, str]:
  short = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', rev], check=True,
                         capture_output=True, text=True).stdout.strip()
  tree = tempfile.mkdtemp(prefix=f'gemma4-{short}-')
  subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', tree, rev], check=True,
                 capture_output=True)
  return short, tree


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--before', required=True)
  ap.add_argument('--after', help='a git revision (default: this tree as it is)')
  ap.add_argument('--model', choices=('270m', 'e2b'), default='270m')
  ap.add_argument('--rounds', type=int, default=3)
  args = ap.parse_args()
  common = dict(short=speed.SHORT, sentence=speed.SENTENCE, new=speed.NEW)
  if args.model == '270m':
    cargs = dict(common, model='270m', format='int8')
  else:  # as speed.py runs it
    cargs = dict(common, model='e2b', layers=10, new=32, cache=1088, forbidden=[1, 106, 50],
                 format='int8')
  trees, made = {}, []
  try:
    for label, rev in (('before', args.before), ('after', args.after)):
      if rev is None:
        trees[f'this tree ({label})'] = ROOT
        continue
      short, tree = _worktree(rev)
      made.append(tree)
      trees[f'{short} ({label})'] = tree
    rows = {name: [] for name in trees}
    for rnd in range(args.rounds):
      for name, tree in trees.items():
        env = dict(os.environ, PYTHONPATH=os.path.join(tree, 'src'))
        r = speed._child(sys.executable, speed._GEMMA4, cargs, env)
        if 'error' in r:
          raise SystemExit(f'{name}: {r["error"]}')
        rows[name].append(r)
        print(f'round {rnd + 1}/{args.rounds} {name}: decode {r["decode_tps"]:.1f} tok/s',
              file=sys.stderr, flush=True)
  finally:
    for tree in made:
      subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force', tree], check=False)
  print(f'{args.model}, int8; {args.rounds} rounds, fresh processes alternating; '
        'median (min-max)\n')
  print('| code | ' + ' | '.join(label for _, label, _ in KEYS) + ' |')
  print('|---|' + '---|' * len(KEYS))
  for name, rs in rows.items():
    cells = []
    for key, _, digits in KEYS:
      v = [r[key] for r in rs]
      cells.append(f'{statistics.median(v):.{digits}f} ({min(v):.{digits}f}-{max(v):.{digits}f})')
    print(f'| {name} | ' + ' | '.join(cells) + ' |')
  (a, ra), (b, rb) = rows.items()
  print(f'\n{b} / {a}: ' + ', '.join(
      f'{label} {statistics.median(r[key] for r in rb) / statistics.median(r[key] for r in ra):.2f}x'
      for key, label, _ in KEYS))
  for name, rs in rows.items():
    texts = sorted({r['text'] for r in rs})
    print(f'{name} greedy text{"s" if len(texts) > 1 else ""}: ' + ' | '.join(repr(t[:80]) for t in texts))


if __name__ == '__main__':
  main()
