"""quant.ALL_PAIRS_ROWS end to end: one decode step (one new token per row, batch 8, a
1088-slot cache) through the E2B-shaped int8 model (bench/e2b_shaped.py), its down
projections (6144 columns, 3 chunks) multiplied with all pairs of chunks (as gemma4 does
up to ALL_PAIRS_ROWS rows x chunks) or chunk by chunk (the threshold set to 0, so every
chunk is a slice, which XLA copies). Each form is traced and compiled once with the
options the sampler uses for int8 weights; rounds alternate the two; median (min-max)
of the rounds' medians of 10 warm calls. Batch 1 (one row: neither form) as a check.

Not a test: `.venv/bin/python bench/all_pairs_forward.py [--rounds 3]`; output kept in
bench/all_pairs_forward.txt.
"""

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # tests.* (e2b_shaped's tokenizer)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import e2b_shaped  # noqa: E402
from gemma4 import compilation, quant  # noqa: E402
from gemma4.transformer import forward  # noqa: E402
from timing import alternating_ms, cpu_name  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--rounds', type=int, default=3)
  args = ap.parse_args()
  model, params, _ = e2b_shaped.build(10, 'int8')
  cfg = model.config
  calls = {}
  threshold = quant.ALL_PAIRS_ROWS
  for batch in (8, 1):
    cache = model.init_cache(batch, 1088, jnp.float32)
    tokens = jnp.ones((batch, 1), jnp.int32)
    for rows in (threshold, 0):
      quant.ALL_PAIRS_ROWS = rows  # read as the step is traced, just below
      jax.clear_caches()  # the layers' nested jits would reuse their traces otherwise
      step = jax.jit(lambda p, t, c: forward(p, cfg, t, cache=c),
                     compiler_options=compilation.INT8_OPTIONS)
      jax.block_until_ready(step(params, tokens, cache))
      slices = step.lower(params, tokens, cache).compile().as_text().count('s8[4608,2048]')
      calls[(batch, rows)] = (step, (params, tokens, cache))
      print(f'batch {batch}, ALL_PAIRS_ROWS {rows}: {slices} merged [3 x 1536, 2048] views in the program', file=sys.stderr)
  quant.ALL_PAIRS_ROWS = threshold
  per = alternating_ms(calls, args.rounds, 10)
  print(f'$ .venv/bin/python bench/all_pairs_forward.py --rounds {args.rounds}')
  print(f'# {cpu_name()}, {os.cpu_count()} cores; JAX {jax.__version__}; ms per step: median '
        f'(min-max) over rounds\n')
  print('| batch | all pairs (ALL_PAIRS_ROWS = 192) | chunk by chunk (0) | all pairs / chunks |')
  print('|---|---|---|---|')
  for batch in (8, 1):
    a, b = per[(batch, threshold)], per[(batch, 0)]
    cell = lambda v: f'{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})'
    print(f'| {batch} | {cell(a)} | {cell(b)} | {statistics.median(a) / statistics.median(b):.2f}x |')


if __name__ == '__main__':
  main()
