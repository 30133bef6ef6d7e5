"""Images into the decoder: encode, project, and place soft tokens at their slots.

A prompt's `<|image|>` expands to `\\n\\n <|image> SLOT x N <image|> \\n\\n` and its
`<|audio|>` to `<|audio> SLOT x N <audio|>` per segment (`gemma4.media`); the image slots
(id -2) and audio slots (id -4) of a row take that row's soft tokens in order. Soft tokens enter unscaled (token embeddings are scaled by
sqrt(width)); their per-layer-embedding lookup uses id 0, as in the official library.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import conformer, vision
from gemma4.audio import Segment
from gemma4.config import TransformerConfig
from gemma4.images import Patches
from gemma4.media import AUDIO_SLOT, IMAGE_SLOT, slot_index
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

  tokens: [B, T] with IMAGE_SLOT at image slots and AUDIO_SLOT at audio slots;
  soft / audio_soft: [B, S, D], row b's image / audio soft tokens in the order of its
  slots (zero padded), or None.
  """
  x = embed(params, jnp.where(tokens < 0, 0, tokens))
  if soft is not None:
    x = _place(x, tokens, IMAGE_SLOT, soft)
  if audio_soft is not None:
    x = _place(x, tokens, AUDIO_SLOT, audio_soft)
  return x, tokens == IMAGE_SLOT


# At most this many images or audio segments go through an encoder at once: a call
# with many (a long recording is 20 segments in 10 minutes) runs in batches, so the
# encoder's memory is bounded whatever the count.
MAX_ENCODER_BATCH = 8


def _bucket(n: int) -> int:
  b = 1
  while b < n:
    b *= 2
  return b


def _in_batches(n: int, encode) -> jax.Array:
  """Outputs [n, ...] of `encode(start, stop, padded)` over batches of at most
  MAX_ENCODER_BATCH items, each padded to a power-of-two count (few compiled shapes)."""
  outs = []
  for start in range(0, n, MAX_ENCODER_BATCH):
    stop = min(start + MAX_ENCODER_BATCH, n)
    outs.append(encode(start, stop, _bucket(stop - start))[:stop - start])
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs)


def soft_tokens_for_rows(params: dict, cfg: TransformerConfig, rows: list[list[Patches]],
                         length: int) -> jax.Array:
  """Encodes every image of every row (in batches of at most MAX_ENCODER_BATCH, padded to
  a power-of-two count) and lays out each row's soft tokens in order: [B, length, D]."""
  flat = [p for row in rows for p in row]
  shape = flat[0].patches.shape
  def encode(start, stop, n):
    patches = np.zeros((n,) + shape, np.float32)
    positions = np.full((n, shape[0], 2), -1, np.int32)
    for i, p in enumerate(flat[start:stop]):
      patches[i], positions[i] = p.patches, p.positions
    return encode_images(params, cfg, jnp.asarray(patches), jnp.asarray(positions))
  soft = _in_batches(len(flat), encode)
  index = slot_index([[p.num_soft_tokens for p in row] for row in rows], soft.shape[1], length)
  return soft.reshape(len(flat) * soft.shape[1], -1)[jnp.asarray(index)]


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
  """Encodes every segment of every clip of every row (in batches of at most
  MAX_ENCODER_BATCH, the count padded to a power of two, the samples to an AUDIO_BUCKETS
  length) and lays out each row's soft tokens in order: [B, length, D]."""
  flat = [seg for row in rows for clip in row for seg in clip]
  longest = max(seg.samples.shape[0] for seg in flat)
  size = next((b for b in AUDIO_BUCKETS if b >= longest), longest)
  def encode(start, stop, n):
    waves = np.zeros((n, size), np.float32)
    lengths = np.zeros((n,), np.int32)
    for i, seg in enumerate(flat[start:stop]):
      waves[i, :seg.samples.shape[0]] = seg.samples
      lengths[i] = seg.samples.shape[0]
    return encode_audio(params, cfg, jnp.asarray(waves), jnp.asarray(lengths))
  soft = _in_batches(len(flat), encode)
  index = slot_index([[seg.num_soft_tokens for clip in row for seg in clip] for row in rows],
                     soft.shape[1], length)
  return soft.reshape(len(flat) * soft.shape[1], -1)[jnp.asarray(index)]
