"""The E2B audio encoder (full size: 12 conformer layers of width 1024, random weights,
float32) on 5 s, 30 s and 60 s clips: soft tokens, first call (compile) and warm time of
gemma4 beside the official gemma==4.0.1 AudioTokenizer, same params, same machine, one
run. Run in the oracle env (it has both):
  PYTHONPATH=src:. ~/.cache/gemma4/oracle-py312/bin/python bench/audio_encoder.py
The official sampler encodes a clip in one call whatever its length and keeps the first
750 tokens; gemma4 encodes clips over 30 s as 30 s segments (batched) and keeps them
all. Not a test: prints a table."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from gemma.gm.nn.gemma4.audio import _model, _modules

import gemma4
from gemma4 import audio, multimodal
from tests.oracle.test_audio_oracle import random_params, to_official


def timed(f):
  t0 = time.perf_counter()
  out = jax.block_until_ready(f())
  return out, time.perf_counter() - t0


def main():
  model = gemma4.models.get_model('e2b', text_only=False)
  cfg = model.config
  flat = random_params(cfg.audio)
  ours = {'audio_encoder': gemma4.params.unflatten(flat),
          'embedder': {'audio_input_projection': {'w': jnp.asarray(
              np.random.default_rng(0).standard_normal((1536, cfg.embed_dim)) / 40, jnp.float32)}}}
  off = _model.AudioTokenizer(config=_modules.ConformerConfig())
  off_params = {'params': to_official(flat)}
  off_apply = jax.jit(off.apply)
  print(f'{jax.devices()[0].device_kind}, E2B audio encoder, float32')
  print('| clip | soft tokens (gemma4) | gemma4 first / warm | official first / warm | ratio (warm) |')
  print('|---|---|---|---|---|')
  for seconds in (5, 30, 60):
    n = seconds * 16000
    clip = (np.random.default_rng(seconds).standard_normal(n) * 0.3).astype(np.float32)
    segs = audio.prepare(clip)
    tokens = sum(s.num_soft_tokens for s in segs)
    run = lambda: multimodal.audio_soft_tokens_for_rows(ours, cfg, [[segs]], tokens)
    _, first = timed(run)
    warm = min(timed(run)[1] for _ in range(2))
    x, ln = jnp.asarray(clip[None]), jnp.asarray([n])
    _, ofirst = timed(lambda: off_apply(off_params, x, ln))
    owarm = min(timed(lambda: off_apply(off_params, x, ln))[1] for _ in range(2))
    print(f'| {seconds} s | {tokens} ({len(segs)} segment{"s" if len(segs) > 1 else ""}) | '
          f'{first:.2f} / {warm:.2f} s | {ofirst:.2f} / {owarm:.2f} s | {owarm / warm:.2f}x |',
          flush=True)


if __name__ == '__main__':
  main()
