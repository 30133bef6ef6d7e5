"""The E2B-shaped model of the speed benchmarks (not a benchmark itself): the Gemma 4
E2B config cut to its first `layers` layers with KV sharing off (or, with all 35, E2B
itself), random weights drawn as gemma4.params.init_params draws them, rounded to
bfloat16 as a checkpoint holds them, and converted leaf by leaf as a load of a bf16
checkpoint does (int8: quantized; the two large tables in row blocks, as a load reads
them). The tokenizer is tests/tokenizer_util.py's 262144-piece model, which
bench/official_e2b.py gives the official sampler too.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_dtypes
import numpy as np

import gemma4
from gemma4 import quant
from gemma4.params import flatten, unflatten

TOKENIZER = '/tmp/gemma4_bench_tok.model'


def model(layers: int = 10, dtype=jnp.bfloat16) -> gemma4.models.Model:
  """E2B's first `layers` layers, KV sharing and the wider MLP of shared layers off; with
  all of its layers, E2B itself."""
  base = gemma4.models.Gemma4_E2B(dtype=dtype)
  if layers == base.config.num_layers:
    return dataclasses.replace(base, name='e2b')
  cfg = dataclasses.replace(base.config, layer_types=base.config.layer_types[:layers],
                            num_kv_shared_layers=0, kv_shared_hidden_dim=None)
  return dataclasses.replace(base, config=cfg, name=f'e2b_{layers}_layers')


def build(layers: int = 10, fmt: str = 'int8'):
  """(model, params, tokenizer); fmt: 'int8', 'float32' or 'bfloat16'."""
  m = model(layers, jnp.float32 if fmt == 'float32' else jnp.bfloat16)
  rng = np.random.default_rng(0)
  flat = {}
  for path, s in flatten(m.param_specs()).items():
    layout = quant.layout_for(path)
    if s.init == 'embed' and fmt == 'int8':  # the big tables in row blocks
      rows, k = s.shape[0], int(np.prod(s.shape[layout.n_out:]))
      values = np.empty((rows, *s.shape[1:layout.n_out], k), np.int8)
      scale = np.empty(s.shape[:layout.n_out], np.float32)
      for a in range(0, rows, 8192):
        b = min(rows, a + 8192)
        x = (0.25 * rng.standard_normal((b - a, *s.shape[1:]), dtype=np.float32)
             ).astype(ml_dtypes.bfloat16)
        values[a:b], scale[a:b] = quant.quantize_rows(
            x.reshape(b - a, *s.shape[1:layout.n_out], k))
      flat[path] = quant.from_rows(values, scale, s.shape, layout)
      del values, scale
      continue
    if s.init in ('ones', 'zeros'):
      x = float(s.init == 'ones') + 0.1 * rng.standard_normal(s.shape)
    elif s.init == 'embed':
      x = 0.25 * rng.standard_normal(s.shape, dtype=np.float32)
    else:
      fan_in = int(np.prod([s.shape[a] for a in s.fan_in_axes]))
      x = rng.standard_normal(s.shape, dtype=np.float32) * fan_in ** -0.5
    x = x.astype(ml_dtypes.bfloat16)  # the checkpoint's bf16 values
    if fmt == 'int8' and layout is not None:
      flat[path] = quant.quantize(x, layout)
    else:
      flat[path] = jnp.asarray(x, m.dtype)
    del x
  params = unflatten(flat)
  from tests import tokenizer_util  # the tokenizer official_e2b.py uses
  tok = gemma4.Gemma4Tokenizer(str(tokenizer_util.build(TOKENIZER)))
  return m, params, tok
