"""The KV cache as data: one buffer per unshared layer, sized by the layer's kind.

Local (sliding) layers keep a ring buffer of `min(window, length)` slots, global layers
`length` slots, KV-shared layers none. Each slot remembers the position it holds
(-1: empty), so masks come from positions and a ring buffer needs no bookkeeping.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from gemma4.config import GLOBAL, LOCAL, TransformerConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
  """Per-layer keys and values, slot positions per layer kind, next position per row.

  k[i]: [B, S_i, K_i, H_i] and v[i]: [B, K_i, H_i, S_i] (slots last, the layout
  `attention.attend_parts` reads without a copy) for unshared layer i, None for a
  KV-shared layer.
  pos[kind]: [B, S_kind] int32, the position stored in each slot, -1 when empty.
  next_pos: [B] int32, the position the next input token of each row will take.
  """

  k: tuple[jax.Array | None, ...]
  v: tuple[jax.Array | None, ...]
  pos: dict[str, jax.Array]
  next_pos: jax.Array

  @property
  def batch_size(self) -> int:
    return self.next_pos.shape[0]

  @property
  def length(self) -> int:
    """The longest sequence this cache can hold (the global buffer size)."""
    return self.pos[GLOBAL].shape[1]

  def nbytes(self) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(self))


def slots(cfg: TransformerConfig, kind: str, length: int) -> int:
  return min(cfg.sliding_window, length) if kind == LOCAL else length


def init_cache(cfg: TransformerConfig, batch_size: int, length: int,
               dtype=jnp.bfloat16) -> KVCache:
  """An empty cache for `batch_size` rows of up to `length` tokens each."""
  for name, value in (('batch size', batch_size), ('length', length)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f'the cache {name} must be an int >= 1, got {value!r}')
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise ValueError(f'cache dtype must be a float dtype, got {jnp.dtype(dtype).name}')
  return _empty(cfg, int(batch_size), int(length), jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _empty(cfg: TransformerConfig, batch_size: int, length: int, dtype) -> KVCache:
  """The empty cache, made by one program: made op by op, every buffer shape compiled a
  program of its own the first time (an E2B-shaped cache of 4096 tokens, in a fresh
  process: 244 ms op by op, 86 ms so; bench/first_call.txt)."""
  ks, vs = [], []
  for i, kind in enumerate(cfg.layer_types):
    if cfg.is_kv_shared(i):
      ks.append(None)
      vs.append(None)
      continue
    s, k, h = slots(cfg, kind, length), cfg.kv_heads(kind), cfg.key_size(kind)
    ks.append(jnp.zeros((batch_size, s, k, h), dtype))  # [batch, slots, kv_heads, key_size]
    vs.append(jnp.zeros((batch_size, k, h, s), dtype))  # [batch, kv_heads, key_size, slots]
  pos = {kind: jnp.full((batch_size, slots(cfg, kind, length)), -1, jnp.int32)
         for kind in (LOCAL, GLOBAL)}
  return KVCache(tuple(ks), tuple(vs), pos, jnp.zeros((batch_size,), jnp.int32))


def write_slots(positions: jax.Array, valid: jax.Array, num_slots: int,
                ring: bool) -> jax.Array:
  """Slot index of each new token [B, T], or `num_slots` (dropped) when it is not kept.

  A ring buffer keeps each row's last `num_slots` valid tokens at position % num_slots;
  a linear buffer keeps positions below num_slots at their own index.
  """
  if ring:
    last = jnp.max(jnp.where(valid, positions, -1), axis=-1, keepdims=True)
    keep = valid & (positions > last - num_slots)
    return jnp.where(keep, positions % num_slots, num_slots)
  return jnp.where(valid & (positions < num_slots), positions, num_slots)


def scatter(buf: jax.Array, idx: jax.Array, new: jax.Array, slots_last: bool = False
            ) -> jax.Array:
  """buf[b, idx[b, t]] = new[b, t], or buf[b, ..., idx[b, t]] = new[b, t] with
  `slots_last` (values [B, K, H, S]; new [B, T, K, H]); indices equal to the number of
  slots are dropped."""
  rows = jnp.arange(buf.shape[0])[:, None]
  at = buf.at[rows, :, :, idx] if slots_last else buf.at[rows, idx]
  return at.set(new.astype(buf.dtype), mode='drop')


def rings(cache: KVCache, cfg: TransformerConfig) -> KVCache:
  """The local layers' part of a cache (their ring buffers and slot positions, and the
  next positions); the global buffers are left out (None)."""
  keep = [kind == LOCAL for kind in cfg.layer_types]
  return KVCache(tuple(k if local else None for k, local in zip(cache.k, keep)),
                 tuple(v if local else None for v, local in zip(cache.v, keep)),
                 {LOCAL: cache.pos[LOCAL]}, cache.next_pos)


def rewind(cache: KVCache, earlier: KVCache, cfg: TransformerConfig) -> KVCache:
  """`cache` as it was when it held only the tokens of `earlier` (the `rings` of that
  earlier state of the same conversation): the local layers' rings come back from
  `earlier`, and the global layers' slots past its next position are emptied (their
  positions -1; a full-length buffer kept every earlier slot as it was)."""
  local = [kind == LOCAL for kind in cfg.layer_types]
  pick = lambda now, then: tuple(t if is_local else n for n, t, is_local in zip(now, then, local))  # noqa: E731
  pos = cache.pos[GLOBAL]
  emptied = jnp.where(pos >= earlier.next_pos[:, None], -1, pos)
  return KVCache(pick(cache.k, earlier.k), pick(cache.v, earlier.v),
                 {LOCAL: earlier.pos[LOCAL], GLOBAL: emptied}, earlier.next_pos)


def truncate(cache: KVCache, length: jax.Array) -> KVCache:
  """`cache` holding only its positions below `length` [B] (each row's slots at or past it
  emptied, its next position min(next, length)). Exact only while each local ring still
  holds the window before `length`: see `can_truncate`."""
  keep = lambda pos: jnp.where(pos >= length[:, None], -1, pos)  # noqa: E731
  return KVCache(cache.k, cache.v, {kind: keep(p) for kind, p in cache.pos.items()},
                 jnp.minimum(cache.next_pos, length))


def can_truncate(cfg: TransformerConfig, held: int, length: int, cache_length: int) -> bool:
  """Whether a row holding `held` tokens can go back to its first `length` by `truncate`:
  its local rings (min(window, cache_length) slots) lost none of the positions that the
  token at `length` attends to, which holds while the row never wrapped its ring or
  holds at most one token past `length`."""
  if LOCAL not in cfg.layer_types:
    return True
  return held <= slots(cfg, LOCAL, cache_length) or held <= length + 1


def take_row(cache: KVCache, row: jax.Array) -> KVCache:
  """Row `row` of the cache as a cache of one row."""
  return jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, row, 1, axis=0), cache)


def put_row(cache: KVCache, row: jax.Array, one: KVCache) -> KVCache:
  """`cache` with row `row` replaced by the one-row cache `one`."""
  return jax.tree.map(lambda x, y: jax.lax.dynamic_update_slice_in_dim(x, y.astype(x.dtype), row, 0),
                      cache, one)
