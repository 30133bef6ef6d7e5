"""The sharded path on an accelerator: one short run for the device machine (issue 15,
section 5). Never needed by the tests.

An E2B-shaped model (the published E2B widths, `--layers` of its layers, random
float32 weights made once on the host CPU) runs greedy on
  cpu   the host's CPU backend, no mesh: the reference tokens;
  mesh  a mesh over every accelerator (`make_mesh(tensor=n)`), parameters and cache
        placed by the default rules, float32 matmuls at 'highest' precision;
and the script checks the mesh run's tokens equal the CPU run's, prints the memory
plan (`gemma4.memory.plan`) beside the bytes the accelerators hold, and the decode
time per token against the bound the peak memory bandwidth sets (the parameter bytes
one step reads on one device, as bench/gpu_e2b.py counts them, over its bandwidth).

  python bench/gpu_sharded.py [--layers 8] [--new 32] [--bandwidth GB/s]
Prints a table and one JSON line; writes both to $OUT/gpu_sharded.txt when $OUT is set.
On a machine with no accelerator the mesh is the CPU itself (a smoke run).
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


def main(argv=None):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import gemma4
  from bench.gpu_e2b import peak_bandwidth
  from gemma4 import memory, sharding
  from tests import tokenizer_util

  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--layers', type=int, default=8)
  ap.add_argument('--new', type=int, default=32)
  ap.add_argument('--cache', type=int, default=1024)
  ap.add_argument('--bandwidth', type=float, help='peak GB/s of one device')
  args = ap.parse_args(argv)
  jax.config.update('jax_default_matmul_precision', 'highest')
  cpu = jax.devices('cpu')[0]
  devices = jax.devices()
  kind = devices[0].device_kind
  base = gemma4.models.Gemma4_E2B(dtype=jnp.float32)
  cfg = dataclasses.replace(base.config, layer_types=base.config.layer_types[:args.layers],
                            num_kv_shared_layers=0, kv_shared_hidden_dim=None)
  model = dataclasses.replace(base, config=cfg)
  tok = gemma4.Gemma4Tokenizer(str(tokenizer_util.build('/tmp/gemma4_bench_tok.model')))
  prompts = ['The three most important inventions of the twentieth century are',
             'Once upon a time']
  kw = dict(model=model, tokenizer=tok, sampling=gemma4.sampling.Greedy(),
            cache_length=args.cache, max_out_length=args.new + 1)
  with jax.default_device(cpu):
    params = model.init(0)
    want = gemma4.Gemma4Sampler(params=params, **kw).sample(
        prompts, max_new_tokens=args.new, return_state=True).tokens

  mesh = sharding.make_mesh(tensor=len(devices), devices=devices)
  t0 = time.perf_counter()
  s = gemma4.Gemma4Sampler(params=params, mesh=mesh, **kw)
  jax.block_until_ready(s.params)
  place_s = time.perf_counter() - t0
  del params

  def timed(n, rows=prompts[:1]):
    t = time.perf_counter()
    out = s.sample(rows, max_new_tokens=n, return_state=True)
    jax.block_until_ready(out.state.predicted_tokens)
    return time.perf_counter() - t, out

  got = s.sample(prompts, max_new_tokens=args.new, return_state=True)
  same = bool(np.array_equal(got.tokens, want))
  timed(1), timed(args.new + 1)
  t1 = float(np.median([timed(1)[0] for _ in range(3)]))
  tn = float(np.median([timed(args.new + 1)[0] for _ in range(3)]))
  step = (tn - t1) / args.new
  plan = memory.plan(model, mesh, dtype='float32', cache_length=args.cache, batch_size=1)
  held = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(s.params))
  table = s.params['embedder']['per_layer_embeddings']  # a step reads one row of it
  step_bytes = held - table.addressable_shards[0].data.nbytes
  bw = peak_bandwidth(kind, args.bandwidth) if devices[0].platform != 'cpu' else (
      (args.bandwidth or 25) * 1e9)
  bound = step_bytes / bw
  res = dict(device=kind, devices=len(devices), platform=devices[0].platform, jax=jax.__version__,
             layers=args.layers, tokens_equal_cpu=same, plan_param_bytes=plan.params,
             held_param_bytes=held, place_s=round(place_s, 2), decode_ms=round(step * 1e3, 3),
             bound_ms=round(bound * 1e3, 3), efficiency=round(bound / step, 3))
  lines = [f'E2B-shaped ({args.layers} layers, float32) on a mesh of {len(devices)} x {kind} '
           f'({devices[0].platform}), jax {jax.__version__}; greedy, {args.new} new tokens',
           '', '| tokens == CPU run | plan params/device | held params/device | '
           'decode ms/token (batch 1) | bound ms | efficiency |', '|---|---|---|---|---|---|',
           f'| {same} | {plan.params / 2**20:.0f} MiB | {held / 2**20:.0f} MiB | '
           f'{step * 1e3:.2f} | {bound * 1e3:.2f} | {bound / step:.0%} |', '', json.dumps(res)]
  print('\n'.join(lines))
  if os.environ.get('OUT'):
    with open(os.path.join(os.environ['OUT'], 'gpu_sharded.txt'), 'w') as f:
      f.write('\n'.join(lines) + '\n')
  if not same:
    raise SystemExit('the mesh run\'s tokens differ from the CPU run\'s')


if __name__ == '__main__':
  main()
