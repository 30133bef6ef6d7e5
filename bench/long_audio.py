"""Long audio stays bounded: peak RSS of one `Gemma4Sampler.sample` call on 1, 5 and 10
minutes of audio, with the prompt prefilled in chunks (PREFILL_CHUNK tokens) and, for
comparison, in one pass (the code before chunking; 10 minutes that way exhausted the
24 GiB of this machine). Also the resampling of 10 minutes of 44.1 kHz audio.

Model: E2B-shaped with random weights (bfloat16 decoder, float32 encoders as the
official library keeps them): the E2B width, per-layer embeddings and full-size audio
encoder (12 conformer layers of width 1024), the decoder cut to its first 5 layers (4
local, 1 global: the global layer holds the full-length cache). cache_length is the
prompt plus 64. One process per measurement (peak RSS is per process), greedy, one new
token. Not a test:
  .venv/bin/python bench/long_audio.py            # every row; writes bench/long_audio.txt
  .venv/bin/python bench/long_audio.py --one 10 1024   # one run: minutes, chunk (0: one pass)
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time

RUNS = [(1, 1024), (5, 0), (5, 1024), (10, 1024)]  # (minutes, chunk; 0 = one pass)


def one(minutes: int, chunk: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  import gemma4
  from gemma4 import audio
  from gemma4 import sampler as gsampler
  from gemma4.params import flatten, unflatten
  from tests import tokenizer_util

  base = gemma4.models.get_model('e2b', text_only=False)
  cfg = dataclasses.replace(base.config, layer_types=base.config.layer_types[:5],
                            num_kv_shared_layers=0, kv_shared_hidden_dim=None)
  model = dataclasses.replace(base, config=cfg, name='e2b_5_layers')
  specs = flatten(model.param_specs())
  key = jax.random.key(0)
  flat = {}
  for i, (path, spec) in enumerate(specs.items()):  # random, cheap: one leaf at a time
    dtype = jnp.float32 if gemma4.params.is_encoder(path) else jnp.bfloat16
    fan_in = int(np.prod([spec.shape[a] for a in spec.fan_in_axes])) if spec.fan_in_axes else 1
    scale = {'normal': fan_in ** -0.5, 'embed': 0.25}.get(spec.init, 0.0)
    x = jax.random.normal(jax.random.fold_in(key, i), spec.shape, dtype) * jnp.asarray(scale, dtype)
    flat[path] = x + jnp.asarray(1.0 if spec.init == 'ones' else 0.0, dtype)
    if spec.init in ('clip_min', 'clip_max'):
      flat[path] = jnp.full(spec.shape, -jnp.inf if spec.init == 'clip_min' else jnp.inf, dtype)
  params = unflatten(flat)
  param_bytes = sum(x.nbytes for x in flat.values())
  tok = gemma4.Gemma4Tokenizer(tokenizer_util.build(f'/tmp/long_audio_tok_{os.getpid()}.model'))
  clip = (np.random.default_rng(minutes).standard_normal(minutes * 60 * 16000) * 0.1).astype(np.float32)
  n_soft = sum(c for c in audio.check_clip(clip).soft_token_counts)
  prompt = '<|turn>user\nTranscribe: <|audio|><turn|>\n<|turn>model\n'
  cache_length = n_soft + 64 + 2 * len(audio.segments(clip.shape[0]))
  gsampler.PREFILL_CHUNK = chunk if chunk else 10 ** 9
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, cache_length=cache_length,
                           max_out_length=1, pad_length=None)
  jax.block_until_ready(params)
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
  with open('/proc/self/status') as f:
    resident = next(int(l.split()[1]) for l in f if l.startswith('VmRSS')) / 2 ** 20
  t0 = time.perf_counter()
  out = s.sample(prompt, audio=[clip], max_new_tokens=1, rng=0, return_state=True)
  jax.block_until_ready(out.state.cache)
  seconds = time.perf_counter() - t0
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
  return dict(minutes=minutes, chunk=chunk, soft_tokens=n_soft, cache_length=cache_length,
              seconds=round(seconds, 1), peak_rss_gib=round(peak, 2),
              peak_before_call_gib=round(before, 2), rss_before_call_gib=round(resident, 2),
              param_gib=round(param_bytes / 2 ** 30, 2),
              cache_gib=round(out.state.cache.nbytes() / 2 ** 30, 3),
              token=int(out.tokens[0]))


def resample_row() -> str:
  import numpy as np
  from gemma4 import audio
  x = (np.random.default_rng(0).standard_normal(10 * 60 * 44100) * 0.1).astype(np.float32)
  times = []
  for _ in range(3):
    t0 = time.perf_counter()
    y = audio.resample(x, 44100)
    times.append(time.perf_counter() - t0)
  return (f'Resampling 10 min of 44.1 kHz audio to 16 kHz ({y.shape[0]} samples): median '
          f'{sorted(times)[1]:.2f} s of 3 (spread {min(times):.2f}-{max(times):.2f} s); the '
          'direct windowed-sinc form it replaced took 42 s per minute (issue 11).')


def main() -> None:
  if len(sys.argv) == 4 and sys.argv[1] == '--one':
    print(json.dumps(one(int(sys.argv[2]), int(sys.argv[3]))))
    return
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(root, 'src'), root]))
  rows = []
  for minutes, chunk in RUNS:
    p = subprocess.run([sys.executable, __file__, '--one', str(minutes), str(chunk)],
                       capture_output=True, text=True, env=env, timeout=3600)
    if p.returncode != 0:
      why = p.stderr.strip().splitlines()[-1:] or [f'exit status {p.returncode}' + (
          ' (killed: out of memory)' if p.returncode == -9 else '')]
      rows.append(dict(minutes=minutes, chunk=chunk, error=why[0]))
    else:
      rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(rows[-1], flush=True)
  import jax
  lines = [f'{platform.node()}: {os.cpu_count()} cores, {platform.python_version()}, '
           f'jax {jax.__version__}, {time.strftime("%Y-%m-%d")}',
           'E2B-shaped (E2B width, first 5 layers, full audio encoder), random weights, '
           'one sample() call, greedy, 1 new token; one process per row',
           '',
           '| audio | soft tokens | cache_length | prefill | peak RSS | RSS before the call | params | KV cache | call time |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    how = f'chunks of {r["chunk"]}' if r['chunk'] else 'one pass'
    if 'error' in r:
      lines.append(f'| {r["minutes"]} min | | | {how} | failed: {r["error"]} | | | | |')
      continue
    lines.append(f'| {r["minutes"]} min | {r["soft_tokens"]} | {r["cache_length"]} | {how} | '
                 f'{r["peak_rss_gib"]:.2f} GiB | {r["rss_before_call_gib"]:.2f} GiB | '
                 f'{r["param_gib"]:.2f} GiB | '
                 f'{r["cache_gib"] * 1024:.0f} MiB | {r["seconds"]:.0f} s |')
  lines += ['', resample_row()]
  text = '\n'.join(lines) + '\n'
  print(text)
  with open(os.path.join(root, 'bench', 'long_audio.txt'), 'w') as f:
    f.write(text)


if __name__ == '__main__':
  main()
