"""Images into the decoder: encode, project, and place soft tokens at their slots.

A prompt's `<|image|>` expands to `\\n\\n <|image> SOFT x N <image|> \\n\\n`
(`gemma4.images.expand_image_tokens`); the SOFT slots (id -2) of a row take that row's
soft tokens in order. Soft tokens enter unscaled (token embeddings are scaled by
sqrt(width)); their per-layer-embedding lookup uses id 0, as in the official library.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import vision
from gemma4.config import TransformerConfig
from gemma4.images import SOFT_TOKEN, Patches
from gemma4.transformer import embed


@functools.partial(jax.jit, static_argnums=1)
def encode_images(params: dict, cfg: TransformerConfig, patches: jax.Array,
                  positions: jax.Array) -> jax.Array:
  """[n, L, 768], [n, L, 2] -> soft tokens [n, L // 9, text width] (float32)."""
  pooled, _ = vision.encode(params['vision_encoder'], cfg.vision, patches, positions)
  return vision.project(pooled, params['embedder']['mm_input_projection']['w'])


def merge_soft_tokens(params: dict, tokens: jax.Array, soft: jax.Array
                      ) -> tuple[jax.Array, jax.Array]:
  """Input embeddings with soft tokens at the SOFT slots, and the vision mask.

  tokens: [B, T] with SOFT_TOKEN at image slots; soft: [B, S, D], row b's soft tokens in
  the order of its slots (zero padded).
  """
  is_soft = tokens == SOFT_TOKEN
  x = embed(params, jnp.where(is_soft, 0, tokens))
  slot = jnp.clip(jnp.cumsum(is_soft, axis=1) - 1, 0, soft.shape[1] - 1)
  picked = jnp.take_along_axis(soft, slot[..., None], axis=1)
  return jnp.where(is_soft[..., None], picked.astype(x.dtype), x), is_soft


def _bucket(n: int) -> int:
  b = 1
  while b < n:
    b *= 2
  return b


def soft_tokens_for_rows(params: dict, cfg: TransformerConfig, rows: list[list[Patches]],
                         length: int) -> jax.Array:
  """Encodes every image of every row in one batch (padded to a power-of-two count, so
  few shapes compile) and lays out each row's soft tokens in order: [B, length, D]."""
  flat = [p for row in rows for p in row]
  n = _bucket(len(flat))
  shape = flat[0].patches.shape
  patches = np.zeros((n,) + shape, np.float32)
  positions = np.full((n, shape[0], 2), -1, np.int32)
  for i, p in enumerate(flat):
    patches[i], positions[i] = p.patches, p.positions
  soft = encode_images(params, cfg, jnp.asarray(patches), jnp.asarray(positions))
  per_image = soft.shape[1]
  index = np.zeros((len(rows), length), np.int32)
  k = 0
  for b, row in enumerate(rows):
    taken = [i * per_image + j for i, p in enumerate(row, start=k) for j in range(p.num_soft_tokens)]
    index[b, :len(taken)] = taken
    k += len(row)
  return soft.reshape(n * per_image, -1)[jnp.asarray(index)]
