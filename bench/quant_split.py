"""Products of two or more rows by an int8 weight: float32 rows (the weight converted in
XLA CPU's matrix library) against rows split into two int8 parts multiplied in int32
(gemma4.quant.dot since the change this file came with), on E2B's widths.

Speed: M rows times an int8 weight in gemma4's stored form ([C, out, K / C] int8, a
float32 scale per output), four ways:
  float32 rows  gemma4.quant.dot as it was at BEFORE (git show BEFORE:src/gemma4/quant.py):
                float32 rows times the weight converted as the library packs it, 65-256
                rows in blocks of 64; compiled with compilation.FLOAT_OPTIONS (the
                library-fusion option it needs) as the sampler compiled it then
  split         gemma4.quant.dot now: each row as two int8 parts (split_rows), int8 x int8
                summed in int32, chunk by chunk; compiled with compilation.INT8_OPTIONS, as
                the sampler compiles programs holding int8 weights now
  split + option  the same compiled with compilation.FLOAT_OPTIONS (why programs with int8
                weights go without it)
and, for compilation.FLOAT_OPTIONS' comment, bfloat16 rows times a bfloat16 weight
[out, in] (a float tree's product) under both option sets.
Median of warm calls, alternating forms per round (bench/timing.py); the error of each
form against a float64 product of the same (dequantized) weight, relative to the
largest output.

Not a test: `.venv/bin/python bench/quant_split.py [--before 650bc9b]`; output kept in
bench/quant_split.txt.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from gemma4 import compilation, quant  # noqa: E402
from timing import alternating_ms, cpu_name  # noqa: E402

# [out, in] as gemma4 stores E2B's weights: q projection, gate and up together, the
# down projection (3 chunks), the tied LM head.
SHAPES = [(2048, 1536), (12288, 1536), (1536, 6144), (262144, 1536)]
ROWS = [2, 8, 64, 128, 1024]
ROUNDS, CALLS = 3, 5


def _module_at(rev: str):
  """gemma4/quant.py as it was at git revision `rev`, imported under another name."""
  text = subprocess.run(['git', '-C', os.path.dirname(HERE), 'show', f'{rev}:src/gemma4/quant.py'],
                        check=True, capture_output=True, text=True).stdout
  path = os.path.join(tempfile.mkdtemp(), 'quant_before.py')
  with open(path, 'w') as f:
    f.write(text)
  spec = importlib.util.spec_from_file_location('quant_before', path)
  mod = importlib.util.module_from_spec(spec)
  sys.modules['quant_before'] = mod  # its dataclasses look their module up
  spec.loader.exec_module(mod)
  return mod


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--before', default='650bc9b')
  args = ap.parse_args()
  before = _module_at(args.before)
  rng = np.random.default_rng(0)
  print(f'$ .venv/bin/python bench/quant_split.py --before {args.before}')
  print(f'# {cpu_name()}, {os.cpu_count()} cores; JAX {jax.__version__} on {jax.default_backend()}; '
        f'{ROUNDS} rounds x {CALLS} warm calls; ms: median (min-max of round medians)\n')
  print('| weight [out, in] | rows | float32 rows (before) | split | split + option | '
        'split / float32 rows | error: float32 rows, split |')
  print('|---|---|---|---|---|---|---|')
  for o, k in SHAPES:
    w = rng.standard_normal((o, k), dtype=np.float32)
    q = quant.quantize(w, quant.Layout((0, 1), 1))
    old_q = before.QTensor(q.values, q.scale, q.shape, before.Layout((0, 1), 1))
    ref_w = np.asarray(q.dequantize(), np.float64)
    del w
    for m in ROWS:
      if o * m > 262144 * 128:
        continue
      x = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32))
      calls = {
          'old': (jax.jit(before.dot, compiler_options=compilation.FLOAT_OPTIONS), (x, old_q)),
          'split': (jax.jit(quant.dot, compiler_options=compilation.INT8_OPTIONS), (x, q)),
          'opt': (jax.jit(quant.dot, compiler_options=compilation.FLOAT_OPTIONS), (x, q)),
      }
      per = alternating_ms(calls, ROUNDS, CALLS if m * o < 262144 * 64 else 2)
      want = np.asarray(x, np.float64) @ ref_w.T
      err = {n: float(np.abs(np.asarray(f(*a)) - want).max() / np.abs(want).max())
             for n, (f, a) in calls.items() if n != 'opt'}
      med = {n: float(np.median(v)) for n, v in per.items()}
      cell = lambda n: f'{med[n]:.2f} ({min(per[n]):.2f}-{max(per[n]):.2f})'
      print(f'| {o} x {k} | {m} | {cell("old")} | {cell("split")} | {cell("opt")} | '
            f'{med["split"] / med["old"]:.2f}x | {err["old"]:.1e}, {err["split"]:.1e} |', flush=True)
    del q, old_q, ref_w

  print('\nA weight of several chunks (1536 x 6144: 3 chunks of 2048 columns), rows already '
        'split (int8 x int8 in int32, INT8_OPTIONS): one product per chunk of a slice '
        'values[i] (which XLA copies; quant.dot), every chunk by all chunks at once (no '
        'slices; no faster in a decode step, bench/all_pairs_forward.txt), and the same rows '
        'times one contiguous [out, in] weight (no slices; the layout the one-row product '
        'cannot use):\n')
  print('| split rows | slices | all pairs | one [out, in] |')
  print('|---|---|---|---|')
  o, k, c = 1536, 6144, 3
  values = jnp.asarray(rng.integers(-127, 128, (c, o, k // c), dtype=np.int8))
  whole = jnp.asarray(np.ascontiguousarray(np.asarray(values).transpose(1, 0, 2).reshape(o, k)))
  times = lambda p, w: jax.lax.dot_general(p, w, (((1,), (1,)), ((), ())),
                                           preferred_element_type=jnp.int32)

  def slices(p, v):
    return sum(times(p[:, i], v[i]) for i in range(c))

  def all_pairs(p, v):
    r = p.shape[0]
    y = times(jnp.swapaxes(p, 0, 1).reshape(c * r, k // c), v.reshape(c * o, k // c))
    return sum(y.reshape(c, r, c, o)[i, :, i] for i in range(c))

  for r in (4, 16, 64, 128, 256):
    p = jnp.asarray(rng.integers(-127, 128, (r, c, k // c), dtype=np.int8))
    opts = compilation.INT8_OPTIONS
    calls = {'slices': (jax.jit(slices, compiler_options=opts), (p, values)),
             'pairs': (jax.jit(all_pairs, compiler_options=opts), (p, values)),
             'whole': (jax.jit(lambda p, w: times(p.reshape(r, k), w), compiler_options=opts),
                       (p, whole))}
    per = alternating_ms(calls, ROUNDS, 20)
    outs = [np.asarray(f(*a)) for f, a in calls.values()]
    assert all(np.array_equal(outs[0], x) for x in outs[1:])  # integer sums: exact
    med = {n: float(np.median(v)) for n, v in per.items()}
    cell = lambda n: f'{med[n]:.2f} ({min(per[n]):.2f}-{max(per[n]):.2f})'
    print(f'| {r} | {cell("slices")} | {cell("pairs")} | {cell("whole")} |', flush=True)

  print('\nbfloat16 rows times a bfloat16 weight [out, in] (a float tree), by option set:\n')
  print('| weight [out, in] | rows | FLOAT_OPTIONS | INT8_OPTIONS | INT8 / FLOAT |')
  print('|---|---|---|---|---|')
  for o, k in SHAPES[:3]:
    w = jnp.asarray(rng.standard_normal((o, k), dtype=np.float32)).astype(jnp.bfloat16)
    for m in (8, 128):
      x = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32)).astype(jnp.bfloat16)
      f = lambda x, w: jnp.dot(x, w.T)
      per = alternating_ms({'float': (jax.jit(f, compiler_options=compilation.FLOAT_OPTIONS), (x, w)),
                            'int8': (jax.jit(f, compiler_options=compilation.INT8_OPTIONS), (x, w))},
                           ROUNDS, CALLS)
      med = {n: float(np.median(v)) for n, v in per.items()}
      cell = lambda n: f'{med[n]:.2f} ({min(per[n]):.2f}-{max(per[n]):.2f})'
      print(f'| {o} x {k} | {m} | {cell("float")} | {cell("int8")} | '
            f'{med["int8"] / med["float"]:.2f}x |', flush=True)


if __name__ == '__main__':
  main()
