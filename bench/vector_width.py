"""XLA CPU's vector width for the loops it writes itself: 256 bits (its default on a
processor with AVX-512) against 512 (`xla_cpu_prefer_vector_width`, in
gemma4.compilation.OPTIONS).

1. The one-row products of decode, `x @ w.astype(f32).T * scale` with an int8 weight
   [out, in] (gemma4.quant's form), at the shapes of the 270M and E2B layers and the
   262144 x 640 LM head: compiled with quant.COMPILER_OPTIONS alone and with
   compilation.OPTIONS, the two alternating, median of 20 warm calls per round, median
   (min-max) over the rounds.
2. With --before REV: the real Gemma 3 270M, int8, through Gemma4Sampler, greedy, in
   fresh processes, the code of git revision REV (a temporary worktree, its src/ first
   on the child's PYTHONPATH) and this tree alternating: decode tokens/s at batch 1 and
   8 ((t(65 new) - t(1 new)) / 64, warm) and prefill of ~1000 tokens; each child prints
   its text, which must match.

Not a test: `.venv/bin/python bench/vector_width.py [--rounds 3] [--before REV]`;
output kept in bench/vector_width.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

_CHILD = r'''
import json, sys, time
import gemma4
SHORT = 'The three most important inventions of the twentieth century are'
SENTENCE = ('The history of science is the study of the development of science and scientific '
            'knowledge, including both the natural and social sciences. ')
model, params, tok = gemma4.load_default(progress=False, quantize='int8')
s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                         sampling=gemma4.sampling.Greedy(), cache_length=4096,
                         max_out_length=65, pad_length=(16, 128, 1024))
run = lambda p, n: s.sample(p, max_new_tokens=n)
def timed(p, n):
  t = time.perf_counter(); out = run(p, n); return time.perf_counter() - t, out
def decode(p, rows):
  run(p, 1); run(p, 65)
  t1 = min(timed(p, 1)[0] for _ in range(3))
  tn, out = timed(p, 65)
  return rows * 64 / (tn - t1), out
res = {}
res['decode_b1_tps'], text = decode(SHORT, 1)
res['decode_b8_tps'], _ = decode([SHORT] * 8, 8)
long = SENTENCE * 40
n = len(tok.encode(long, add_bos=True))
run(long, 1)
res['prefill1000_tps'] = n / min(timed(long, 1)[0] for _ in range(2))
res['n_prefill'] = n
res['text'] = text
print(json.dumps(res))
'''


def micro(rounds: int) -> list[str]:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from gemma4 import compilation, quant

  def form(x, w, s):
    return jnp.dot(x, w.astype(jnp.float32).T) * s

  def ms(f, *a, n=20):
    jax.block_until_ready(f(*a))
    ts = []
    for _ in range(n):
      t = time.perf_counter()
      jax.block_until_ready(f(*a))
      ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3

  rng = np.random.default_rng(0)
  shapes = [(1024, 640), (640, 1024), (2048, 640), (640, 2048),  # the 270M's layers
            (2048, 1536), (6144, 1536), (1536, 2048),  # E2B's (its down, 6144 wide: 3 x 2048)
            (262144, 640)]  # the LM head
  opts = {'256 (quant.COMPILER_OPTIONS)': quant.COMPILER_OPTIONS,
          '512 (compilation.OPTIONS)': compilation.OPTIONS}
  lines = [f'JAX {jax.__version__} on {jax.devices()[0].platform}; {rounds} rounds x 20 warm '
           'calls; ms: median (min-max of round medians)', '',
           '| weight [out, in] | ' + ' | '.join(opts) + ' | 512 / 256 | GB/s at 512 |',
           '|---|---|---|---|---|']
  for o, k in shapes:
    w = jnp.asarray(rng.integers(-127, 128, (o, k), dtype=np.int8))
    s = jnp.asarray(rng.random(o, dtype=np.float32))
    x = jnp.asarray(rng.standard_normal((1, k), np.float32))
    fs = {name: jax.jit(form, compiler_options=op) for name, op in opts.items()}
    outs = {name: np.asarray(f(x, w, s)) for name, f in fs.items()}
    a, b = outs.values()
    assert np.allclose(a, b, rtol=1e-5, atol=1e-4 * np.abs(a).max()), (o, k)
    times = {name: [] for name in fs}
    for _ in range(rounds):
      for name, f in fs.items():
        times[name].append(ms(f, x, w, s))
    cells = [f'{statistics.median(t):.3f} ({min(t):.3f}-{max(t):.3f})' for t in times.values()]
    m256, m512 = (statistics.median(t) for t in times.values())
    lines.append(f'| {o} x {k} | ' + ' | '.join(cells) +
                 f' | {m512 / m256:.2f}x | {o * k / m512 / 1e6:.1f} |')
  return lines


def end_to_end(rounds: int, before: str) -> list[str]:
  rev = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', before], check=True,
                       capture_output=True, text=True).stdout.strip()
  tree = tempfile.mkdtemp(prefix='gemma4-before-')
  subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', tree, before], check=True,
                 capture_output=True)
  trees = {f'{rev} (before)': os.path.join(tree, 'src'), 'this tree': os.path.join(ROOT, 'src')}
  rows = {name: [] for name in trees}
  try:
    for rnd in range(rounds):
      for name, src in trees.items():
        env = dict(os.environ, PYTHONPATH=src,
                   GEMMA4_COMPILE_CACHE=tempfile.mkdtemp(prefix='gemma4-vw-'))
        out = subprocess.run([sys.executable, '-c', _CHILD], capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=900)
        if out.returncode:
          raise SystemExit(f'{name}: {out.stderr.strip().splitlines()[-1]}')
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows[name].append(r)
        print(f'round {rnd + 1}/{rounds} {name}: decode {r["decode_b1_tps"]:.1f} tok/s',
              file=sys.stderr, flush=True)
  finally:
    subprocess.run(['git', '-C', ROOT, 'worktree', 'remove', '--force', tree], check=False)
  texts = {r['text'] for rs in rows.values() for r in rs}
  keys = [('decode_b1_tps', 'decode tok/s, batch 1'), ('decode_b8_tps', 'decode tok/s, batch 8'),
          ('prefill1000_tps', f'prefill tok/s, {rows["this tree"][0]["n_prefill"]} tokens')]
  lines = [f'Gemma 3 270M int8 through Gemma4Sampler, greedy; {rounds} rounds, fresh '
           'processes, alternating; median (min-max)', '',
           '| code | ' + ' | '.join(k[1] for k in keys) + ' |', '|---|---|---|---|']
  for name, rs in rows.items():
    cells = []
    for key, _ in keys:
      v = [r[key] for r in rs]
      cells.append(f'{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})')
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  ratio = {key: statistics.median(r[key] for r in rows['this tree'])
                / statistics.median(r[key] for r in rows[f'{rev} (before)']) for key, _ in keys}
  lines += ['', 'this tree / before: ' + ', '.join(f'{label} {ratio[key]:.2f}x' for key, label in keys),
            f'greedy texts identical across all runs: {len(texts) == 1} ({next(iter(texts))[:60]!r}...)']
  return lines


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--before', help='a git revision to run beside this tree (section 2)')
  args = ap.parse_args()
  cpu = platform.processor() or platform.machine()
  try:
    cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
  except (OSError, StopIteration):
    pass
  print(f'# {time.strftime("%Y-%m-%d")}, {cpu}, {os.cpu_count()} cores, Python '
        f'{platform.python_version()}\n')
  print('## 1. One-row int8 products\n')
  print('\n'.join(micro(args.rounds)), flush=True)
  if args.before:
    print('\n## 2. End to end\n')
    print('\n'.join(end_to_end(args.rounds, args.before)))


if __name__ == '__main__':
  main()
