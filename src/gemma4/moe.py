"""Mixture of experts: router, top-k choice and the expert MLPs (26B-A4B)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gemma4.layers import rms_norm


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
  order = jnp.argsort(flat, stable=True)
  xs = x[order // top_k]  # [M * k, D], grouped by expert
  sizes = jnp.bincount(flat, length=num_experts).astype(jnp.int32)
  w = p['gating_einsum']['w']
  gate = jax.lax.ragged_dot(xs, jnp.swapaxes(w[:, 0], 1, 2), sizes)  # [M * k, H]
  up = jax.lax.ragged_dot(xs, jnp.swapaxes(w[:, 1], 1, 2), sizes)
  y = jax.lax.ragged_dot(jax.nn.gelu(gate, approximate=True) * up, p['linear']['w'], sizes)
  y = y * p['per_expert_scale'].astype(y.dtype)[flat[order]][:, None]
  y = jnp.zeros_like(y).at[order].set(y).reshape(-1, top_k, shape[-1])  # [M, k, D]
  out = jnp.einsum('MKD,MK->MD', y, weights.astype(y.dtype))
  return out.reshape(shape)
