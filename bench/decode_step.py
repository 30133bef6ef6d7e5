"""Two choices inside gemma4's decode step, each timed against the form it replaced, on
the default model (Gemma 3 270M, int8): `sampling.argmax` against `jnp.argmax` over
its 262144-token vocabulary, and `quant.dot` computing a one-row input before the
product (its conditional) against letting XLA fuse the input's producer into the
product (the conditional replaced by the identity). Decode: (t(65 new) - t(1 new)) / 64,
best of 3, greedy, cache 4096; the two forms alternate over 3 rounds (median and range).
Not a test: run `.venv/bin/python bench/decode_step.py`; output kept in
bench/decode_step.txt.
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import gemma4
from gemma4 import quant, sampling

PROMPT = 'The three most important inventions of the twentieth century are'


def ms(f, *a, n=50):
  jax.block_until_ready(f(*a))
  ts = []
  for _ in range(n):
    t = time.perf_counter()
    jax.block_until_ready(f(*a))
    ts.append(time.perf_counter() - t)
  return float(np.median(ts)) * 1e3


def decode_ms(model, params, tok):
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                           sampling=gemma4.sampling.Greedy(), cache_length=4096,
                           max_out_length=65, pad_length=(16,))
  def t(n):
    t0 = time.perf_counter()
    s.sample(PROMPT, max_new_tokens=n)
    return time.perf_counter() - t0
  t(1), t(65)
  return (min(t(65) for _ in range(3)) - min(t(1) for _ in range(3))) / 64 * 1e3


def main():
  print(f'JAX {jax.__version__} on {jax.devices()[0].platform}\n')
  logits = jnp.asarray(np.random.default_rng(0).standard_normal((1, 262144), np.float32))
  print('| greedy pick over 262144 logits | ms |\n|---|---|')
  print(f'| jnp.argmax | {ms(jax.jit(lambda x: jnp.argmax(x, -1)), logits):.3f} |')
  print(f'| gemma4.sampling.argmax | {ms(jax.jit(sampling.argmax), logits):.3f} |\n')

  model, params, tok = gemma4.load_default(progress=False)
  kept = quant._materialized
  runs = {'input computed first (quant.dot as it is)': [], 'producer fused (no conditional)': []}
  for _ in range(3):
    for name in runs:
      quant._materialized = kept if name.startswith('input') else (lambda xs: xs)
      jax.clear_caches()
      runs[name].append(decode_ms(model, params, tok))
  quant._materialized = kept
  print('| 270M int8 decode | ms per token, median (min-max) |\n|---|---|')
  for name, r in runs.items():
    print(f'| {name} | {statistics.median(r):.1f} ({min(r):.1f}-{max(r):.1f}) |')


if __name__ == '__main__':
  main()
