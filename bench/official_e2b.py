"""Speed and memory of the OFFICIAL gm.text.Gemma4Sampler (gemma==4.0.1) on an
E2B-shaped model: the gm.nn.Gemma4_E2B config cut to its first 10 layers (their
attention types), KV-cache sharing and the shared-layer wide MLP off (with `--layers 35`:
the whole E2B config, KV sharing and all), random bfloat16
weights built by gemma4 (`Model.init`, NumPy RNG; the official tree, so the same
weights can be given to gemma4.Gemma4Sampler), the 262144-piece test tokenizer of
tests/tokenizer_util.py, greedy, CPU. Not a test: prints ONE JSON line at the end.

Run in the oracle env (it has the official library):
  PYTHONPATH=src ~/.cache/gemma4/oracle-py312/bin/python bench/official_e2b.py
Smoke test: add `--layers 2 --new 4`.

Keys: load_s (build params), peak_mib (VmHWM), param_bytes, first_call_s (first
sample() of the ~100-token prompt with max_new_tokens=1, compile included), fixed_s
(warm 1-new-token call on the ~16-token prompt), prefill100_tps / prefill1000_tps
(prompt tokens / warm 1-new-token call time), decode_tps ((t(N+1 new) - t(1 new)) /
(steps difference), short prompt, warm), n_short / n_100 / n_1000 (prompt tokens, BOS
included), and the sampler settings. pad_length is set to the exact prompt lengths, so
no prefill is padded; each length compiles its own prefill, warmed by one untimed call.
Decode attends over the whole cache_length each step (official sampler loop), so
decode_tps depends on --cache-length. The end tokens (EOS, <turn|>, <|tool_response>)
are forbidden so that every call runs its max_new_tokens steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.tokenizer_util

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from gemma import gm  # noqa: E402

from tests import tokenizer_util  # noqa: E402

import e2b_shaped  # noqa: E402  (bench/: the gemma4 side of the model)

WORDS = ' '.join(tokenizer_util.CORPUS.split('\n')).split()
END_TOKENS = [1, 106, 50]  # EOS, END_OF_TURN, BEGIN_OF_TOOL_RESPONSE: ended the loop


def log(msg):
  print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def vm_hwm_mib() -> float:
  for line in pathlib.Path('/proc/self/status').read_text().splitlines():
    if line.startswith('VmHWM:'):
      return int(line.split()[1]) / 1024
  return float('nan')


def prompt_of(tok, target: int) -> tuple[str, int]:
  """Plain text whose encoding (BOS included) is the longest not above `target`."""
  best = None
  for k in range(1, 10 * target):
    text = ' '.join(WORDS[i % len(WORDS)] for i in range(k))
    n = len(tok.encode(text, add_bos=True))
    if n > target:
      break
    best = (text, n)
  return best


def official_config(n_layers: int):
  base = gm.nn.Gemma4_E2B.config
  if n_layers == base.num_layers:  # full E2B: its KV sharing and wide shared-layer MLP kept
    return base
  return dataclasses.replace(base, attention_types=tuple(base.attention_types[:n_layers]),
                             kv_cache_sharing_config=None, override_kv_shared_ffw_hidden=None)


def check_same_tree(official_model, params):
  """The official init's tree (abstract: nothing allocated) == gemma4's, name and shape."""
  abstract = jax.eval_shape(
      lambda: official_model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))['params']
  flat = lambda t: {jax.tree_util.keystr(k): (tuple(v.shape), jnp.dtype(v.dtype).name)
                    for k, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  a, b = flat(abstract), flat(params)
  if a != b:
    diff = sorted(set(a.items()) ^ set(b.items()))[:12]
    raise SystemExit(f'official and gemma4 param trees differ: {diff}')
  return len(a)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--layers', type=int, default=10)
  ap.add_argument('--new', type=int, default=32, help='N: decode tokens timed')
  ap.add_argument('--cache-length', type=int, default=1088)
  ap.add_argument('--max-out-length', type=int, default=64)
  ap.add_argument('--tokenizer', default='/tmp/gemma4_bench_tok.model')
  args = ap.parse_args()
  assert args.new + 1 <= args.max_out_length, '--new + 1 must fit --max-out-length'

  tok_path = tokenizer_util.build(args.tokenizer)
  tok = gm.text.Gemma4Tokenizer(path=str(tok_path))
  (p_short, n_short), (p_100, n_100), (p_1000, n_1000) = (
      prompt_of(tok, t) for t in (16, 100, 1000))
  assert n_1000 + args.max_out_length <= args.cache_length, 'cache_length too small'

  t0 = time.perf_counter()
  model = e2b_shaped.model(args.layers)
  cfg, full = model.config, model.name == 'e2b'
  params = jax.block_until_ready(model.init(0))
  load_s = time.perf_counter() - t0
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  log(f'params built in {load_s:.1f} s, {param_bytes / 2**20:.0f} MiB')

  off_cfg = official_config(args.layers)
  off_model = gm.nn.Gemma4_E2B(config=off_cfg, dtype=jnp.bfloat16)
  assert off_cfg.num_layers == cfg.num_layers == args.layers
  assert [t.name for t in off_cfg.attention_types] == [
      'GLOBAL' if t == 'global' else 'LOCAL_SLIDING' for t in cfg.layer_types]
  n_leaves = check_same_tree(off_model, params)
  log(f'official config: {off_cfg.num_layers} layers, kv sharing '
      f'{off_cfg.kv_cache_sharing_config}; param trees match ({n_leaves} leaves)')

  sampler = gm.text.Gemma4Sampler(
      model=off_model, params=params, tokenizer=tok, forbidden_tokens=END_TOKENS,
      cache_length=args.cache_length, max_out_length=args.max_out_length,
      pad_length=(n_short, n_100, n_1000))

  def call(prompt, n):
    t = time.perf_counter()
    out = sampler.sample(prompt, max_new_tokens=n, rng=0, return_state=True)
    steps = int(out.state.step)  # sample() already pulled the tokens to the host
    dt = time.perf_counter() - t
    log(f'{len(tok.encode(prompt, add_bos=True))} prompt tokens, {n} new: {dt:.2f} s '
        f'({steps} steps)')
    return dt, steps, out.text

  first_call_s, _, _ = call(p_100, 1)           # compiles prefill(100) + the loop
  t100, _, _ = call(p_100, 1)
  call(p_short, 1)                              # compiles prefill(short)
  fixed_s, s1, _ = call(p_short, 1)
  tn, sn, text = call(p_short, args.new + 1)
  call(p_1000, 1)                               # compiles prefill(1000)
  t1000, _, _ = call(p_1000, 1)

  print(json.dumps(dict(
      engine=f'official gemma {_version()} Gemma4Sampler (bfloat16)',
      model=('E2B config (35 layers, KV sharing), random weights' if full else
             f'E2B config, first {args.layers} layers, no KV sharing, random weights'),
      layers=args.layers, load_s=round(load_s, 2), peak_mib=round(vm_hwm_mib(), 1),
      param_bytes=param_bytes, first_call_s=round(first_call_s, 3),
      fixed_s=round(fixed_s, 3), prefill100_tps=round(n_100 / t100, 2),
      prefill1000_tps=round(n_1000 / t1000, 2),
      decode_tps=round((sn - s1) / (tn - fixed_s), 3), decode_steps=sn - s1,
      n_short=n_short, n_100=n_100, n_1000=n_1000, cache_length=args.cache_length,
      max_out_length=args.max_out_length, pad_length=[n_short, n_100, n_1000],
      text=text)))


def _version():
  from importlib import metadata
  try:
    return metadata.version('gemma')
  except metadata.PackageNotFoundError:
    return '?'


if __name__ == '__main__':
  main()
