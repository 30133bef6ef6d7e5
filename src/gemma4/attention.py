"""Attention masks and grouped-query attention; knows positions, not layers or caches."""

from __future__ import annotations

from typing import Sequence

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
  return attend_parts(q, [(k, values_last(v), mask)], softcap)


def values_last(v: jax.Array) -> jax.Array:
  """Values [B, S, K, H] in the layout `attend_parts` takes: [B, K, H, S]."""
  return jnp.transpose(v, (0, 2, 3, 1))


def attend_parts(q: jax.Array, parts: Sequence[tuple[jax.Array, jax.Array, jax.Array]],
                 softcap: float | None = None) -> jax.Array:
  """`attend` over keys that come in parts (a cache, then the new tokens): one softmax
  over all of them, without joining the keys into one buffer.

  parts: (k, vt, mask) with keys k [B, S_i, K, H], values vt [B, K, H, S_i] (positions
  last) and mask [B, T, S_i]. Both products then contract the operands' minor axes, the
  form XLA CPU hands to its matrix library as the operands lie; values [B, S, K, H] made
  it write a transposed copy of them on every call.
  """
  b, t, n, h = q.shape
  kh = parts[0][0].shape[2]
  qg = q.reshape(b, t, kh, n // kh, h)
  logits = []
  for k, _, mask in parts:
    x = jnp.einsum('BTKGH,BSKH->BTKGS', qg, k, preferred_element_type=jnp.float32)
    if softcap is not None:
      x = jnp.tanh(x / softcap) * softcap
    logits.append(jnp.where(mask[:, :, None, None, :], x, NEG_INF))
  probs = jax.nn.softmax(jnp.concatenate(logits, axis=-1) if len(logits) > 1 else logits[0],
                         axis=-1)
  out, start = None, 0
  for k, vt, _ in parts:
    p = probs[..., start:start + k.shape[1]].astype(vt.dtype)
    start += k.shape[1]
    part = jnp.einsum('BTKGS,BKHS->BTKGH', p, vt)
    out = part if out is None else out + part
  return out.reshape(b, t, n, h)
