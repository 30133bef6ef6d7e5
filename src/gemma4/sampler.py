"""Gemma4Sampler: the official sampler's API over gemma4's decoder.

One state (SamplingState) flows through prefill, a decode step, and either the jitted
`lax.while_loop` (`sample`) or a Python loop over the same step (`stream`).
"""

from __future__ import annotations

import dataclasses
import functools
import random as _random
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import sampling as _sampling
from gemma4.config import TransformerConfig
from gemma4.kv_cache import KVCache, init_cache
from gemma4.models import Model
from gemma4.images import IMAGE_PLACEHOLDER, check_budget, expand_image_tokens, preprocess
from gemma4 import audio as _audio
from gemma4.multimodal import audio_soft_tokens_for_rows, merge_soft_tokens, soft_tokens_for_rows
from gemma4.params import unwrap
from gemma4.tokenizer import Gemma4Tokenizer
from gemma4.transformer import forward


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SamplingState:
  """Everything a turn leaves behind; pass it as `last_state` to continue.

  step: [] int32, tokens sampled in this turn.
  done: [B] bool, the row has sampled an end token.
  last_token: [B] int32, the last sampled token, not yet in the cache.
  predicted_tokens: [B, max_out_length] int32, this turn's tokens (0 after the end).
  logprobs: [B, max_out_length] float32, log-probability of each sampled token under
    the model (forbidden tokens removed; before temperature and filters).
  cache: the KV cache, holding every earlier token of the conversation.
  rng: the key the next step splits.
  cache_full: [] bool, decoding stopped because the cache could take no more tokens.
  """

  step: jax.Array
  done: jax.Array
  last_token: jax.Array
  predicted_tokens: jax.Array
  logprobs: jax.Array
  cache: KVCache
  rng: jax.Array
  cache_full: jax.Array

  @property
  def batch_size(self) -> int:
    return self.done.shape[0]


@dataclasses.dataclass(frozen=True)
class SamplerOutput:
  """What `sample(..., return_state=True)` returns."""

  text: str | list[str]
  state: SamplingState

  def _unbatch(self, x):
    return x[0] if isinstance(self.text, str) else x

  @property
  def tokens(self) -> np.ndarray:
    """Sampled ids [B, max_out_length] ([max_out_length] for a str prompt), 0-padded."""
    return self._unbatch(np.asarray(self.state.predicted_tokens))

  @property
  def logprobs(self) -> np.ndarray:
    """Log-probability of each token in `tokens` (0 where the token is padding)."""
    return self._unbatch(np.asarray(self.state.logprobs))

  @property
  def stopped_by_cache(self) -> bool:
    """True when decoding ended because the cache was full, not by an end token or
    max_new_tokens: the text may be cut short."""
    return bool(self.state.cache_full)


def normalize_rng(rng) -> jax.Array:
  """None (a random seed), an int seed, a sequence or ndarray of key data, or a key."""
  if rng is None:
    rng = _random.randint(0, 1_000_000_000)
  if isinstance(rng, (int, np.integer)):
    return jax.random.key(int(rng))
  if isinstance(rng, jax.Array) and jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng
  data = np.asarray(rng)
  if data.shape != (2,) or not np.issubdtype(data.dtype, np.integer):
    raise ValueError(f'rng must be None, an int seed, a PRNG key or 2 uint32 of key data; '
                     f'got shape {data.shape} dtype {data.dtype}')
  return jax.random.wrap_key_data(jnp.asarray(data, jnp.uint32))


def pad_to_bucket(length: int, buckets: tuple[int, ...] | None) -> int:
  """The smallest bucket that holds `length`, or `length` itself past the largest."""
  for b in buckets or ():
    if length <= b:
      return b
  return length


def mask_after_end(tokens: jax.Array, end_tokens: tuple[int, ...]) -> jax.Array:
  """Zeroes every token after the first end token of each row (the end token stays)."""
  is_end = jnp.isin(tokens, jnp.asarray(end_tokens))
  before_or_first = (jnp.cumsum(is_end, axis=-1) - is_end) == 0
  return tokens * before_or_first


@dataclasses.dataclass(frozen=True)
class _Loop:
  """The static part of decoding (hashable, so jitted functions take it as static)."""

  cfg: TransformerConfig
  sampling: Any
  end_tokens: tuple[int, ...]
  forbidden_tokens: tuple[int, ...]

  def pick(self, logits: jax.Array, state: SamplingState, active: jax.Array) -> SamplingState:
    """Samples the next token of every row from logits [B, V] and records it."""
    logits = logits.astype(jnp.float32)
    if self.forbidden_tokens:
      logits = logits.at[:, jnp.asarray(self.forbidden_tokens)].set(-jnp.inf)
    next_rng, rng = jax.random.split(state.rng)
    token = self.sampling.get_next_tokens(logits, rng).astype(jnp.int32)
    logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], -1)[:, 0]
    token = jnp.where(active, token, 0)
    return dataclasses.replace(
        state, step=state.step + 1, rng=next_rng,
        last_token=jnp.where(active, token, state.last_token),
        done=state.done | (active & jnp.isin(token, jnp.asarray(self.end_tokens))),
        predicted_tokens=state.predicted_tokens.at[:, state.step].set(token),
        logprobs=state.logprobs.at[:, state.step].set(jnp.where(active, logprob, 0.0)))

  def room(self, state: SamplingState) -> jax.Array:
    """[] bool: every unfinished row has a free cache position for its next token."""
    full = state.cache.next_pos >= state.cache.length
    return ~jnp.any(full & ~state.done)

  def going(self, state: SamplingState, max_new_tokens) -> jax.Array:
    """[] bool: decoding goes on (tokens left, a row unfinished, room in the cache)."""
    return (state.step < max_new_tokens) & ~jnp.all(state.done) & self.room(state)

  def step(self, params, state: SamplingState) -> SamplingState:
    """Feeds each unfinished row's last token and samples the next one."""
    active = ~state.done
    logits, cache = forward(params, self.cfg, state.last_token[:, None],
                            valid=active[:, None], cache=state.cache, last_only=True)
    return self.pick(logits, dataclasses.replace(state, cache=cache), active)

  @functools.partial(jax.jit, static_argnums=0)
  def prefill(self, params, tokens, valid, cache, rng, out_zeros, soft=None, audio_soft=None):
    """Prompt [B, T] into the cache; samples the first token from the last one.

    soft / audio_soft: [B, S, D] image / audio soft tokens for the soft-token slots of
    `tokens`, or None.
    """
    embeds = vision_mask = None
    if soft is not None or audio_soft is not None:
      embeds, vision_mask = merge_soft_tokens(params, tokens, soft, audio_soft)
    logits, cache = forward(params, self.cfg, tokens, embeds=embeds, vision_mask=vision_mask,
                            valid=valid, cache=cache, last_only=True)
    b = tokens.shape[0]
    state = SamplingState(
        step=jnp.zeros((), jnp.int32), done=jnp.zeros((b,), bool),
        last_token=jnp.zeros((b,), jnp.int32),
        predicted_tokens=out_zeros.astype(jnp.int32),  # [B, max_out_length]
        logprobs=out_zeros.astype(jnp.float32), cache=cache, rng=rng,
        cache_full=jnp.zeros((), bool))
    return self.pick(logits, state, jnp.ones((b,), bool))

  @functools.partial(jax.jit, static_argnums=0, donate_argnames='state')
  def loop(self, params, state: SamplingState, max_new_tokens):
    """Decodes until every row ends, max_new_tokens are sampled or the cache is full."""
    state = jax.lax.while_loop(lambda s: self.going(s, max_new_tokens),
                               functools.partial(self.step, params), state)
    return self.finish(state, max_new_tokens)

  def finish(self, state: SamplingState, max_new_tokens) -> SamplingState:
    stopped_full = (state.step < max_new_tokens) & ~jnp.all(state.done) & ~self.room(state)
    tokens = mask_after_end(state.predicted_tokens, self.end_tokens)
    return dataclasses.replace(state, predicted_tokens=tokens,
                               logprobs=jnp.where(tokens != 0, state.logprobs, 0.0),
                               cache_full=stopped_full)

  @functools.partial(jax.jit, static_argnums=0, donate_argnames='state')
  def jit_step(self, params, state):
    return self.step(params, state)

  @functools.partial(jax.jit, static_argnums=0)
  def jit_finish(self, state, max_new_tokens):
    return self.finish(state, max_new_tokens)


def _per_prompt(items: list, n_slots: list[int], batched: bool, tag: str, noun: str
                ) -> tuple[list[list], bool]:
  """Media items grouped by prompt, and whether they came one list per prompt: a batch
  may give one list per prompt, else one flat list in placeholder order. Counts that do
  not match the `tag` placeholders are an error naming them."""
  if batched and len(items) == len(n_slots) and all(isinstance(x, (list, tuple)) for x in items):
    groups = [list(x) for x in items]
    for i, (g, n) in enumerate(zip(groups, n_slots)):
      if len(g) != n:
        raise ValueError(f'prompt {i} has {n} {tag} placeholder(s) but {len(g)} {noun}')
    return groups, True
  if len(items) != sum(n_slots):
    raise ValueError(f'the prompts have {sum(n_slots)} {tag} placeholder(s) in all '
                     f'({", ".join(map(str, n_slots))} per prompt) but {len(items)} {noun} '
                     'were given')
  starts = np.cumsum([0] + n_slots)
  return [items[a:b] for a, b in zip(starts[:-1], starts[1:])], False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Gemma4Sampler:
  """Samples text from a Gemma 4 model; the official `gm.text.Gemma4Sampler` API.

  Audio: `audio` is a list of clips (float samples in [-1, 1], or int16; mono or
  multichannel) at `audio_sample_rate` Hz (resampled to 16 kHz when it differs), with
  `audio_lengths` the valid samples of each; each `<|audio|>` takes one clip. Clips
  longer than `audio_seq_length` soft tokens (750: 30 s) are split into equal
  consecutive segments, each its own `<|audio>`...`<audio|>` block.

  Beyond the official sampler: `stream` yields text while decoding; the KV cache keeps
  a window per local layer; a prompt that cannot fit raises before any compute and
  an output cut short by a full cache says so (`stopped_by_cache`); outputs carry
  per-token log-probabilities.
  """

  model: Model
  params: Any
  tokenizer: Gemma4Tokenizer | None = None
  sampling: Any = dataclasses.field(default_factory=_sampling.Greedy)
  forbidden_tokens: Sequence[str | int] | None = None
  stop_tokens: Sequence[str | int] | None = None
  cache_length: int = 4096
  max_out_length: int = 2048
  pad_length: None | int | tuple[int, ...] = (256, 512, 1024)
  patch_size: int = 16
  max_soft_tokens: int = 1120
  pooling_kernel_size: int = 3
  audio_sample_rate: int = 16000
  audio_seq_length: int = 750

  def __post_init__(self):
    if not isinstance(self.model, Model):
      raise TypeError(f'model must be a gemma4 Model (e.g. gemma4.models.Gemma4_E2B(), or '
                      f'gemma4.models.from_reference(official_model)); got {type(self.model).__name__}')
    if self.tokenizer is None:
      raise ValueError(f'no tokenizer is known for model {self.model.name!r}: pass '
                       'tokenizer=gemma4.Gemma4Tokenizer("path/to/tokenizer.model")')
    if self.tokenizer.vocab_size != self.model.config.vocab_size:
      raise ValueError(f'the tokenizer has {self.tokenizer.vocab_size} pieces but the model '
                       f'{self.model.config.vocab_size}; they must match')
    check_budget(self.max_soft_tokens)  # one of 70, 140, 280, 560, 1120, before any work
    for name in ('cache_length', 'max_out_length', 'audio_sample_rate', 'audio_seq_length'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
    object.__setattr__(self, 'params', unwrap(self.params))
    self.model.check_params(self.params)
    buckets = (self.pad_length,) if isinstance(self.pad_length, int) else self.pad_length
    object.__setattr__(self, '_buckets', tuple(sorted(buckets)) if buckets else None)
    forbidden = tuple(self.tokenizer.token_id(t) for t in self.forbidden_tokens or ())
    stop = tuple(self.tokenizer.token_id(t) for t in self.stop_tokens or ())
    object.__setattr__(self, '_forbidden', forbidden + tuple(self.tokenizer.FORBIDDEN_TOKENS))
    object.__setattr__(self, '_end', tuple(int(t) for t in self.tokenizer.END_TOKENS) + stop)

  def _loop(self, sampling) -> _Loop:
    return _Loop(self.model.config, sampling or self.sampling, self._end, self._forbidden)

  def _prepare(self, prompt, images, audio, audio_lengths, max_new_tokens, last_state,
               sharding, rng, max_soft_tokens=None):
    """Checks every argument and tokenizes; nothing is computed on the model yet."""
    batched = not isinstance(prompt, str)
    prompts = list(prompt) if batched else [prompt]
    if not prompts:
      raise ValueError('prompt is an empty list: expected a str or a non-empty sequence of str')
    if not all(isinstance(p, str) for p in prompts):
      raise TypeError(f'prompt must be a str or a sequence of str, got {[type(p).__name__ for p in prompts]}')
    if max_new_tokens is not None and not 1 <= max_new_tokens <= self.max_out_length:
      raise ValueError(f'max_new_tokens={max_new_tokens} must be in [1, max_out_length='
                       f'{self.max_out_length}]')
    ids = [self.tokenizer.encode(p, add_bos=last_state is None) for p in prompts]
    if any(not t for t in ids):
      raise ValueError('a prompt encodes to no tokens: expected at least one token per prompt')
    rows = self._images_per_prompt(ids, images, batched, max_soft_tokens)
    clips = self._audio_per_prompt(ids, audio, audio_lengths, batched)
    if rows is not None:
      ids = [expand_image_tokens(t, [p.num_soft_tokens for p in row], i)
             for i, (t, row) in enumerate(zip(ids, rows))]
    if clips is not None:
      ids = [_audio.expand_audio_tokens(t, row, i) for i, (t, row) in enumerate(zip(ids, clips))]
    before = np.zeros(len(ids), np.int64)
    if last_state is not None:
      if last_state.batch_size != len(ids):
        raise ValueError(f'last_state holds {last_state.batch_size} conversations but '
                         f'{len(ids)} prompts were given; they must match')
      if last_state.cache.length != self.cache_length:
        raise ValueError(f'last_state has a cache of {last_state.cache.length} tokens but this '
                         f'sampler has cache_length={self.cache_length}')
      before = np.asarray(last_state.cache.next_pos)
    need = before + np.array([len(t) for t in ids])
    if need.max() > self.cache_length:
      row = int(need.argmax())
      raise ValueError(f'prompt {row} needs {int(need[row])} cache positions ({int(before[row])} '
                       f'from earlier turns + {len(ids[row])} new) but cache_length is '
                       f'{self.cache_length}')
    length = pad_to_bucket(max(len(t) for t in ids), self._buckets)
    tokens = np.zeros((len(ids), length), np.int32)
    for i, row in enumerate(ids):
      tokens[i, :len(row)] = row
    valid = np.arange(length)[None] < np.array([len(t) for t in ids])[:, None]
    tokens, valid = jnp.asarray(tokens), jnp.asarray(valid)
    if sharding is not None:
      tokens, valid = jax.device_put(tokens, sharding), jax.device_put(valid, sharding)
    if last_state is not None:
      cache = last_state.cache
    else:
      dtype = jax.tree.leaves(self.params)[0].dtype
      cache = init_cache(self.model.config, len(ids), self.cache_length, dtype)
    soft = audio_soft = None
    if rows is not None and any(rows):
      soft = soft_tokens_for_rows(self.params, self.model.config, rows, length)
    if clips is not None and any(clips):
      audio_soft = audio_soft_tokens_for_rows(self.params, self.model.config, clips, length)
    return (batched, tokens, valid, cache, normalize_rng(rng),
            max_new_tokens or self.max_out_length, (soft, audio_soft))

  def _images_per_prompt(self, ids, images, batched, max_soft_tokens):
    """Preprocessed images per prompt (None without images), after every check."""
    n_slots = [sum(1 for t in row if t == IMAGE_PLACEHOLDER) for row in ids]
    if images is None:
      if any(n_slots):
        row = next(i for i, n in enumerate(n_slots) if n)
        raise ValueError(f'prompt {row} has {n_slots[row]} <|image|> placeholder(s) but no '
                         'images were given')
      return None
    if not self.model.has_vision:  # check_params has made sure the params hold it
      raise ValueError(f'images were given but model {self.model.name!r} has no vision encoder '
                       '(load it with text_only=False, or a checkpoint that has one)')
    budget = check_budget(self.max_soft_tokens if max_soft_tokens is None else max_soft_tokens)
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    groups, _ = _per_prompt(images, n_slots, batched, '<|image|>', 'image(s)')
    return [[preprocess(img, budget, self.patch_size, self.pooling_kernel_size) for img in g]
            for g in groups]

  def _audio_per_prompt(self, ids, audio, audio_lengths, batched):
    """Each prompt's clips as lists of 30 s segments (None without audio), after every
    check: placeholder and clip counts per prompt, lengths, samples."""
    n_slots = [sum(1 for t in row if t == _audio.AUDIO_PLACEHOLDER) for row in ids]
    if audio is None:
      if audio_lengths is not None:
        raise ValueError('audio_lengths was given without audio')
      if any(n_slots):
        row = next(i for i, n in enumerate(n_slots) if n)
        raise ValueError(f'prompt {row} has {n_slots[row]} <|audio|> placeholder(s) but no '
                         'audio was given')
      return None
    if not self.model.has_audio:
      why = ('it has no audio encoder' if self.model.config.audio is None else
             'it was built text_only (use text_only=False, or a checkpoint with its audio tower)')
      raise ValueError(f'audio was given but model {self.model.name!r} cannot take it: {why}')
    if isinstance(audio, np.ndarray) and audio.ndim == 1:
      audio = [audio]
    audio = list(audio)
    groups, per_prompt = _per_prompt(audio, n_slots, batched, '<|audio|>', 'audio clip(s)')
    if audio_lengths is None:
      lengths = [[None] * len(g) for g in groups]
    elif per_prompt:
      lengths = [list(x) for x in audio_lengths]
      if [len(x) for x in lengths] != [len(g) for g in groups]:
        raise ValueError('audio_lengths must have one list per prompt, one entry per clip: '
                         f'got sizes {[len(x) for x in lengths]} for clips {[len(g) for g in groups]}')
    else:
      if len(audio_lengths) != len(audio):
        raise ValueError(f'audio_lengths has {len(audio_lengths)} entries but {len(audio)} audio '
                         'clip(s) were given')
      lengths, _ = _per_prompt(list(audio_lengths), n_slots, False, '', '')
    max_segment = self.audio_seq_length * 4 * _audio.HOP
    out, index = [], 0
    for g, ls in zip(groups, lengths):
      row = []
      for clip, length in zip(g, ls):
        row.append(_audio.prepare(clip, length, index, self.audio_sample_rate, max_segment))
        index += 1
      out.append(row)
    return out

  def _decode_texts(self, state: SamplingState) -> list[str]:
    return [self.tokenizer.decode(row) for row in np.asarray(state.predicted_tokens)]

  def sample(self, prompt: str | Sequence[str], *, images=None, audio=None,
             audio_lengths=None, max_new_tokens: int | None = None, sampling=None,
             rng=None, return_state: bool = False, last_state: SamplingState | None = None,
             sharding=None, max_soft_tokens: int | None = None
             ) -> str | list[str] | SamplerOutput:
    """Samples a continuation of each prompt.

    A str prompt returns a str, a sequence returns a list. With `return_state`, returns
    SamplerOutput(text, state); pass the state as `last_state` to continue the
    conversation from the cache (BOS is added on the first turn only). As in the
    official sampler, the last token sampled in a turn (usually the end token, such
    as `<turn|>`) is not part of the history: the next prompt starts in its place, so
    begin that prompt with it to keep it. Unlike the official last_state path, the
    result equals sampling the whole history as one prompt.
    """
    batched, tokens, valid, cache, key, n, soft = self._prepare(
        prompt, images, audio, audio_lengths, max_new_tokens, last_state, sharding, rng,
        max_soft_tokens)
    loop = self._loop(sampling)
    zeros = jnp.zeros((tokens.shape[0], self.max_out_length), jnp.int32)
    state = loop.prefill(self.params, tokens, valid, cache, key, zeros, *soft)
    state = loop.loop(self.params, state, jnp.asarray(n, jnp.int32))
    texts = self._decode_texts(state)
    text = texts if batched else texts[0]
    return SamplerOutput(text, state) if return_state else text

  def stream(self, prompt: str, *, images=None, audio=None, audio_lengths=None,
             max_new_tokens: int | None = None,
             sampling=None, rng=None, last_state: SamplingState | None = None,
             return_state: bool = False, sharding=None, max_soft_tokens: int | None = None
             ) -> Iterator[str] | Iterator[SamplerOutput]:
    """Yields the text of one prompt piece by piece as it is decoded (the end token's
    text is not yielded). The decode step is the one `sample` loops over, so the
    tokens equal `sample`'s. With `return_state`, yields SamplerOutput(piece, state);
    the last one's state continues the conversation.
    """
    if not isinstance(prompt, str):
      raise TypeError(f'stream takes one str prompt, got {type(prompt).__name__}')
    _, tokens, valid, cache, key, n, soft = self._prepare(
        prompt, images, audio, audio_lengths, max_new_tokens, last_state, sharding, rng,
        max_soft_tokens)
    loop = self._loop(sampling)
    zeros = jnp.zeros((1, self.max_out_length), jnp.int32)
    state = loop.prefill(self.params, tokens, valid, cache, key, zeros, *soft)
    n = jnp.asarray(n, jnp.int32)
    shown, ids = '', []
    while True:
      token = int(state.last_token[0])
      ended = token in self._end
      if not ended:
        ids.append(token)
        text = self.tokenizer.decode(ids)
        if not text.endswith('\ufffd') and text != shown:  # wait out split UTF-8
          piece, shown = text[len(shown):], text
          yield SamplerOutput(piece, state) if return_state else piece
      if not bool(loop.going(state, n)):  # the while_loop's own condition
        break
      state = loop.jit_step(self.params, state)
    state = loop.jit_finish(state, n)
    rest = self.tokenizer.decode(ids)[len(shown):]
    if return_state:  # always: the caller needs the final state
      yield SamplerOutput(rest, state)
    elif rest:
      yield rest
