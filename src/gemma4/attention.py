"""Attention masks and grouped-query attention; knows positions, not layers or caches."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

NEG_INF = -2.3819763e38  # masked logit: finite, so a row with no visible key gives no NaN


def vision_blocks(vision_mask: jax.Array) -> jax.Array:
  """Numbers each contiguous run of True in `vision_mask` [B, T]: 0 outside, 1, 2, ... inside.

  One run is one image's soft tokens, which may see each other on local layers.
  """
  m = vision_mask.astype(jnp.int32)
  starts = m * (1 - jnp.pad(m, ((0, 0), (1, 0)))[:, :-1])
  return m * jnp.cumsum(starts, axis=-1)


def make_mask(q_pos: jax.Array, k_pos: jax.Array, k_valid: jax.Array,
              window: int | None = None, q_block: jax.Array | None = None,
              k_block: jax.Array | None = None) -> jax.Array:
  """Which key each query may see: [B, T, S] bool.

  q_pos: [B, T]; k_pos, k_valid: [B, S]. Causal by position; with `window`, a query at
  p sees keys in (p - window, p], `window` keys itself included. Keys with the same
  nonzero block id as the query are visible whatever their order (still within the
  window), as for the soft tokens of one image.
  """
  q, k = q_pos[:, :, None], k_pos[:, None, :]
  mask = k_valid[:, None, :] & (k <= q)
  if q_block is not None:
    mask |= (q_block[:, :, None] == k_block[:, None, :]) & (q_block[:, :, None] > 0)
  if window is not None:
    mask &= (k > q - window) & (k < q + window)
  return mask


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
           softcap: float | None = None) -> jax.Array:
  """Grouped-query attention without 1/sqrt(H) scaling (Gemma 4 norms Q and K instead).

  q: [B, T, N, H]; k, v: [B, S, K, H]; mask: [B, T, S] -> [B, T, N, H].
  Query head n uses kv head n // (N // K).
  """
  return attend_parts(q, [Keys(k, values_last(v))], lambda *_: mask, softcap)


def values_last(v: jax.Array) -> jax.Array:
  """Values [B, S, K, H] in the layout `attend_parts` takes: [B, K, H, S]."""
  return jnp.transpose(v, (0, 2, 3, 1))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Keys:
  """One part of the keys a query attends over (a cache, or the new tokens).

  k: [B, S, K, H]; vt: the values [B, K, H, S] (slots last: both products then
  contract the operands' minor axes, the form XLA CPU hands to its matrix library as
  the operands lie; with values [B, S, K, H] the compiled decode step of jax 0.10.2
  held a transposed copy of them per layer).
  pos, valid, block: [B, S] slot positions, validity and vision block ids.
  used: None, or the number of leading slots that may hold keys ([] int32, a linear
    cache's next position): then only those are read, BLOCK slots at a time.
  """

  k: jax.Array
  vt: jax.Array
  pos: jax.Array | None = None
  valid: jax.Array | None = None
  block: jax.Array | None = None
  used: jax.Array | None = None


BLOCK = 1024  # slots read per step of a part with `used`


def attend_parts(q: jax.Array, parts: Sequence[Keys],
                 mask_of: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
                 softcap: float | None = None) -> jax.Array:
  """`attend` over keys that come in parts, one softmax over all of them, without
  joining the keys into one buffer. q: [B, T, N, H] -> [B, T, N, H].

  mask_of(pos, valid, block) [B, S] each -> [B, T, S]: which of those keys each query
  sees. Each part gives the softmax's running max, sum and weighted values, merged as
  flash attention merges blocks; a part with `used` is read up to it, in blocks, so its
  cost follows the tokens it holds, not its size.
  """
  b, t, n, h = q.shape
  qg = _grouped(q, parts[0].k.shape[2])
  total = None
  for part in parts:
    if part.used is not None and part.k.shape[1] > BLOCK:
      stats = _blocked_stats(qg, part, mask_of, softcap)
    else:
      stats = _stats(qg, part.k, part.vt, mask_of(part.pos, part.valid, part.block), softcap)
    total = stats if total is None else _merge(total, stats)
  m, l, o = total
  return (o / l[..., None]).astype(parts[0].vt.dtype).reshape(b, t, n, h)


def _grouped(q: jax.Array, kv_heads: int) -> jax.Array:
  b, t, n, h = q.shape
  return q.reshape(b, t, kv_heads, n // kv_heads, h)


# The most query heads whose products one query (batch 1, one token: a decode step)
# computes head by head, see `_per_head`.
PER_HEAD_MAX = 4


def _per_head(qg: jax.Array) -> bool:
  """Whether the query's two products run as one one-row product per query head. XLA CPU
  runs a one-row product as a loop of its own over the keys or values as they lie; the
  grouped product of G query heads goes to its matrix library, a call with a cost of its
  own whatever the size. The Gemma 3 270M (4 query heads, 1 kv head) decodes 1.24x
  faster head by head, and its first call compiles 0.7 s longer
  (bench/attention_heads.txt). More heads mean more products to compile and no gain
  has been recorded for them, hence PER_HEAD_MAX."""
  b, t, kh, g, _ = qg.shape
  return b == 1 and t == 1 and kh * g <= PER_HEAD_MAX


def _head_rows(x: jax.Array, ys: list[jax.Array]) -> jax.Array:
  """x [1, 1, K, G, C] times ys (K matrices [R, C]), contracting C, head by head ->
  [1, 1, K, G, R] float32."""
  return jnp.stack([jnp.stack([
      jnp.dot(x[0, 0, kh, g], y.T, preferred_element_type=jnp.float32)
      for g in range(x.shape[3])]) for kh, y in enumerate(ys)])[None, None]


def _logits(qg, k, mask, softcap):
  """[B, T, K, G, S] float32, masked."""
  if _per_head(qg):
    x = _head_rows(qg, [k[0, :, kh] for kh in range(k.shape[2])])
  else:
    x = jnp.einsum('BTKGH,BSKH->BTKGS', qg, k, preferred_element_type=jnp.float32)
  if softcap is not None:
    x = jnp.tanh(x / softcap) * softcap
  return jnp.where(mask[:, :, None, None, :], x, NEG_INF)


def _stats(qg, k, vt, mask, softcap):
  """(max [B, T, K, G], sum of exp [B, T, K, G], weighted values [B, T, K, G, H])."""
  x = _logits(qg, k, mask, softcap)
  m = jnp.max(x, axis=-1)
  e = jnp.exp(x - m[..., None])
  if _per_head(qg):
    o = _head_rows(e.astype(vt.dtype), [vt[0, kh] for kh in range(vt.shape[1])])
  else:
    o = jnp.einsum('BTKGS,BKHS->BTKGH', e.astype(vt.dtype), vt,
                   preferred_element_type=jnp.float32)
  return m, jnp.sum(e, axis=-1), o


def _merge(a, b):
  """The stats of two disjoint sets of keys as those of their union."""
  (ma, la, oa), (mb, lb, ob) = a, b
  m = jnp.maximum(ma, mb)
  wa, wb = jnp.exp(ma - m), jnp.exp(mb - m)
  return m, la * wa + lb * wb, oa * wa[..., None] + ob * wb[..., None]


def _blocked_stats(qg, part: Keys, mask_of, softcap):
  """`_stats` of the first `part.used` slots, BLOCK at a time in a loop. The last block
  starts at most at S - BLOCK (a slice stays in bounds) and skips the slots it shares
  with the one before; slots from `used` on are masked."""
  b, t, kh, g, h = qg.shape
  s = part.k.shape[1]
  slot = jnp.arange(BLOCK)

  def body(j, acc):
    first = j * BLOCK
    start = jnp.minimum(first, s - BLOCK)
    take = lambda x, axis: jax.lax.dynamic_slice_in_dim(x, start, BLOCK, axis)
    fresh = ((start + slot >= first) & (start + slot < part.used))[None]
    mask = mask_of(take(part.pos, 1), take(part.valid, 1) & fresh, take(part.block, 1))
    return _merge(acc, _stats(qg, take(part.k, 1), take(part.vt, 3), mask, softcap))

  init = (jnp.full((b, t, kh, g), NEG_INF, jnp.float32), jnp.zeros((b, t, kh, g), jnp.float32),
          jnp.zeros((b, t, kh, g, h), jnp.float32))
  count = (jnp.minimum(part.used, s) + BLOCK - 1) // BLOCK
  return jax.lax.fori_loop(0, count, body, init)
