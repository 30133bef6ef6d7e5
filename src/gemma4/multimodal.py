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

from gemma4 import conformer, vision
from gemma4.audio import SOFT_TOKEN as AUDIO_SOFT_TOKEN
from gemma4.audio import Segment
from gemma4.config import TransformerConfig
from gemma4.images import SOFT_TOKEN, Patches
from gemma4.transformer import embed


@functools.partial(jax.jit, static_argnums=1)
def encode_images(params: dict, cfg: TransformerConfig, patches: jax.Array,
                  positions: jax.Array) -> jax.Array:
  """[n, L, 768], [n, L, 2] -> soft tokens [n, L // 9, text width] (float32)."""
  pooled, _ = vision.encode(params['vision_encoder'], cfg.vision, patches, positions)
  return vision.project(pooled, params['embedder']['mm_input_projection']['w'])


def _place(x, tokens, slot_id, soft):
  """x with row b's soft tokens [B, S, D] at its `slot_id` slots, in order."""
  is_slot = tokens == slot_id
  slot = jnp.clip(jnp.cumsum(is_slot, axis=1) - 1, 0, soft.shape[1] - 1)
  picked = jnp.take_along_axis(soft, slot[..., None], axis=1)
  return jnp.where(is_slot[..., None], picked.astype(x.dtype), x)


def merge_soft_tokens(params: dict, tokens: jax.Array, soft: jax.Array | None,
                      audio_soft: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Input embeddings with soft tokens at their slots, and the vision mask.

  tokens: [B, T] with SOFT_TOKEN at image slots and audio.SOFT_TOKEN at audio slots;
  soft / audio_soft: [B, S, D], row b's image / audio soft tokens in the order of its
  slots (zero padded), or None.
  """
  x = embed(params, jnp.where(tokens < 0, 0, tokens))
  if soft is not None:
    x = _place(x, tokens, SOFT_TOKEN, soft)
  if audio_soft is not None:
    x = _place(x, tokens, AUDIO_SOFT_TOKEN, audio_soft)
  return x, tokens == SOFT_TOKEN


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


# Padded sample lengths of an audio segment (1 to 30 s at 16 kHz, steps of at most 1.5x):
# clips of any length reuse these few compiled shapes, at most 50% of padding.
AUDIO_BUCKETS = tuple(int(s * 16_000) for s in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 30))


@functools.partial(jax.jit, static_argnums=1)
def encode_audio(params: dict, cfg: TransformerConfig, waveforms: jax.Array,
                 lengths: jax.Array) -> jax.Array:
  """[n, S] float32, valid samples [n] -> soft tokens [n, T2, text width] (float32)."""
  x, _ = conformer.encode(params['audio_encoder'], cfg.audio, waveforms, lengths)
  return conformer.project(x, params['embedder']['audio_input_projection']['w'])


def audio_soft_tokens_for_rows(params: dict, cfg: TransformerConfig,
                               rows: list[list[list[Segment]]], length: int) -> jax.Array:
  """Encodes every segment of every clip of every row in one batch (the count padded to
  a power of two, the samples to an AUDIO_BUCKETS length) and lays out each row's soft
  tokens in order: [B, length, D]."""
  flat = [seg for row in rows for clip in row for seg in clip]
  n = _bucket(len(flat))
  longest = max(seg.samples.shape[0] for seg in flat)
  size = next((b for b in AUDIO_BUCKETS if b >= longest), longest)
  waves = np.zeros((n, size), np.float32)
  lengths = np.zeros((n,), np.int32)
  for i, seg in enumerate(flat):
    waves[i, :seg.samples.shape[0]] = seg.samples
    lengths[i] = seg.samples.shape[0]
  soft = encode_audio(params, cfg, jnp.asarray(waves), jnp.asarray(lengths))
  per = soft.shape[1]
  index = np.zeros((len(rows), length), np.int32)
  k = 0
  for b, row in enumerate(rows):
    segs = [seg for clip in row for seg in clip]
    taken = [i * per + j for i, seg in enumerate(segs, start=k) for j in range(seg.num_soft_tokens)]
    index[b, :len(taken)] = taken
    k += len(segs)
  return soft.reshape(n * per, -1)[jnp.asarray(index)]
