"""Sampling methods: (logits [B, V], rng) -> tokens [B]. Pure, frozen, traceable.

Greedy, RandomSampling, TopkSampling and TopPSampling compute what the official
classes of the same names compute (same tokens for the same key). `Combined` chains
temperature, top-k, top-p and min-p, which the official classes cannot express.
"""

from __future__ import annotations

import abc
import dataclasses

import jax
import jax.numpy as jnp


class SamplingMethod(abc.ABC):
  """Any object with this method that JAX can trace works as a sampling method."""

  @abc.abstractmethod
  def get_next_tokens(self, logits: jax.Array, rng: jax.Array) -> jax.Array:
    """logits: [B, V] (before softmax); rng: a PRNG key -> tokens [B] int."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Greedy(SamplingMethod):
  """The most likely token."""

  def get_next_tokens(self, logits, rng):
    del rng
    return jnp.argmax(logits, axis=-1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomSampling(SamplingMethod):
  """A draw from softmax(logits / temperature)."""

  temperature: float = 1.0

  def get_next_tokens(self, logits, rng):
    return jax.random.categorical(rng, logits / self.temperature, axis=-1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopkSampling(SamplingMethod):
  """A draw among the k most likely tokens, at `temperature`."""

  temperature: float = 1.0
  k: int = 1

  def get_next_tokens(self, logits, rng):
    values, ids = jax.lax.top_k(logits, self.k)
    pick = jax.random.categorical(rng, values / self.temperature, axis=-1)
    return jnp.take_along_axis(ids, pick[..., None], axis=-1)[..., 0]


def _top_p_filter(logits: jax.Array, p: float) -> jax.Array:
  """Masks (to the dtype's min) tokens below the smallest set whose mass reaches p."""
  sorted_logits = jnp.sort(logits, axis=-1, descending=True)
  cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
  cutoff_index = jnp.sum(cumulative < p, axis=-1, keepdims=True)
  cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
  return jnp.where(logits < cutoff, jnp.finfo(logits.dtype).min, logits)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopPSampling(SamplingMethod):
  """Nucleus sampling: a draw among the most likely tokens holding mass p."""

  p: float = 0.9
  temperature: float = 1.0

  def get_next_tokens(self, logits, rng):
    logits = logits / self.temperature
    if self.p < 1.0:
      logits = _top_p_filter(logits, self.p)
    return jax.random.categorical(rng, logits, axis=-1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Combined(SamplingMethod):
  """Temperature, then top-k, then top-p, then min-p (HF transformers' order).

  The defaults are Gemma 4's recommended setting (temperature 1.0, top_k 64,
  top_p 0.95). top_k=None, top_p=1.0 and min_p=0.0 switch a filter off. min_p keeps
  tokens whose probability is at least min_p times the most likely token's.
  temperature=0 is greedy.
  """

  temperature: float = 1.0
  top_k: int | None = 64
  top_p: float = 0.95
  min_p: float = 0.0

  def __post_init__(self):
    if self.temperature < 0:
      raise ValueError(f'temperature must be >= 0, got {self.temperature}')
    if self.top_k is not None and self.top_k < 1:
      raise ValueError(f'top_k must be >= 1 or None, got {self.top_k}')
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f'top_p must be in (0, 1], got {self.top_p}')
    if not 0.0 <= self.min_p <= 1.0:
      raise ValueError(f'min_p must be in [0, 1], got {self.min_p}')

  def get_next_tokens(self, logits, rng):
    if self.temperature == 0:
      return jnp.argmax(logits, axis=-1)
    logits = logits.astype(jnp.float32) / self.temperature
    neg = jnp.finfo(logits.dtype).min
    if self.top_k is not None and self.top_k < logits.shape[-1]:
      kth = jax.lax.top_k(logits, self.top_k)[0][..., -1:]
      logits = jnp.where(logits < kth, neg, logits)
    if self.top_p < 1.0:
      logits = _top_p_filter(logits, self.top_p)
    if self.min_p > 0.0:
      probs = jax.nn.softmax(logits, axis=-1)
      keep = probs >= self.min_p * jnp.max(probs, axis=-1, keepdims=True)
      logits = jnp.where(keep, logits, neg)
    return jax.random.categorical(rng, logits, axis=-1)


__all__ = ['SamplingMethod', 'Greedy', 'RandomSampling', 'TopkSampling', 'TopPSampling',
           'Combined']
