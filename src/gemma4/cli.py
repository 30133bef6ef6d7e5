"""The `gemma4` command: a thin terminal front over the public API.

For now it greedy-decodes a few tokens from a small random model and reports the time
of each stage; real checkpoints and text arrive with the sampler and loader work.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import models
from gemma4.config import PRESETS
from gemma4.transformer import forward


def greedy(model: models.Model, params, prompt: np.ndarray, steps: int,
           cache_length: int) -> tuple[list[int], dict]:
  """Greedy ids after `prompt` [T]; also the seconds spent compiling and running."""
  cfg = model.config
  step = jax.jit(lambda p, t, c: forward(p, cfg, t, cache=c, last_only=True), donate_argnums=2)
  cache = model.init_cache(1, cache_length)
  out, times, token_ids = [], {}, jnp.asarray(prompt[None])
  for i in range(steps):
    t0 = time.perf_counter()
    logits, cache = step(params, token_ids, cache)
    out.append(int(jnp.argmax(logits[0])))
    token_ids = jnp.asarray([[out[-1]]], jnp.int32)
    elapsed = time.perf_counter() - t0
    if i == 0:
      times['prefill_first_call_s'] = elapsed
    elif i == 1:
      times['decode_first_call_s'] = elapsed
    else:
      times['decode_s'] = times.get('decode_s', 0.0) + elapsed
  if steps > 2:
    times['decode_tokens_per_s'] = (steps - 2) / times['decode_s']
  return out, times


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog='gemma4',
      description='Greedy-decode a few tokens from a tiny random Gemma 4 model '
                  '(a smoke run of the decoder; real checkpoints come later).')
  parser.add_argument('--preset', default='e2b',
                      help=f'preset the tiny model derives from: {", ".join(PRESETS)}')
  parser.add_argument('--tokens', type=int, default=8, help='new tokens to decode (>= 1)')
  parser.add_argument('--seed', type=int, default=0, help='seed of the random params')
  args = parser.parse_args(argv)
  if args.tokens < 1:
    parser.error(f'--tokens must be >= 1, got {args.tokens}')
  try:
    model = models.tiny(args.preset)
  except ValueError as e:
    parser.error(str(e))
  params = model.init(args.seed)
  prompt = np.array([2, 818, 5279, 529, 7001, 563], np.int32)  # any ids do: random weights
  print(f'model: {model.name} ({model.config.num_layers} layers, width '
        f'{model.config.embed_dim}, random params seed {args.seed}), jax {jax.__version__} '
        f'on {jax.devices()[0].platform}')
  ids, times = greedy(model, params, prompt, args.tokens, cache_length=64)
  print('prompt ids:   ', prompt.tolist())
  print('greedy ids:   ', ids)
  print('timings:      ', ', '.join(f'{k} {v:.3f}' for k, v in times.items()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
