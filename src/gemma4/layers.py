"""Elementwise and per-token building blocks: RMS norm, RoPE, gated MLP, softcap."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gemma4 import quant


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


# The official weight layouts put the contracted axis of some projections in the middle
# or last ([N, D, H], [2, F, D], [V, D]). Written as plain einsums, XLA on CPU copies
# (transposes) such a weight on every call, which dominates decoding. The helpers below
# keep every weight in its stored layout: a weight whose contracted axis is last is the
# left operand of a 2-D matmul; [N, D, H] is a batched matmul over N for short inputs.
_SHORT = 64  # up to this many tokens, broadcast the input over heads instead


def rows_dot(w: jax.Array, x: jax.Array, preferred_element_type=None) -> jax.Array:
  """x @ w.T for w [O, D] (contracted axis last) without moving w. x: [..., D] -> [..., O].

  An int8 QTensor gives float32, whatever preferred_element_type."""
  if quant.is_quantized(w):
    return quant.dot(x, w)
  lead = x.shape[:-1]
  y = jax.lax.dot_general(w, x.reshape(-1, x.shape[-1]), (((1,), (1,)), ((), ())),
                          preferred_element_type=preferred_element_type)  # [O, M]
  return y.T.reshape(*lead, w.shape[0])


def head_proj(x: jax.Array, w: jax.Array) -> jax.Array:
  """einsum('BTD,NDH->BTNH') that leaves w [N, D, H] in place for short inputs."""
  if quant.is_quantized(w):
    return quant.dot(x, w)
  b, t, d = x.shape
  if b * t > _SHORT:  # prefill: the weight copy is paid once for many tokens
    return jnp.einsum('BTD,NDH->BTNH', x, w)
  xb = jnp.broadcast_to(x.reshape(1, b * t, d), (w.shape[0], b * t, d))
  y = jax.lax.dot_general(xb, w, (((2,), (1,)), ((0,), (0,))))  # [N, M, H]
  return y.transpose(1, 0, 2).reshape(b, t, w.shape[0], w.shape[2])


def heads_out(x: jax.Array, w: jax.Array) -> jax.Array:
  """einsum('BTNH,NHD->BTD') as one 2-D matmul over N*H (w [N, H, D] is contiguous)."""
  b, t, n, h = x.shape
  if quant.is_quantized(w):
    return quant.dot(x.reshape(b, t, n * h), w)
  return (x.reshape(b * t, n * h) @ w.reshape(n * h, w.shape[-1])).reshape(b, t, -1)


def gated_mlp(x: jax.Array, w_gating: jax.Array, w_linear: jax.Array) -> jax.Array:
  """GELU-tanh gated MLP. x: [..., D]; w_gating: [2, F, D]; w_linear: [F, D]."""
  if quant.is_quantized(w_gating):
    both = quant.dot(x, w_gating)  # [..., 2, F]
    return quant.dot(jax.nn.gelu(both[..., 0, :], approximate=True) * both[..., 1, :], w_linear)
  f = w_gating.shape[1]
  both = rows_dot(w_gating.reshape(2 * f, w_gating.shape[2]), x)  # gate rows, then up rows
  gate, up = both[..., :f], both[..., f:]
  return (jax.nn.gelu(gate, approximate=True) * up) @ w_linear


def project(x: jax.Array, w, spec: str) -> jax.Array:
  """jnp.einsum(spec, x, w) for a weight whose contracted axes lead ('BTD,DP->BTP'),
  or the fused int8 product where w is a QTensor."""
  if quant.is_quantized(w):
    return quant.dot(x, w)
  return jnp.einsum(spec, x, w)


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
  return x if cap is None else jnp.tanh(x / cap) * cap
