"""How far gemma4's one-row int8 product is from what this processor can do: one row
times the 262144 x 1536 int8 LM head (E2B's tied embedding), gemma4.quant.dot (XLA CPU's
fused loop, compiled as the sampler compiles programs holding int8 weights) against
bench/matvec_ceiling.c, hand-written AVX-512 loops on 2 OpenMP threads: the same
convert-and-multiply-in-float32 loop XLA writes, the same product through AVX512-VNNI
(int8 x uint8 in int32, which XLA CPU does not emit for one row), and a loop that only
reads the weight (the memory bound); and, in XLA, the row as int8 times the int8 weight
in int32 (what a VNNI loop computes). Rounds alternate the C program (a fresh process,
median of 10 calls of each loop) and the XLA products (median of 10 warm calls, 3 for
the int8 row).

Needs gcc with OpenMP and a processor with AVX512-VNNI. Not a test:
`.venv/bin/python bench/matvec_ceiling.py [--rounds 3]`; output kept in
bench/matvec_ceiling.txt.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from gemma4 import compilation, quant  # noqa: E402
from timing import cpu_name  # noqa: E402
O, K = 262144, 1536


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--rounds', type=int, default=3)
  args = ap.parse_args()
  exe = os.path.join(tempfile.mkdtemp(), 'matvec_ceiling')
  subprocess.run(['gcc', '-O3', '-march=native', '-fopenmp', os.path.join(HERE, 'matvec_ceiling.c'),
                  '-o', exe], check=True)
  rng = np.random.default_rng(0)
  q = quant.from_rows(rng.integers(-127, 128, (O, K), dtype=np.int8),
                      rng.random(O, dtype=np.float32), (O, K), quant.Layout((0, 1), 1))
  x = jnp.asarray(rng.standard_normal((1, K), dtype=np.float32))
  f = jax.jit(quant.dot, compiler_options=compilation.INT8_OPTIONS)
  jax.block_until_ready(f(x, q))
  # The same product with the row as int8, int8 x int8 in int32, as XLA CPU compiles it.
  x8 = jnp.asarray(rng.integers(-127, 128, (1, K), dtype=np.int8))
  w8 = q.values[0]
  f8 = jax.jit(lambda x, w: jax.lax.dot_general(x, w, (((1,), (1,)), ((), ())),
                                                preferred_element_type=jnp.int32),
               compiler_options=compilation.INT8_OPTIONS)
  jax.block_until_ready(f8(x8, w8))
  runs = {'gemma4': [], 'int8 row': [], 'f32': [], 'vnni': [], 'read': []}
  threads = None
  for _ in range(args.rounds):
    out = subprocess.run([exe], check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count()))).stdout.split()
    threads = int(out[0])
    for name, v in zip(('f32', 'vnni', 'read'), out[1:]):
      runs[name].append(float(v))
    for name, g, a, n in (('gemma4', f, (x, q), 10), ('int8 row', f8, (x8, w8), 3)):
      ts = []
      for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(g(*a))
        ts.append(time.perf_counter() - t)
      runs[name].append(statistics.median(ts) * 1e3)
  print(f'$ .venv/bin/python bench/matvec_ceiling.py --rounds {args.rounds}')
  print(f'# {cpu_name()}, {os.cpu_count()} cores ({threads} OpenMP threads); JAX {jax.__version__}; '
        f'{gcc_version()}; ms: median (min-max) over rounds\n')
  print(f'One row times a {O} x {K} int8 weight ({O * K / 1e6:.0f} MB)\n')
  print('| loop | ms | GB/s of weight read | / gemma4 |')
  print('|---|---|---|---|')
  base = statistics.median(runs['gemma4'])
  for name, label in (('gemma4', 'gemma4.quant.dot (XLA CPU, INT8_OPTIONS)'),
                      ('int8 row', 'XLA CPU: the row as int8, int8 x int8 in int32'),
                      ('f32', 'C: convert to float32, multiply (the form XLA writes)'),
                      ('vnni', 'C: int8 x uint8 by AVX512-VNNI, int32 sums'),
                      ('read', 'C: read the weight only')):
    v = runs[name]
    med = statistics.median(v)
    print(f'| {label} | {med:.2f} ({min(v):.2f}-{max(v):.2f}) | {O * K / med / 1e6:.1f} | '
          f'{med / base:.2f}x |')


def gcc_version() -> str:
  return subprocess.run(['gcc', '--version'], capture_output=True, text=True).stdout.splitlines()[0]


if __name__ == '__main__':
  main()
