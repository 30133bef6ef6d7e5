"""The sampling draw written plainly, for tests and bench/sampling_pick.py to compare
gemma4.sampling with."""

import jax
import jax.numpy as jnp


def full_vocabulary_draw(logits, key, t, k, p, m):
  """The draw over the whole vocabulary, written plainly: filters by a full sort, then
  jax.random.categorical (what Combined computed before its candidate fast path)."""
  x = logits / t
  neg = jnp.finfo(x.dtype).min
  if k:
    x = jnp.where(x < jnp.sort(x, axis=-1)[:, -k:][:, :1], neg, x)
  if p < 1:
    ordered = jnp.sort(x, axis=-1, descending=True)
    cumulative = jnp.cumsum(jax.nn.softmax(ordered, axis=-1), axis=-1)
    cutoff = jnp.take_along_axis(ordered, jnp.sum(cumulative < p, axis=-1, keepdims=True), -1)
    x = jnp.where(x < cutoff, neg, x)
  if m > 0:
    probs = jax.nn.softmax(x, axis=-1)
    x = jnp.where(probs >= m * jnp.max(probs, axis=-1, keepdims=True), x, neg)
  return jax.random.categorical(key, x, axis=-1)
