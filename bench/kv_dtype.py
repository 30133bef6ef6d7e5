"""Would a bfloat16 KV cache (half the bytes) cost decode speed with int8 weights? The
real Gemma 3 270M, int8 weights (the default on CPU), greedy, batch 1: decode tok/s with
the cache in float32 (gemma4 today: the compute dtype) and in bfloat16, at cache_length
4096 and 32768. The cache dtype is switched through gemma4.quant.compute_dtype, which
the sampler asks when it makes a cache. Decode = (t(65 new) - t(1 new)) / 64, warm, the
best of 2 one-token calls; the dtypes alternate, 3 rounds; the greedy texts are
compared.

Not a test: `.venv/bin/python bench/kv_dtype.py`; output kept in bench/kv_dtype.txt.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import gemma4
from gemma4 import quant

PROMPT = 'The best inventions of the 19th century were'
ROUNDS = 3


def main():
  ck = gemma4.load_default(progress=False)
  compute_dtype = quant.compute_dtype
  print(f'JAX {jax.__version__} on {jax.default_backend()}, weights {ck.weights}, '
        f'{ROUNDS} rounds, decode tok/s: median (min-max)\n')
  print('| cache_length | float32 cache | bfloat16 cache | bf16 / f32 | same greedy text |')
  print('|---|---|---|---|---|')
  for cache in (4096, 32768):
    s = gemma4.Gemma4Sampler(model=ck.model, params=ck.params, tokenizer=ck.tokenizer,
                             sampling=gemma4.sampling.Greedy(), cache_length=cache,
                             max_out_length=65, pad_length=(16,))

    def run(dtype, n):
      quant.compute_dtype = lambda params: jnp.dtype(dtype)
      try:
        t = time.perf_counter()
        out = s.sample(PROMPT, max_new_tokens=n, return_state=True)
        return time.perf_counter() - t, out.text
      finally:
        quant.compute_dtype = compute_dtype

    for dtype in ('float32', 'bfloat16'):  # compile both
      run(dtype, 65), run(dtype, 1)
    tps, text = {'float32': [], 'bfloat16': []}, {}
    for _ in range(ROUNDS):
      for dtype in tps:
        t1 = min(run(dtype, 1)[0] for _ in range(2))
        tn, text[dtype] = run(dtype, 65)
        tps[dtype].append(64 / (tn - t1))
    med = {d: float(np.median(v)) for d, v in tps.items()}
    cell = lambda d: f'{med[d]:.1f} ({min(tps[d]):.1f}-{max(tps[d]):.1f})'
    print(f'| {cache} | {cell("float32")} | {cell("bfloat16")} | '
          f'{med["bfloat16"] / med["float32"]:.2f}x | {text["float32"] == text["bfloat16"]} |',
          flush=True)


if __name__ == '__main__':
  main()
