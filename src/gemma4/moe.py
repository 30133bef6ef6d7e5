"""Mixture of experts: router, top-k choice and the expert MLPs (26B-A4B)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gemma4 import quant
from gemma4.layers import rms_norm

# Up to this many token-expert pairs, int8 experts are gathered per pair (decode);
# beyond it the experts are dequantized once for the call (prefill).
_GATHER_PAIRS = 64


def route(x: jax.Array, w_router: jax.Array, router_scale: jax.Array,
          top_k: int) -> tuple[jax.Array, jax.Array]:
  """Top-k experts per token and their weights (HF `Gemma4TextRouter`, official head).

  x: [M, D], the residual stream before the FFW norm. The router norms it without
  scale, multiplies by router_scale and D**-0.5, projects, softmaxes in float32, keeps
  the top k and renormalises them to sum to one.
  Returns weights [M, k] float32 and expert ids [M, k] int32.
  """
  d = x.shape[-1]
  r = rms_norm(x) * jax.lax.rsqrt(jnp.array(d, x.dtype)) * router_scale.astype(x.dtype)
  logits = jnp.einsum('MD,DE->ME', r, w_router).astype(jnp.float32)
  probs = jax.nn.softmax(logits, axis=-1)
  _, experts = jax.lax.top_k(logits, top_k)
  chosen = jnp.take_along_axis(probs, experts, axis=-1)
  return chosen / jnp.sum(chosen, axis=-1, keepdims=True), experts


def moe_mlp(p: dict, x: jax.Array, x_router: jax.Array, top_k: int) -> jax.Array:
  """The expert branch. x: [..., D] (pre-FFW-normed), x_router: [..., D] -> [..., D].

  p holds the official `mlp` subtree: router_logits/w [D, E], router_scale [D],
  gating_einsum/w [E, 2, H, D], linear/w [E, H, D], per_expert_scale [E].
  Token-expert pairs are sorted by expert and run through ragged matmuls.
  """
  shape = x.shape
  x = x.reshape(-1, shape[-1])
  weights, experts = route(x_router.reshape(x.shape), p['router_logits']['w'],
                           p['router_scale'], top_k)
  num_experts = p['per_expert_scale'].shape[0]
  flat = experts.reshape(-1)  # [M * k]
  w, w_out = p['gating_einsum']['w'], p['linear']['w']
  if quant.is_quantized(w) and flat.shape[0] <= _GATHER_PAIRS:
    y = _gathered(w, w_out, x[jnp.arange(flat.shape[0]) // top_k], flat)
    y = y * p['per_expert_scale'].astype(y.dtype)[flat][:, None]
    out = jnp.einsum('MKD,MK->MD', y.reshape(-1, top_k, shape[-1]), weights.astype(y.dtype))
    return out.reshape(shape)
  if quant.is_quantized(w):
    w, w_out = w.dequantize(), w_out.dequantize()
  order = jnp.argsort(flat, stable=True)
  xs = x[order // top_k]  # [M * k, D], grouped by expert
  sizes = jnp.bincount(flat, length=num_experts).astype(jnp.int32)
  gate = jax.lax.ragged_dot(xs, jnp.swapaxes(w[:, 0], 1, 2), sizes)  # [M * k, H]
  up = jax.lax.ragged_dot(xs, jnp.swapaxes(w[:, 1], 1, 2), sizes)
  y = jax.lax.ragged_dot(jax.nn.gelu(gate, approximate=True) * up, w_out, sizes)
  y = y * p['per_expert_scale'].astype(y.dtype)[flat[order]][:, None]
  y = jnp.zeros_like(y).at[order].set(y).reshape(-1, top_k, shape[-1])  # [M, k, D]
  out = jnp.einsum('MKD,MK->MD', y, weights.astype(y.dtype))
  return out.reshape(shape)


def _gathered(w: quant.QTensor, w_out: quant.QTensor, xs: jax.Array, flat: jax.Array
              ) -> jax.Array:
  """The expert MLP of each token-expert pair from int8 experts gathered per pair.

  xs: [P, D] the token of each pair; flat: [P] its expert -> [P, D] float32.
  w: gating [E, 2, H, D] (values [C, E, 2, H, Kc]); w_out: linear [E, H, D] (values
  [C, E, D, Kc]).
  """
  c, _, _, _, kc = w.values.shape
  gv = w.values[:, flat].astype(jnp.float32)  # [C, P, 2, H, Kc]
  gu = jnp.einsum('PCK,CPJHK->PJH', xs.reshape(-1, c, kc).astype(jnp.float32), gv)
  gu = gu * w.scale[flat]
  h = jax.nn.gelu(gu[:, 0], approximate=True) * gu[:, 1]  # [P, H]
  c2, _, _, kc2 = w_out.values.shape
  lv = w_out.values[:, flat].astype(jnp.float32)  # [C, P, D, Kc]
  return jnp.einsum('PCK,CPDK->PD', h.reshape(-1, c2, kc2), lv) * w_out.scale[flat]
