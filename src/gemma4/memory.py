"""What a model needs per device on a mesh, before anything is allocated: parameters,
KV cache and the activations of one prefill chunk, in bytes.

Parameters and cache are exact: each buffer's shard shape under the rules
(`gemma4.sharding`), from abstract shapes, summed (tests/multidevice checks them
against the shards a real sampler holds). Activations are an estimate of the
largest buffers live at once while one chunk of `chunk` prompt tokens runs through a
layer (see `activation_bytes`); XLA's own count for the compiled chunk is checked to
stay below it in tests/multidevice.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding

from gemma4 import attention, quant
from gemma4.config import GLOBAL
from gemma4.kv_cache import init_cache, slots
from gemma4.models import Model
from gemma4.sharding import Sharder

DTYPES = ('bfloat16', 'float32')


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
  """Bytes per device (the most any one device holds)."""

  params: int
  kv_cache: int
  activations: int

  @property
  def total(self) -> int:
    return self.params + self.kv_cache + self.activations


def _per_device(tree, shardings) -> int:
  """The largest sum over devices of each leaf's shard bytes (every device holds the
  same shard shapes under these rules: splits are even, the rest replicated)."""
  total = 0
  for leaf, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    total += int(np.prod(s.shard_shape(tuple(leaf.shape)))) * jnp.dtype(leaf.dtype).itemsize
  return total


def param_shapes(model: Model, dtype: str = 'bfloat16', quantize: str | None = None) -> dict:
  """The parameter tree's ShapeDtypeStructs as `load_checkpoint(dtype=, quantize=)`
  gives it: float leaves in `dtype`, with quantize='int8' the decoder weights as
  QTensors of ShapeDtypeStructs."""
  if dtype not in DTYPES:
    raise ValueError(f'dtype={dtype!r} is not a parameter dtype (expected one of '
                     f'{", ".join(map(repr, DTYPES))})')
  if quantize is not None:
    quant.check_format(quantize)
  shapes = dataclasses.replace(model, dtype=jnp.dtype(dtype)).eval_shape()
  return quant.abstract_params(shapes) if quantize else shapes


def plan(model: Model, mesh: Mesh | AbstractMesh, *, dtype: str = 'bfloat16',
         quantize: str | None = None, cache_length: int = 4096, batch_size: int = 1,
         chunk: int = 1024, rules=None) -> MemoryPlan:
  """Bytes per device of `model`'s parameters (float `dtype`, decoder weights in
  `quantize` format when given), a KV cache of `batch_size` rows of `cache_length`
  tokens, and the activations of a prefill chunk of `chunk` tokens per row (the
  sampler's PREFILL_CHUNK), on `mesh` under `rules`. The cache and activations take
  the sampler's compute dtype: float32 with int8 weights."""
  for name, value in (('cache_length', cache_length), ('batch_size', batch_size),
                      ('chunk', chunk)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f'{name} must be an int >= 1, got {value!r}')
  sharder = Sharder.of(mesh, rules)
  shapes = param_shapes(model, dtype, quantize)
  shardings = sharder.plan(model.param_specs(), shapes).shardings
  params = _per_device(shapes, shardings)
  widest = 0  # the largest int8 weight shard, as float32
  for leaf, s in zip(jax.tree.leaves(shapes, is_leaf=quant.is_quantized),
                     jax.tree.leaves(shardings, is_leaf=quant.is_quantized)):
    if quant.is_quantized(leaf):
      widest = max(widest, int(np.prod(s.values.shard_shape(leaf.values.shape))) * 4)
  cache_dtype = jnp.float32 if quantize else jnp.dtype(dtype)
  cache = jax.eval_shape(functools.partial(init_cache, model.config, batch_size, cache_length,
                                           cache_dtype))
  kv = _per_device(cache, sharder.cache_shardings(cache))
  acts = activation_bytes(model, sharder, batch_size, min(chunk, cache_length), cache_length,
                          widest, jnp.dtype(dtype).itemsize)
  return MemoryPlan(params, kv, acts)


def activation_bytes(model: Model, sharder: Sharder, batch_size: int, chunk: int,
                     cache_length: int, dequantized: int = 0, weight_bytes: int = 2) -> int:
  """An estimate of the activations live at once in one layer for a chunk of T tokens:
  the residual stream and its normed copies (4 x [B, T, D] float32), the queries, keys,
  values and attention output ([B, T, N + 2K, H] plus [B, T, N, H]), the attention
  logits and their exponentials over the most keys one step reads (2 x [B, T, N, S]
  float32, S = the new tokens plus a local window, or plus one block of the global
  cache; attention.BLOCK), the MLP's gate and up projections and their product
  (3 x [B, T, F] float32; for MoE also the P = B T k token-expert pairs' inputs,
  outputs and hidden units, the [P, E, D] float32 input XLA CPU's ragged_dot masks per
  expert, and a copy of one layer's experts, float32 with int8 weights), and the
  logits of the last token [B, V] float32. Split axes (batch, heads, mlp, vocab)
  count per device as the rules split them. `dequantized`: the bytes of the largest
  int8 weight shard as float32 (0 for float weights), a copy a one-row product may make
  where its backend does not convert the int8 weight inside the product loop (XLA CPU
  does; products of several rows multiply int8 by int8 and make none: an upper bound).
  `weight_bytes`: bytes per float weight."""
  cfg = model.config
  table, shape = sharder.table, dict(sharder.mesh.shape)

  def split(name: str, size: int) -> int:
    axis = table.get(name)
    n = shape.get(axis, 1) if axis else 1
    return size // n if size % n == 0 else size

  b, t, f32 = split('batch', batch_size), chunk, 4
  n = split('heads', cfg.num_heads)
  worst = 0
  for kind in set(cfg.layer_types):
    k, h = split('kv_heads', cfg.kv_heads(kind)), cfg.key_size(kind)
    seen = slots(cfg, kind, cache_length)
    if kind == GLOBAL:
      seen = min(seen, attention.BLOCK)
    attn = b * t * (n + 2 * k) * h * f32 + b * t * n * h * f32 + 2 * b * t * n * (t + seen) * f32
    worst = max(worst, attn)
  width = max(cfg.mlp_hidden(i) for i in range(cfg.num_layers))
  mlp = 3 * b * t * split('mlp', width) * f32
  if cfg.is_moe:  # token-expert pairs gathered, through the experts and scattered back
    pairs = b * t * cfg.top_k_experts
    mlp += pairs * (3 * cfg.embed_dim + 3 * cfg.expert_dim) * f32
    experts = split('experts', cfg.num_experts)
    # jax.lax.ragged_dot, as XLA CPU runs it, masks its input once per expert: [P, E, D]
    mlp += pairs * experts * max(cfg.embed_dim, cfg.expert_dim) * f32
    # one layer's gate and up experts transposed (int8: dequantized to float32 first)
    mlp += experts * 3 * cfg.expert_dim * cfg.embed_dim * (f32 if dequantized else weight_bytes)
  stream = (6 if cfg.is_moe else 4) * b * t * cfg.embed_dim * f32  # MoE: both branches' outputs
  logits = b * split('vocab', cfg.vocab_size) * f32
  return stream + worst + mlp + logits + dequantized


def table(presets=('31B', '26B_A4B'), devices=(8, 16), lengths=(4096, 32768, 131072)) -> str:
  """The README's memory table (markdown): GiB per device for each preset on a mesh of
  `devices` tensor-parallel devices (default rules), bf16 and int8 weights, batch 1,
  KV cache at each of `lengths`, activations of a 1024-token prefill chunk at the
  longest."""
  from gemma4.models import get_model
  gib = 2.0 ** 30
  head = (['model', 'devices', 'weights', 'params'] + [f'KV {n // 1024}k' for n in lengths]
          + [f'activations ({lengths[-1] // 1024}k)', f'total ({lengths[-1] // 1024}k)'])
  rows = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for name in presets:
    model = get_model(name)
    for n in devices:
      mesh = AbstractMesh((1, 1, n), ('data', 'expert', 'tensor'))
      for quantize in (None, 'int8'):
        plans = [plan(model, mesh, quantize=quantize, cache_length=length) for length in lengths]
        cells = [model.name, str(n), quantize or 'bfloat16', f'{plans[0].params / gib:.2f}']
        cells += [f'{p.kv_cache / gib:.2f}' for p in plans]
        cells += [f'{plans[-1].activations / gib:.2f}', f'{plans[-1].total / gib:.2f}']
        rows.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(rows)
