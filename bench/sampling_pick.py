"""The cost of one sampling pick on Gemma's 262144-token vocabulary: gemma4's
`sampling.Combined` (a draw from the 256 most likely tokens, falling back to a full sort
or a whole-vocabulary draw only where that could change the token) against the plain
full-sort draw it replaced (`tests.sampling_reference.full_vocabulary_draw`, the
reference the tests compare it with, bitwise).

Two kinds of rows: confident (N(0, 3) with one token 8 above the row's maximum: it holds
about 0.99 of the probability, the candidate fast path) and diffuse (plain N(0, 3): the
nucleus reaches past 256 tokens and noise could lift any outsider, so the fallbacks
run). Jitted, 3 rounds x 20 warm calls, alternating the two
engines, median ms (min-max of round medians).

  .venv/bin/python bench/sampling_pick.py      # writes bench/sampling_pick.txt
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import sampling

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.sampling_reference import full_vocabulary_draw  # noqa: E402 - the tests' reference

VOCAB = 262144
ROUNDS, CALLS = 3, 20


def timed(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(CALLS):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)) * 1e3


def main() -> None:
  cases = [('top-k 64, top-p 0.95, T 1 (Gemma 4 default)', 1.0, 64, 0.95),
           ('top-p 0.9, T 1', 1.0, None, 0.9), ('no filter, T 1', 1.0, None, 1.0)]
  rng = np.random.default_rng(0)
  key = jax.random.key(0)
  lines = ['# One sampling pick, vocabulary 262144: gemma4 Combined vs the plain full-sort draw',
           f'JAX {jax.__version__} on {jax.devices()[0].platform}, '
           f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores; method: '
           f'bench/sampling_pick.py ({ROUNDS} rounds x {CALLS} warm calls, alternating, median '
           'ms, min-max of round medians). Both give the same token (tests/test_sampling.py).', '',
           '| settings | logits | rows | gemma4 ms | full sort ms | speed-up |',
           '|---|---|---|---|---|---|']
  for label, t, k, p in cases:
    for kind, rows in (('confident', 1), ('confident', 16), ('diffuse', 1), ('diffuse', 16)):
      x = rng.normal(0, 3, (rows, VOCAB)).astype(np.float32)
      if kind == 'confident':
        x[np.arange(rows), rng.integers(0, VOCAB, rows)] = x.max(axis=1) + 8
      x = jnp.asarray(x)
      method = sampling.Combined(temperature=t, top_k=k, top_p=p, min_p=0.0)
      ours = jax.jit(lambda x, key, m=method: m.get_next_tokens(x, key))
      plain = jax.jit(lambda x, key, t=t, k=k, p=p: full_vocabulary_draw(x, key, t, k, p, 0.0))
      got = {'ours': [], 'plain': []}
      for r in range(ROUNDS):
        for name in (('ours', 'plain') if r % 2 == 0 else ('plain', 'ours')):
          got[name].append(timed(ours if name == 'ours' else plain, x, key))
      a, b = float(np.median(got['ours'])), float(np.median(got['plain']))
      lines.append(f'| {label} | {kind} | {rows} | {a:.2f} ({min(got["ours"]):.2f}-{max(got["ours"]):.2f}) | '
                   f'{b:.1f} ({min(got["plain"]):.1f}-{max(got["plain"]):.1f}) | {b / a:.1f}x |')
      print(lines[-1], flush=True)
  text = '\n'.join(lines) + '\n'
  Path(__file__).with_suffix('.txt').write_text(text)
  print(text)


if __name__ == '__main__':
  main()
