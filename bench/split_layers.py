"""A prefill split into one program per distinct layer against one program for the whole
pass (`transformer.split_layers`, `SPLIT_LAYERS_PER_PROGRAM`): the first sample() call
(1 new token, the short prompt, compile included) and the second, each way in a fresh
process with the compilation cache off, the two ways alternating.

Models: the E2B-shaped model (bench/e2b_shaped.py, int8; 10 layers, 2 distinct), full
E2B (35 layers, 4 distinct; --full) and a tiny test model (gemma4.models.tiny('e2b'): 6
layers, 4 distinct). The decode loop is one program either way.

Not a test: `.venv/bin/python bench/split_layers.py [--rounds 3] [--full]`; output kept
in bench/split_layers.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def child(model: str, split: bool) -> dict:
  os.environ['GEMMA4_COMPILE_CACHE'] = 'off'
  sys.path.insert(0, os.path.dirname(HERE))  # for tests.tokenizer_util
  import jax.numpy as jnp
  import gemma4
  from gemma4 import transformer
  import e2b_shaped
  import speed
  transformer.SPLIT_LAYERS_PER_PROGRAM = 1 if split else 1000
  if model == 'tiny':
    m = gemma4.models.tiny('e2b')
    params = m.init(0)
    from tests import tokenizer_util
    tok = gemma4.Gemma4Tokenizer(str(tokenizer_util.build(e2b_shaped.TOKENIZER)))
  else:
    m, params, tok = e2b_shaped.build(35 if model == 'full' else 10, 'int8')
  jnp.zeros(1).block_until_ready()
  s = gemma4.Gemma4Sampler(model=m, params=params, tokenizer=tok,
                           sampling=gemma4.sampling.Greedy(), cache_length=1088,
                           max_out_length=33, pad_length=(16, 128, 1024),
                           forbidden_tokens=[1, 106, 50])
  times = []
  for _ in range(2):
    t = time.perf_counter()
    s.sample(speed.SHORT, max_new_tokens=1)
    times.append(time.perf_counter() - t)
  return {'first': times[0], 'second': times[1],
          'layers': m.config.num_layers}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--full', action='store_true', help='also full E2B (one round)')
  ap.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
  a = ap.parse_args()
  if a.child:
    print(json.dumps(child(a.child[0], a.child[1] == 'split')))
    return
  import jax
  models = [('tiny', a.rounds), ('e2b_shaped', a.rounds)] + ([('full', 1)] if a.full else [])
  lines = ['$ .venv/bin/python bench/split_layers.py' + (' --full' if a.full else ''),
           f'# {time.strftime("%Y-%m-%d")}, {platform.processor() or platform.machine()}, '
           f'{os.cpu_count()} cores; JAX {jax.__version__} on {jax.default_backend()}; '
           'each run a fresh process, compilation cache off, the two ways alternating', '',
           '| model | layers | rounds | first call, one program s | first call, split s '
           '| split / one | second call, one s | second call, split s |', '|---|---|---|---|---|---|---|---|']
  for model, rounds in models:
    got = {'whole': [], 'split': []}
    for _ in range(rounds):
      for way in ('whole', 'split'):
        p = subprocess.run([sys.executable, __file__, '--child', model, way],
                           capture_output=True, text=True, check=True)
        got[way].append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(model, way, got[way][-1], flush=True)
    med = {w: {k: statistics.median(r[k] for r in got[w]) for k in ('first', 'second')}
           for w in got}
    spread = {w: ' / '.join(f'{r["first"]:.2f}' for r in got[w]) for w in got}
    lines.append(f'| {model} | {got["whole"][0]["layers"]} | {rounds} '
                 f'| {med["whole"]["first"]:.2f} ({spread["whole"]}) '
                 f'| {med["split"]["first"]:.2f} ({spread["split"]}) '
                 f'| {med["split"]["first"] / med["whole"]["first"]:.2f}x '
                 f'| {med["whole"]["second"]:.2f} | {med["split"]["second"]:.2f} |')
  lines += ['', 'medians; each round\'s first call in brackets']
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
