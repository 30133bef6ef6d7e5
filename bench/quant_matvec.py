"""The XLA CPU forms behind gemma4.quant.dot: one int8 weight [out, in] times float32
rows, `x @ w.astype(f32).T * scale`, timed as XLA compiles it (median of 10 warm calls).
Shows where XLA fuses the conversion into the product (one row, `in` up to ~3000) and
where it writes a float32 copy first (longer rows; two or more rows), that a
`lax.scan` over 2048-column chunks restores the fused form for long rows, and that
gemma4.quant.COMPILER_OPTIONS hands two or more rows to XLA's matrix library without
the copy.
Not a test: run `.venv/bin/python bench/quant_matvec.py`; output kept in
bench/quant_matvec.txt.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import quant

# The library-fusion option (quant.COMPILER_OPTIONS until bench/quant_split.py's change;
# now part of compilation.FLOAT_OPTIONS).
LIBRARY_DOT = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT'}


def ms(f, *a, n=10):
  jax.block_until_ready(f(*a))
  ts = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(f(*a))
    ts.append(time.perf_counter() - t)
  return float(np.median(ts)) * 1e3


def main():
  rng = np.random.default_rng(0)
  plain = jax.jit(lambda x, w, s: jnp.dot(x, w.astype(jnp.float32).T) * s)
  print(f'JAX {jax.__version__} on {jax.devices()[0].platform}\n')
  print('| weight [out, in] | rows | form | ms |')
  print('|---|---|---|---|')
  for (o, k), m in [((1536, 2048), 1), ((1536, 4096), 1), ((1536, 6144), 1),
                    ((262144, 640), 1), ((262144, 640), 2),
                    ((262144, 640), 8)]:
    w = rng.standard_normal((o, k), np.float32)
    x = jnp.asarray(rng.standard_normal((m, k), np.float32))
    q = quant.quantize(w, quant.Layout((0, 1), 1))
    w8 = jnp.asarray(np.moveaxis(np.asarray(q.values), 0, -2).reshape(o, k))
    print(f'| {o} x {k} | {m} | x @ w.astype(f32).T, one product | {ms(plain, x, w8, q.scale):.2f} |')
    if m > 1:
      lib = jax.jit(lambda x, w, s: jnp.dot(x, w.astype(jnp.float32).T) * s,
                    compiler_options=LIBRARY_DOT)
      print(f'| {o} x {k} | {m} | same, compiled with quant.COMPILER_OPTIONS | {ms(lib, x, w8, q.scale):.2f} |')
    if k > quant.CHUNK:
      print(f'| {o} x {k} | {m} | gemma4.quant.dot ({q.values.shape[0]} chunks, scan) | '
            f'{ms(jax.jit(quant.dot), x, q):.2f} |')

if __name__ == '__main__':
  main()
