"""Why gemma4's projections keep the official weight layouts: one decode step of the
default model (Gemma 3 270M, batch 1, cache of 256) with gemma4's layout-keeping
helpers (gemma4.layers: rows_dot, head_proj, heads_out, gated_mlp) against the same
decoder written with plain einsums over the official layouts, which make XLA on CPU copy
(transpose) weights on every call; and the step with bfloat16 parameters.

Not a test: run `.venv/bin/python bench/decode_layouts.py`; the table is kept in
bench/decode_layouts.txt.
"""

import time

import jax
import jax.numpy as jnp

import gemma4
from gemma4 import transformer

PLAIN = {
    'head_proj': lambda x, w: jnp.einsum('BTD,NDH->BTNH', x, w),
    'heads_out': lambda x, w: jnp.einsum('BTNH,NHD->BTD', x, w),
    'rows_dot': lambda w, x, preferred_element_type=None: jnp.einsum(
        '...D,OD->...O', x, w, preferred_element_type=preferred_element_type),
    'gated_mlp': lambda x, g, l: jnp.einsum(
        '...F,FD->...D', jax.nn.gelu(jnp.einsum('...D,FD->...F', x, g[0]), approximate=True)
        * jnp.einsum('...D,FD->...F', x, g[1]), l),
}


def step_ms(ckpt, dtype, repeats=20):
  jax.clear_caches()
  params = jax.tree.map(lambda x: x.astype(dtype), ckpt.params)
  cfg = ckpt.model.config
  f = jax.jit(lambda p, t, c: transformer.forward(p, cfg, t, cache=c, last_only=True))
  _, cache = f(params, jnp.asarray([[2, 818]]), ckpt.model.init_cache(1, 256, dtype))
  token = jnp.asarray([[818]])
  f(params, token, cache)[0].block_until_ready()
  t0 = time.perf_counter()
  for _ in range(repeats):
    f(params, token, cache)[0].block_until_ready()
  return (time.perf_counter() - t0) / repeats * 1000


def main():
  ckpt = gemma4.load_default(progress=False)
  kept = step_ms(ckpt, jnp.float32)
  saved = {k: getattr(transformer, k) for k in PLAIN}
  for k, v in PLAIN.items():
    setattr(transformer, k, v)
  try:
    plain = step_ms(ckpt, jnp.float32)
  finally:
    for k, v in saved.items():
      setattr(transformer, k, v)
  bf16 = step_ms(ckpt, jnp.bfloat16, repeats=5)
  print(f'Gemma 3 270M decode step, batch 1, cache 256, JAX {jax.__version__} on '
        f'{jax.devices()[0].platform}\n')
  print('| decoder | params | ms per step | tokens/s |')
  print('|---|---|---|---|')
  for name, dt, ms in (('gemma4 (layouts kept)', 'float32', kept),
                       ('plain einsums (weights transposed per call)', 'float32', plain),
                       ('gemma4 (layouts kept)', 'bfloat16', bf16)):
    print(f'| {name} | {dt} | {ms:.1f} | {1000 / ms:.1f} |')
  print(f'\nlayout-keeping speed-up: {plain / kept:.2f}x; bfloat16 is {bf16 / kept:.1f}x slower '
        'than float32 here (XLA CPU emulates bf16 dots)')


if __name__ == '__main__':
  main()
