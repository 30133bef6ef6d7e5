"""E2B decode on an accelerator, against the bound its memory bandwidth sets.

One short run for the device machine (issue 12, section 5): the full Gemma 4 E2B
architecture (35 layers, KV sharing as published; `--layers N` for fewer) with random
bfloat16 weights made on the device leaf by leaf, the default path there (float
weights: `quantize='auto'` is int8 on CPU only), greedy, batch 1.

  decode s/token  (t(N+1 new) - t(1 new)) / N, medians of 3 warm calls each
  bytes/token     every parameter byte a decode step reads: all of them but the
                  per-layer embedding table, of which a step reads one row (the tied
                  LM head reads the whole input embedding); the KV cache read is left
                  out (under 1% here at these lengths)
  bound           bytes/token / peak bandwidth: the fastest a step can be
  efficiency      bound / measured (goal >= 70%)

Peak bandwidths are the vendors' figures for the device kinds below; another kind needs
`--bandwidth GB/s`. Prints a table and one JSON line; writes both to $OUT/gpu_e2b.txt
when $OUT is set. Not a test; never needed by the tests.
  python bench/gpu_e2b.py [--layers 35] [--new 128] [--cache 4096]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import gemma4
from gemma4.params import flatten, unflatten

PEAK_GBS = {'H200': 4800, 'H100 80GB HBM3': 3350, 'H100': 3350, 'A100-SXM4-80GB': 2039,
            'A100': 1555, 'L4': 300, 'TPU v5 lite': 819, 'TPU v4': 1200, 'TPU v5p': 2765}


def peak_bandwidth(kind: str, given: float | None) -> float:
  if given:
    return given * 1e9
  for name, gbs in sorted(PEAK_GBS.items(), key=lambda kv: -len(kv[0])):
    if name.lower() in kind.lower():
      return gbs * 1e9
  raise SystemExit(f'no peak bandwidth known for device kind {kind!r}: pass --bandwidth GB/s')


def random_params(model, seed=0):
  """bf16 params drawn on the device one leaf at a time (std fan_in**-0.5 projections,
  0.25 tables, 1 + 0.1 noise scales), so no host ever holds the model."""
  key = jax.random.key(seed)
  flat = {}
  for i, (path, s) in enumerate(flatten(model.param_specs()).items()):
    k = jax.random.fold_in(key, i)
    x = jax.random.normal(k, s.shape, jnp.float32)
    if s.init in ('ones', 'zeros'):
      x = float(s.init == 'ones') + 0.1 * x
    elif s.init == 'embed':
      x = 0.25 * x
    elif s.init in ('clip_min', 'clip_max'):
      x = jnp.full(s.shape, -jnp.inf if s.init == 'clip_min' else jnp.inf)
    else:
      x = x * int(np.prod([s.shape[a] for a in s.fan_in_axes])) ** -0.5
    flat[path] = x.astype(model.dtype)
  return unflatten(flat)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--layers', type=int, default=35)
  ap.add_argument('--new', type=int, default=128)
  ap.add_argument('--cache', type=int, default=4096)
  ap.add_argument('--bandwidth', type=float, help='peak GB/s of the device')
  args = ap.parse_args(argv)
  dev = jax.devices()[0]
  bw = peak_bandwidth(dev.device_kind, args.bandwidth)
  base = gemma4.models.Gemma4_E2B(dtype=jnp.bfloat16)
  cfg = base.config
  if args.layers != len(cfg.layer_types):
    cfg = dataclasses.replace(cfg, layer_types=cfg.layer_types[:args.layers],
                              num_kv_shared_layers=0, kv_shared_hidden_dim=None)
  model = dataclasses.replace(base, config=cfg)
  t0 = time.perf_counter()
  params = jax.block_until_ready(random_params(model))
  load_s = time.perf_counter() - t0
  leaves = flatten(params)
  total = sum(int(x.size) * x.dtype.itemsize for x in leaves.values())
  per_layer = sum(int(x.size) * x.dtype.itemsize for p, x in leaves.items()
                  if p == 'embedder/per_layer_embeddings')
  step_bytes = total - per_layer
  from tests import tokenizer_util  # 262144 pieces with Gemma 4's special ids
  tok = gemma4.Gemma4Tokenizer(str(tokenizer_util.build('/tmp/gemma4_bench_tok.model')))
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                           sampling=gemma4.sampling.Greedy(), cache_length=args.cache,
                           max_out_length=args.new + 1)
  prompt = 'The three most important inventions of the twentieth century are'

  def timed(n):
    t = time.perf_counter()
    out = s.sample(prompt, max_new_tokens=n, return_state=True)
    jax.block_until_ready(out.state.predicted_tokens)
    return time.perf_counter() - t

  t = time.perf_counter()
  timed(1)
  first_s = time.perf_counter() - t
  timed(args.new + 1)
  t1 = float(np.median([timed(1) for _ in range(3)]))
  tn = float(np.median([timed(args.new + 1) for _ in range(3)]))
  step = (tn - t1) / args.new
  bound = step_bytes / bw
  res = dict(device=dev.device_kind, platform=dev.platform, jax=jax.__version__,
             layers=args.layers, weights=jnp.dtype(model.dtype).name,
             param_bytes=total, step_bytes=step_bytes, peak_gbs=bw / 1e9,
             load_s=round(load_s, 2), first_call_s=round(first_s, 2),
             fixed_s=round(t1, 4), decode_ms=round(step * 1e3, 3),
             decode_tps=round(1 / step, 1), bound_ms=round(bound * 1e3, 3),
             efficiency=round(bound / step, 3))
  lines = [f'E2B decode on {dev.device_kind} ({dev.platform}), jax {jax.__version__}, '
           f'{args.layers} layers, bf16, batch 1, cache {args.cache}, {args.new} new tokens',
           '', '| decode ms/token | tokens/s | bytes/token | bound ms | efficiency | '
           'fixed s | first call s |', '|---|---|---|---|---|---|---|',
           f'| {step * 1e3:.2f} | {1 / step:.1f} | {step_bytes / 1e9:.2f} GB | '
           f'{bound * 1e3:.2f} | {bound / step:.0%} | {t1:.3f} | {first_s:.1f} |', '',
           json.dumps(res)]
  print('\n'.join(lines))
  if os.environ.get('OUT'):
    with open(os.path.join(os.environ['OUT'], 'gpu_e2b.txt'), 'w') as f:
      f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  main()
