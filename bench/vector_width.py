"""XLA CPU's vector width for the loops it writes itself: 256 bits (its default on a
processor with AVX-512) against 512 (`xla_cpu_prefer_vector_width`, in
gemma4.compilation.OPTIONS).

The one-row products of decode, `x @ w.astype(f32).T * scale` with an int8 weight
[out, in] (gemma4.quant's form), at the shapes of the 270M and E2B layers and the
262144 x 640 LM head: compiled with quant.COMPILER_OPTIONS alone and with
compilation.OPTIONS, the two alternating, median of 20 warm calls per round, median
(min-max) over the rounds. End to end, the change that made it the sampler's option: bench/before_after.py.

Not a test: `.venv/bin/python bench/vector_width.py [--rounds 3]`; output kept in
bench/vector_width.txt with before_after.py's.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from timing import cpu_name  # bench/timing.py, in this script's folder

# The library-fusion option (quant.COMPILER_OPTIONS until bench/quant_split.py's change;
# now part of compilation.FLOAT_OPTIONS).
LIBRARY_DOT = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT'}


def micro(rounds: int) -> list[str]:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from gemma4 import compilation, quant
  from timing import alternating_ms

  def form(x, w, s):
    return jnp.dot(x, w.astype(jnp.float32).T) * s

  rng = np.random.default_rng(0)
  shapes = [(1024, 640), (640, 1024), (2048, 640), (640, 2048),  # the 270M's layers
            (2048, 1536), (6144, 1536), (1536, 2048),  # E2B's (its down, 6144 wide: 3 x 2048)
            (262144, 640)]  # the LM head
  opts = {'256 (quant.COMPILER_OPTIONS)': LIBRARY_DOT,
          '512 (compilation.OPTIONS)': compilation.FLOAT_OPTIONS}
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
    times = alternating_ms({name: (f, (x, w, s)) for name, f in fs.items()}, rounds, n=20)
    cells = [f'{statistics.median(t):.3f} ({min(t):.3f}-{max(t):.3f})' for t in times.values()]
    m256, m512 = (statistics.median(t) for t in times.values())
    lines.append(f'| {o} x {k} | ' + ' | '.join(cells) +
                 f' | {m512 / m256:.2f}x | {o * k / m512 / 1e6:.1f} |')
  return lines


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--rounds', type=int, default=3)
  args = ap.parse_args()
  print(f'# {time.strftime("%Y-%m-%d")}, {cpu_name()}, {os.cpu_count()} cores, Python '
        f'{platform.python_version()}\n')
  print('\n'.join(micro(args.rounds)), flush=True)


if __name__ == '__main__':
  main()
