"""The E2B vision encoder (full size: 16 layers of width 768, random weights, float32)
on one 1024x768 image at each budget: soft tokens, first call (compile) and warm time,
and the peak memory the encoder call adds, for gemma4 beside the official gemma==4.0.1
VisionEncoder (with `output_length` = budget, where it pools 3 x 3 like gemma4). Each
(engine, budget) runs in a fresh process. Run in the oracle env (it has both):
  PYTHONPATH=src:. ~/.cache/gemma4/oracle-py312/bin/python bench/vision_encoder.py
Not a test: prints a table."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np

BUDGETS = (70, 140, 280, 560, 1120)


def rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(engine: str, budget: int) -> dict:
  import jax
  import jax.numpy as jnp
  import gemma4
  from gemma4 import images, vision
  image = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
  t0 = time.perf_counter()
  p = images.preprocess(image, budget)
  prep = time.perf_counter() - t0
  v = gemma4.get_preset('e2b').vision
  cfg = gemma4.get_preset('e2b')
  params = gemma4.init_params(cfg, 0, specs={'vision_encoder': vision.param_specs(v)})['vision_encoder']
  params = jax.tree_util.tree_map_with_path(  # clip bounds that bite a little
      lambda k, x: jnp.full(x.shape, (-1.0 if 'min' in jax.tree_util.keystr(k) else 1.0) * 8.0)
      if 'clip_' in jax.tree_util.keystr(k) else x, params)
  patches, pos = jnp.asarray(p.patches[None]), jnp.asarray(p.positions[None])
  if engine == 'gemma4':
    run = jax.jit(lambda prm, x, q: vision.encode(prm, v, x, q)[0])
  else:
    from gemma.gm.nn.gemma4.vision import _encoder
    enc = _encoder.VisionEncoder(d_model=v.d_model, num_layers=v.num_layers, num_heads=v.num_heads,
                                 ffw_hidden=v.ffw_hidden, pos_emb_shape_yx=v.pos_emb_shape_yx,
                                 output_length=budget, use_clipped_linears=True)
    run = jax.jit(lambda prm, x, q: enc.apply({'params': prm}, x, q))
  jax.block_until_ready(params)
  base = rss_mib()
  t0 = time.perf_counter()
  jax.block_until_ready(run(params, patches, pos))
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(run(params, patches, pos))
  warm = time.perf_counter() - t0
  return dict(engine=engine, budget=budget, size=p.size, soft=p.num_soft_tokens,
              prep=prep, first=first, warm=warm, peak_added=rss_mib() - base)


def main():
  if len(sys.argv) == 3:
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
    return
  rows = {}
  for budget in BUDGETS:
    for engine in ('gemma4', 'official'):
      out = subprocess.run([sys.executable, __file__, engine, str(budget)], capture_output=True,
                           text=True)
      lines = [l for l in out.stdout.splitlines() if l.startswith('{')]
      rows[engine, budget] = json.loads(lines[-1]) if lines else {'error': out.stderr[-300:]}
      print(engine, budget, rows[engine, budget], file=sys.stderr, flush=True)
  print('E2B vision encoder, float32, one 1024x768 image, 2-core CPU')
  print('| budget | resized | soft tokens | gemma4 first / warm | official first / warm | '
        'gemma4 / official peak added | warm ratio |')
  print('|---|---|---|---|---|---|---|')
  for b in BUDGETS:
    g, o = rows['gemma4', b], rows['official', b]
    if 'error' in g or 'error' in o:
      print(f'| {b} | failed: {g.get("error", "")} {o.get("error", "")} |')
      continue
    print(f'| {b} | {g["size"][0]}x{g["size"][1]} | {g["soft"]} | {g["first"]:.2f} / {g["warm"]:.2f} s'
          f' | {o["first"]:.2f} / {o["warm"]:.2f} s | {g["peak_added"]:,.0f} / '
          f'{o["peak_added"]:,.0f} MiB | {o["warm"] / g["warm"]:.2f}x |', flush=True)


if __name__ == '__main__':
  main()
