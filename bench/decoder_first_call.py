"""First-call (compile + run) and steady time of a prefill and a decode step for the
tiny configs; with the official library importable (run it in the oracle env:
`PYTHONPATH=src:. ~/.cache/gemma4/oracle-py312/bin/python bench/decoder_first_call.py`),
the official teacher-forced forward is timed beside it. Not a test: prints a table."""

from __future__ import annotations

import importlib.util
import time

import jax
import jax.numpy as jnp
import numpy as np

import gemma4
from gemma4.transformer import forward

PRESETS = ['e2b', 'e4b', '26b_a4b', '31b']


def timed(fn, *args):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t0


def main():
  have_official = importlib.util.find_spec('gemma') is not None
  if have_official:
    from tests.oracle import official
    official.use_head_router()
  rows = []
  tokens = jnp.asarray(np.random.default_rng(0).integers(1, 5000, (1, 48)), jnp.int32)
  for p in PRESETS:
    m = gemma4.models.tiny(p)
    params = m.init(0)
    step = jax.jit(lambda pr, t, c: forward(pr, m.config, t, cache=c, last_only=True))
    cache = m.init_cache(1, 256, jnp.float32)
    (_, cache), prefill_first = timed(step, params, tokens, cache)
    (_, _), prefill_again = timed(step, params, tokens, m.init_cache(1, 256, jnp.float32))
    one = tokens[:, :1]
    (_, cache), decode_first = timed(step, params, one, cache)
    (_, cache), decode_again = timed(step, params, one, cache)
    row = dict(preset=p, prefill_first=prefill_first, prefill=prefill_again,
               decode_first=decode_first, decode=decode_again)
    full = jax.jit(lambda pr, t: forward(pr, m.config, t)[0])
    _, row['full_logits_first'] = timed(full, params, tokens)
    _, row['full_logits'] = timed(full, params, tokens)
    if have_official:  # the official forward returns all logits: compare with full_logits
      om = official.tiny_official_model('gemma4_' + p)
      f = jax.jit(om.apply)
      _, row['official_prefill_first'] = timed(f, {'params': params}, tokens)
      _, row['official_prefill'] = timed(f, {'params': params}, tokens)
    rows.append(row)
  keys = list(rows[0])
  print(f'jax {jax.__version__}, {jax.devices()[0].platform}; seconds; prompt 48 tokens, cache 256')
  print(' | '.join(keys))
  for r in rows:
    print(' | '.join(r['preset'] if k == 'preset' else f'{r[k]:.3f}' for k in keys))


if __name__ == '__main__':
  main()
