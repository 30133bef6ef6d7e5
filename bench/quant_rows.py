"""Two or more rows times an int8 weight on XLA CPU: which form is fastest as the rows
grow (batched decode: 2-8 rows; prefill: hundreds). Each form compiled with
gemma4.quant.COMPILER_OPTIONS, median of warm calls, alternating forms per round:
  gemma4.quant.dot  the code as it is (64-row blocks for 65-256 rows, 2048-column chunks)
  f32 rows      x @ w.astype(f32).T * scale              (one product)
  bf16 rows     x.astype(bf16) @ w.astype(bf16).T * scale, accumulated in f32
  int8 rows     x quantized per row to int8 (dynamic), int8 @ int8 -> int32, * scales
  reduce        (w.astype(f32)[:, None] * x[None]).sum(-1).T * scale (no dot)
  scanned rows  each row its own fused matrix-vector product, rows in a lax.scan
GB/s counts the int8 weight bytes read once per call.
Not a test: `.venv/bin/python bench/quant_rows.py`; output kept in bench/quant_rows.txt.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import quant
from timing import alternating_ms


def f32_rows(x, w, s):
  return jnp.dot(x, w.astype(jnp.float32).T) * s


def bf16_rows(x, w, s):
  return jnp.dot(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16).T,
                 preferred_element_type=jnp.float32) * s


def int8_rows(x, w, s):
  sx = jnp.max(jnp.abs(x), axis=-1, keepdims=True) / 127.0
  xq = jnp.clip(jnp.round(x / jnp.where(sx > 0, sx, 1.0)), -127, 127).astype(jnp.int8)
  y = jax.lax.dot_general(xq, w, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)
  return y.astype(jnp.float32) * sx * s


def reduce_rows(x, w, s):
  return (w.astype(jnp.float32)[:, None, :] * x[None]).sum(-1).T * s


def scanned_rows(x, w, s):
  def one(_, row):
    return None, jnp.dot(quant._materialized(row[None]), w.astype(jnp.float32).T)[0]
  return jax.lax.scan(one, None, x)[1] * s


def gemma4_dot(x, q, s):  # what gemma4.quant.dot does with these rows (ROW_BLOCK, chunks)
  return quant.dot(x, q)


FORMS = {'gemma4.quant.dot': gemma4_dot, 'f32 rows': f32_rows, 'bf16 rows': bf16_rows, 'int8 rows': int8_rows,
         'reduce': reduce_rows, 'scanned rows': scanned_rows}
SMALL_ONLY = ('reduce', 'scanned rows')  # 2 and 8 rows of the layer weights only (slow)


def main(rounds=3, calls=5):
  rng = np.random.default_rng(0)
  print(f'JAX {jax.__version__} on {jax.devices()[0].platform}, {rounds} rounds x {calls} '
        'warm calls, median (min-max of round medians)\n')
  print('| weight [out, in] | rows | ' + ' | '.join(f'{f} ms (GB/s)' for f in FORMS) + ' |')
  print('|---|---|' + '---|' * len(FORMS))
  for (o, k) in [(2048, 640), (640, 2048), (12288, 1536), (1536, 6144), (262144, 640)]:
    w = jnp.asarray(rng.integers(-127, 128, (o, k), dtype=np.int8))
    s = jnp.asarray(rng.uniform(0.001, 0.01, o).astype(np.float32))
    q = quant.from_rows(np.asarray(w), np.asarray(s), (o, k), quant.Layout((0, 1), 1))
    for m in (1, 2, 8, 64, 128, 256, 512):
      if o * m > 262144 * 64:
        continue
      x = jnp.asarray(rng.standard_normal((m, k), np.float32))
      small = m in (2, 8) and o <= 12288
      fs = {n: (jax.jit(f, compiler_options=quant.COMPILER_OPTIONS),
                (x, q if n == 'gemma4.quant.dot' else w, s))
            for n, f in FORMS.items() if small or n not in SMALL_ONLY}
      per = alternating_ms(fs, rounds, calls)
      cells = []
      for n in FORMS:
        if n not in fs:
          cells.append('')
          continue
        med = float(np.median(per[n]))
        cells.append(f'{med:.2f} ({min(per[n]):.2f}-{max(per[n]):.2f}; {o * k / med / 1e6:.1f})')
      print(f'| {o} x {k} | {m} | ' + ' | '.join(cells) + ' |', flush=True)


if __name__ == '__main__':
  main()
