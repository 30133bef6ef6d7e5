"""What a first sample() call on the E2B-shaped model (bench/e2b_shaped.py, int8) spends
its time on, in a fresh process with the compilation cache off: JAX's own compile events
(trace, lowering to MLIR, XLA's compile) per program, in the order they happen, against
the call's wall time; and the empty KV cache made by one program (kv_cache.init_cache)
against op by op (the same call under jax.disable_jit, in the same process before it).

Not a test: `.venv/bin/python bench/first_call.py`; output kept in bench/first_call.txt.
"""

from __future__ import annotations

import os
import platform
import sys
import time

os.environ['GEMMA4_COMPILE_CACHE'] = 'off'
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # for tests.tokenizer_util

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gemma4  # noqa: E402
from gemma4 import kv_cache  # noqa: E402
import e2b_shaped  # noqa: E402
import speed  # noqa: E402  (its short prompt)


def main():
  model, params, tok = e2b_shaped.build(10, 'int8')
  jnp.zeros(1).block_until_ready()
  cfg = model.config
  lines = ['$ .venv/bin/python bench/first_call.py',
           f'# {time.strftime("%Y-%m-%d")}, {platform.processor() or platform.machine()}, '
           f'{os.cpu_count()} cores; JAX {jax.__version__} on {jax.default_backend()}', '',
           '## The empty KV cache (E2B-shaped, 1 row, 4096 tokens, float32), first call', '']
  for name, eager in (('op by op', True), ('one program', False)):
    t = time.perf_counter()
    with jax.disable_jit(eager):
      jax.block_until_ready(kv_cache.init_cache(cfg, 1, 4096, jnp.float32))
    lines.append(f'- {name}: {(time.perf_counter() - t) * 1e3:.0f} ms')

  events = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda e, d, **k: events.append((time.perf_counter(), e.split('/')[-1], d, k.get('fun_name'))))
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                           sampling=gemma4.sampling.Greedy(), cache_length=1088,
                           max_out_length=33, pad_length=(16, 128, 1024),
                           forbidden_tokens=[1, 106, 50])
  t0 = time.perf_counter()
  s.sample(speed.SHORT, max_new_tokens=1)
  wall = time.perf_counter() - t0
  lines += ['', f'## The first sample() call ({len(tok.encode(speed.SHORT, add_bos=True))}-token '
            f'prompt in the 128 bucket, 1 new token): {wall:.2f} s', '',
            '| ends at s | event | program | s |', '|---|---|---|---|']
  spent = 0.0
  for t, e, d, fun in events:
    if t >= t0 and d >= 0.02:
      lines.append(f'| {t - t0:.2f} | {e} | {fun} | {d:.2f} |')
      spent += d
  lines.append(f'\nevents of 0.02 s and more: {spent:.2f} s of the {wall:.2f} s call')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
