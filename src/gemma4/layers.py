"""Elementwise and per-token building blocks: RMS norm, RoPE, gated MLP, softcap."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rms_norm(x: jax.Array, scale: jax.Array | None = None, eps: float = 1e-6,
             offset: float = 0.0) -> jax.Array:
  """x / rms(x) * (offset + scale) over the last axis, in float32, cast back to x.dtype.

  Gemma 4 multiplies by the scale as it is (offset 0); Gemma 3 by 1 + scale.
  """
  xf = x.astype(jnp.float32)
  y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + eps)
  if scale is not None:
    y = y * (offset + scale.astype(jnp.float32))
  return y.astype(x.dtype)


def rope(x: jax.Array, positions: jax.Array, base: float, proportion: float = 1.0,
         scale: float = 1.0) -> jax.Array:
  """Rotary embedding on the two halves of the head dim.

  x: [B, T, N, H]; positions: [B, T]. Only the first `proportion * H / 2` frequencies
  of each half rotate; the rest pass through (partial RoPE of the global layers).
  """
  h = x.shape[-1]
  n_rot = int(proportion * h // 2)
  exponents = (2.0 / h) * jnp.arange(n_rot, dtype=jnp.float32)
  # Divide by the timescale (inf where not rotated) as the official code does, so that
  # angles at large positions round the same way.
  timescale = jnp.concatenate(
      [base ** exponents, jnp.full((h // 2 - n_rot,), jnp.inf, jnp.float32)])
  angle = positions[..., None] / timescale / scale  # [B, T, H/2], float32
  sin, cos = jnp.sin(angle)[..., None, :], jnp.cos(angle)[..., None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def gated_mlp(x: jax.Array, w_gating: jax.Array, w_linear: jax.Array) -> jax.Array:
  """GELU-tanh gated MLP. x: [..., D]; w_gating: [2, F, D]; w_linear: [F, D]."""
  gate = jnp.einsum('...D,FD->...F', x, w_gating[0])
  up = jnp.einsum('...D,FD->...F', x, w_gating[1])
  return jnp.einsum('...F,FD->...D', jax.nn.gelu(gate, approximate=True) * up, w_linear)


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
  return x if cap is None else jnp.tanh(x / cap) * cap
