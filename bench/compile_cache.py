"""What gemma4's persistent compilation cache (gemma4.compilation) changes on the real
Gemma 3 270M (int8, the default): the time to the first streamed piece of a process and
decode tokens/s, in fresh processes, alternating three ways round after round:
  off    GEMMA4_COMPILE_CACHE=off (every process compiles)
  new    an empty cache folder (this process compiles and writes it)
  read   a cache folder an earlier process wrote (this process reads its programs)
first piece: seconds from the stream() call to its first piece (load excluded), and of
those the seconds JAX reported tracing, lowering and compiling (or reading from the
cache) programs (jax.monitoring duration events);
decode: 64 tokens / (t(65 new) - t(1 new)), warm, median of 5 in the process.
With --before REV, the code of git revision REV (checked out in a temporary worktree,
its src/ first on the children's PYTHONPATH) runs the same three ways in the same
rounds, alternating with this tree's, each with its own cache folders.
Not a test: `.venv/bin/python bench/compile_cache.py [--rounds 3] [--before REV]`;
output kept in bench/compile_cache.txt.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = r'''
import collections, json, time, jax, gemma4
stages = collections.Counter()
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **_: stages.update({event.rsplit('/', 1)[-1]: secs}))
ck = gemma4.load_default(progress=False)
s = gemma4.Gemma4Sampler(model=ck.model, params=ck.params, tokenizer=ck.tokenizer,
                         cache_length=4096, max_out_length=65, sampling=gemma4.sampling.Greedy())
P = 'The three most important inventions of the twentieth century are'
t = time.perf_counter()
stages.clear()
it = s.stream(P, max_new_tokens=65)
next(it)
first = time.perf_counter() - t
spent = {k: stages[f'{k}_duration'] for k in ('jaxpr_trace', 'jaxpr_to_mlir_module', 'backend_compile')}
list(it)
rates = []
for _ in range(5):
  t = time.perf_counter(); s.sample(P, max_new_tokens=1); a = time.perf_counter() - t
  t = time.perf_counter(); s.sample(P, max_new_tokens=65); b = time.perf_counter() - t
  rates.append(64 / (b - a))
print(json.dumps({'first_s': first, 'decode_tps': sorted(rates)[2], 'trace_s': spent['jaxpr_trace'],
                  'lower_s': spent['jaxpr_to_mlir_module'], 'backend_s': spent['backend_compile']}))
'''


def _cpu() -> str:
  with open('/proc/cpuinfo') as f:
    return next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                'unknown processor')


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--before', help='a git revision to run beside this tree')
  args = ap.parse_args()
  import jax
  here = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
  trees = {'': os.path.join(here, 'src')}
  if args.before:
    tree = tempfile.mkdtemp(prefix='gemma4-before-')
    subprocess.run(['git', '-C', here, 'worktree', 'add', '--detach', tree, args.before],
                   check=True, capture_output=True)
    rev = subprocess.run(['git', '-C', tree, 'rev-parse', '--short', 'HEAD'], check=True,
                         capture_output=True, text=True).stdout.strip()
    trees = {f'{rev} (before), ': os.path.join(tree, 'src'), 'this tree, ': trees['']}
  out = {f'{t}{k}': [] for t in trees for k in ('off', 'new', 'read')}

  def run(src, cache):
    env = dict(os.environ, GEMMA4_COMPILE_CACHE=cache, PYTHONPATH=src)
    done = subprocess.run([sys.executable, '-c', _CHILD], capture_output=True, text=True,
                          check=True, timeout=600, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])

  try:
    written = {t: tempfile.mkdtemp(prefix='gemma4-cc-read-') for t in trees}
    for t, src in trees.items():
      run(src, written[t])  # the earlier process that writes the folder 'read' uses
    for _ in range(args.rounds):
      for t, src in trees.items():
        out[f'{t}off'].append(run(src, 'off'))
        out[f'{t}new'].append(run(src, tempfile.mkdtemp(prefix='gemma4-cc-new-')))
        out[f'{t}read'].append(run(src, written[t]))
  finally:
    if args.before:
      subprocess.run(['git', '-C', here, 'worktree', 'remove', '--force', tree], check=False)
  print(f'jax {jax.__version__}, {_cpu()}, {os.cpu_count()} cores; {args.rounds} rounds, '
        'fresh process each, alternating; median (min-max) over rounds\n')
  print('| cache | first piece s | tracing s | lowering s | compiling or reading s | decode tok/s |')
  print('|---|---|---|---|---|---|')
  for k, rows in out.items():
    cells = []
    for key, fmt in (('first_s', '{:.2f}'), ('trace_s', '{:.2f}'), ('lower_s', '{:.2f}'),
                     ('backend_s', '{:.2f}'), ('decode_tps', '{:.1f}')):
      v = [r[key] for r in rows]
      cells.append(f'{fmt.format(statistics.median(v))} ({fmt.format(min(v))}-{fmt.format(max(v))})')
    print(f'| {k} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
