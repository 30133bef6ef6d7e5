"""Is a 4-bit weight faster than int8 on XLA CPU? One row times a weight [out, in], the
form gemma4.quant.dot fuses (a matrix-vector loop that converts in registers), with the
weight stored as int8 (gemma4 today) or as two 4-bit values per byte, unpacked in the
loop. Best case for int4: one scale per row (a group-wise scale only adds work).
  int8             x @ w8.astype(f32).T * scale
  int4 interleaved nibbles of one byte are neighbouring columns: unpack, interleave, dot
  int4 halves      low nibbles hold columns [0, in/2), high nibbles [in/2, in): two dots
                   over the same packed bytes, no interleave
Median of warm calls, alternating forms per round; GB/s counts the bytes stored.
Not a test: `.venv/bin/python bench/quant_int4.py`; output kept in bench/quant_int4.txt.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import quant
from timing import alternating_ms


def int8(x, w8, packed, s):
  return jnp.dot(quant._materialized(x), w8.astype(jnp.float32).T) * s


def int4_interleaved(x, w8, packed, s):
  lo = (packed & 15).astype(jnp.int8) - 8
  hi = (packed >> 4).astype(jnp.int8) - 8
  w = jnp.stack([lo, hi], -1).reshape(packed.shape[0], -1)
  return jnp.dot(quant._materialized(x), w.astype(jnp.float32).T) * s


def int4_halves(x, w8, packed, s):
  x = quant._materialized(x)
  h = packed.shape[1]
  lo = ((packed & 15).astype(jnp.int8) - 8).astype(jnp.float32)
  hi = ((packed >> 4).astype(jnp.int8) - 8).astype(jnp.float32)
  return (jnp.dot(x[:, :h], lo.T) + jnp.dot(x[:, h:], hi.T)) * s


FORMS = {'int8': (int8, 1.0), 'int4 interleaved': (int4_interleaved, 0.5),
         'int4 halves': (int4_halves, 0.5)}


def main(rounds=3, calls=7):
  rng = np.random.default_rng(0)
  print(f'JAX {jax.__version__} on {jax.devices()[0].platform}, 1 row, {rounds} rounds x '
        f'{calls} warm calls, median (min-max of round medians); GB/s of the bytes stored\n')
  print('| weight [out, in] | ' + ' | '.join(f'{n} ms (GB/s)' for n in FORMS) + ' |')
  print('|---|' + '---|' * len(FORMS))
  for o, k in [(2048, 640), (640, 2048), (6144, 1536), (1536, 2048), (262144, 640)]:
    w8 = jnp.asarray(rng.integers(-8, 8, (o, k), dtype=np.int8))
    packed = jnp.asarray(rng.integers(0, 256, (o, k // 2), dtype=np.uint8))
    s = jnp.asarray(rng.uniform(0.001, 0.01, o).astype(np.float32))
    x = jnp.asarray(rng.standard_normal((1, k), np.float32))
    per = alternating_ms({n: (jax.jit(f), (x, w8, packed, s)) for n, (f, _) in FORMS.items()},
                         rounds, calls)
    cells = []
    for n, (_, bytes_per) in FORMS.items():
      med = float(np.median(per[n]))
      cells.append(f'{med:.3f} ({min(per[n]):.3f}-{max(per[n]):.3f}; '
                   f'{o * k * bytes_per / med / 1e6:.1f})')
    print(f'| {o} x {k} | ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
  main()
