"""First-call time and decode speed of gemma4.Gemma4Sampler beside the official
gm.text.Gemma4Sampler, same tiny params and test tokenizer, same machine, one run.
Run in the oracle env (it has both):
  PYTHONPATH=src:. ~/.cache/gemma4/oracle-py312/bin/python bench/sampler_tiny.py
Decode speed: (tokens of a 64-token sample - tokens of a 1-token sample) over the time
difference, so prefill and fixed costs cancel. Not a test: prints a table."""

from __future__ import annotations

import sys
import time

import jax.numpy as jnp

import gemma4
from tests import golden, tokenizer_util

SETTINGS = dict(cache_length=512, max_out_length=128, pad_length=(32, 64))
PROMPT = 'The quick brown fox jumps over the lazy dog'


def timed(f):
  t0 = time.perf_counter()
  out = f()
  return out, time.perf_counter() - t0


def measure(sampler, tokens_of):
  _, first = timed(lambda: sampler.sample(PROMPT, max_new_tokens=64))
  times = {}
  for n in (1, 64):
    runs = []
    for _ in range(3):
      out, t = timed(lambda: sampler.sample(PROMPT, max_new_tokens=n, return_state=True))
      runs.append(t)
    times[n] = (min(runs), tokens_of(out))
  (t1, n1), (t64, n64) = times[1], times[64]
  return first, t1, (n64 - n1) / (t64 - t1)


def main(preset='gemma4_e2b'):
  tok_path = tokenizer_util.build('/tmp/gemma4_bench_tok.model')
  cfg = gemma4.models.tiny_config(preset)
  params = gemma4.init_params(cfg, golden.PARAM_SEED, jnp.float32)
  ours = gemma4.Gemma4Sampler(model=gemma4.Model(cfg, jnp.float32), params=params,
                              tokenizer=gemma4.Gemma4Tokenizer(tok_path), **SETTINGS)
  rows = {'gemma4': measure(ours, lambda o: int((o.tokens != 0).sum()))}
  try:
    from gemma import gm
    from tests.oracle import official
    official.use_head_router()
    off = gm.text.Gemma4Sampler(model=official.tiny_official_model(preset), params=params,
                                tokenizer=gm.text.Gemma4Tokenizer(path=str(tok_path)), **SETTINGS)
    rows['official 4.0.1'] = measure(off, lambda o: int((o.tokens != 0).sum()))
  except ImportError:
    print('(official library not importable: gemma4 only)')
  print(f'tiny {preset} (float32, vocab 262144), prompt {PROMPT!r}, CPU')
  print('sampler | first call s | 1-token call s | decode tokens/s')
  for name, (first, t1, tps) in rows.items():
    print(f'{name} | {first:.2f} | {t1:.3f} | {tps:.1f}')
  if len(rows) == 2:
    a, b = rows['gemma4'], rows['official 4.0.1']
    print(f'ratio gemma4/official: first call {a[0] / b[0]:.2f}x time, decode {a[2] / b[2]:.2f}x speed')


if __name__ == '__main__':
  main(*sys.argv[1:])
