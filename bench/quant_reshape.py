"""Products of an int8 weight with several output axes and two or more rows: the weight
reshaped to [out, in] before its conversion to float32 as it was (XLA moves that
reshape after the conversion, and its matrix library then converts the whole weight
before multiplying), against gemma4.quant.dot as it is (the reshape kept on the int8
weight by an optimization barrier).

Weights: the gate/up products [2, F, D] of E2B (F 6144, D 1536) and of the 270M (F 2048,
D 640), and E2B's query [8, 256, 1536]; with E4B's width (D 2560, two column chunks of
1280, scanned) its query [8, 256, 2560] and gate/up [2, 10240, 2560]; and, for a
weight with one output axis (whose reshape was already free), E2B's down projection
(6144 columns: three chunks). Rows as a prefill
chunk or a batched decode step has them, through quant.dot's row blocks (one row, the
decode loop's own form, is not affected). Compiled with gemma4.compilation.OPTIONS; the
two forms alternate, median of 5 warm calls per round, median (min-max) over the
rounds.

Not a test: `.venv/bin/python bench/quant_reshape.py [--rounds 3]`; output kept in
bench/quant_reshape.txt, with bench/before_after.py's end-to-end run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--rows', default='2,8,16,64,128,256,1024')
  args = ap.parse_args()

  import jax
  import jax.numpy as jnp
  import numpy as np

  from gemma4 import compilation, quant
  from timing import alternating_ms

  def before(xs, values):  # quant._product before the barrier
    c, *out, kc = values.shape
    o = int(np.prod(out))
    if c == 1:
      return jnp.dot(xs[:, 0], values.reshape(o, kc).astype(jnp.float32).T)
    def chunk(acc, part):
      xc, wc = part
      return acc + jnp.dot(xc, wc.reshape(o, kc).astype(jnp.float32).T), None
    return jax.lax.scan(chunk, jnp.zeros((xs.shape[0], o), jnp.float32),
                        (jnp.swapaxes(xs, 0, 1), values))[0]

  def old_dot(x, q):  # quant.dot (its row blocks included) around the old product
    now = quant._product
    quant._product = before
    try:
      return quant.dot(x, q)
    finally:
      quant._product = now

  rng = np.random.default_rng(0)
  weights = [('E2B gate/up [2, 6144, 1536]', (2, 6144, 1536), quant.Layout((0, 1, 2), 2)),
             ('E2B query [8, 256, 1536]', (8, 1536, 256), quant.Layout((0, 2, 1), 2)),
             ('270M gate/up [2, 2048, 640]', (2, 2048, 640), quant.Layout((0, 1, 2), 2)),
             ('E4B query [8, 256, 2560]', (8, 2560, 256), quant.Layout((0, 2, 1), 2)),
             ('E4B gate/up [2, 10240, 2560]', (2, 10240, 2560), quant.Layout((0, 1, 2), 2)),
             ('E2B down [1536 | 6144] (one output axis)', (6144, 1536), quant.Layout((1, 0), 1))]
  lines = [f'JAX {jax.__version__} on {jax.default_backend()}; {args.rounds} rounds x 5 warm '
           'calls; ms: median (min-max of round medians)', '',
           '| weight | rows | reshape converted (before) | quant.dot as it is | before / now |',
           '|---|---|---|---|---|']
  for name, shape, layout in weights:
    q = quant.quantize(jnp.asarray(rng.standard_normal(shape, dtype=np.float32)), layout)
    k = q.values.shape[0] * q.values.shape[-1]
    for m in [int(r) for r in args.rows.split(',')]:
      x = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32))
      old, now = compilation.jit(old_dot), compilation.jit(quant.dot)
      got = alternating_ms({'before': (old, (x, q)), 'now': (now, (x, q))}, args.rounds, 5)
      a, b = (np.asarray(f(x, q)) for f in (old, now))
      assert np.allclose(a, b, rtol=1e-4, atol=1e-3), f'{name} {m} rows: the forms differ'
      cell = lambda v: f'{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})'
      ratio = statistics.median(got['before']) / statistics.median(got['now'])
      lines.append(f'| {name} | {m} | {cell(got["before"])} | {cell(got["now"])} | {ratio:.2f}x |')
      print(lines[-1], flush=True)
  head = [f'$ .venv/bin/python bench/quant_reshape.py --rounds {args.rounds}',
          f'# {time.strftime("%Y-%m-%d")}, {platform.processor() or platform.machine()}, '
          f'{os.cpu_count()} cores', '']
  print('\n'.join(head + lines))


if __name__ == '__main__':
  main()
