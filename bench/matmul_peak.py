"""What XLA CPU's matrix library reaches on this machine for float32 products of E2B's
gate/up shape (rows x 1536 x 12288, both operands float32, the weight [out, in] as
gemma4 keeps it): the ceiling a batch of 8 decode rows works under. Median of 10 calls
after one compiled call.

Not a test: `.venv/bin/python bench/matmul_peak.py`; output kept in bench/matmul_peak.txt.
"""

import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np


def bench(m, k, n, reps=10):
  x = jnp.asarray(np.random.rand(m, k), jnp.float32)
  w = jnp.asarray(np.random.rand(n, k), jnp.float32)
  f = jax.jit(lambda x, w: jax.lax.dot_general(x, w, (((1,), (1,)), ((), ()))))
  f(x, w).block_until_ready()
  ts = []
  for _ in range(reps):
    t = time.perf_counter()
    f(x, w).block_until_ready()
    ts.append(time.perf_counter() - t)
  t = float(np.median(ts))
  return 2 * m * k * n / t / 1e9, t * 1e3


def main():
  print('$ .venv/bin/python bench/matmul_peak.py')
  print(f'# {time.strftime("%Y-%m-%d")}, {platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} cores; JAX {jax.__version__} on {jax.default_backend()}')
  for m in (8, 64, 1024):
    g, ms = bench(m, 1536, 12288)
    print(f'float32, {m} rows x 1536 x 12288: {ms:.2f} ms, {g:.0f} GFLOP/s')


if __name__ == '__main__':
  main()
