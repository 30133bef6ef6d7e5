"""Gemma4Sampler: the official sampler's API over gemma4's decoder.

One state (SamplingState) flows through prefill, a decode step, and either the jitted
`lax.while_loop` (`sample`) or a Python loop over the same step (`stream`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random as _random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import audio as _audio
from gemma4 import compilation
from gemma4 import images as _images
from gemma4 import media
from gemma4 import quant
from gemma4 import sampling as _sampling
from gemma4.config import TransformerConfig
from gemma4.kv_cache import KVCache, init_cache
from gemma4.models import Model
from gemma4.multimodal import audio_soft_tokens_for_rows, merge_soft_tokens, soft_tokens_for_rows
from gemma4.params import unwrap
from gemma4.sharding import Sharder, to_host
from gemma4.stops import StopMatcher, StopText, check_stop, cut, matcher
from gemma4.tokenizer import Gemma3Tokenizer, Gemma4Tokenizer, IncrementalDecoder
from gemma4.transformer import conclude, forward, layers, output_params, split_layers

_jit = compilation.jit


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
  penalties: the turn's repetition/presence/frequency penalties and logit bias
    (gemma4.sampling.Penalties), or None.
  stops: the turn's stop strings as an automaton over the sampled text
    (gemma4.stops.StopMatcher); a row whose text holds one is done. None: no stop strings.
  """

  step: jax.Array
  done: jax.Array
  last_token: jax.Array
  predicted_tokens: jax.Array
  logprobs: jax.Array
  cache: KVCache
  rng: jax.Array
  cache_full: jax.Array
  penalties: _sampling.Penalties | None = None
  stops: StopMatcher | None = None

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
    return self._unbatch(to_host(self.state.predicted_tokens))

  @property
  def logprobs(self) -> np.ndarray:
    """Log-probability of each token in `tokens` (0 where the token is padding)."""
    return self._unbatch(to_host(self.state.logprobs))

  @property
  def stopped_by_cache(self) -> bool:
    """True when decoding ended because the cache was full, not by an end token or
    max_new_tokens: the text may be cut short."""
    return bool(to_host(self.state.cache_full))


@dataclasses.dataclass(frozen=True)
class EncodedPrompt:
  """A prompt as the decoder takes it (`Gemma4Sampler.encode`): ids [T] int32 with its
  soft-token slots (media.IMAGE_SLOT / AUDIO_SLOT), and the soft tokens of its images and
  of its audio in slot order ([1, T, D] each, None where absent)."""

  ids: np.ndarray
  soft: jax.Array | None = None
  audio_soft: jax.Array | None = None


def normalize_rng(rng) -> jax.Array:
  """None (a random seed), an int seed in [0, 2**64), 2 uint32 of key data, or a key.

  A seed below 2**32 gives jax.random.key(seed), as the official sampler; larger seeds
  use all 64 bits (key data [seed >> 32, seed & 0xffffffff]), where jax.random.key with
  64-bit types off would keep only the low 32 and give 2**32 + 5 the key of 5.
  """
  if rng is None:
    rng = _random.randint(0, 1_000_000_000)
  if isinstance(rng, (bool, np.bool_)):
    raise TypeError(f'rng must be None, an int seed, a PRNG key or 2 uint32 of key data; got {rng!r}')
  if isinstance(rng, (int, np.integer)):
    seed = int(rng)
    if not 0 <= seed < 2 ** 64:
      raise ValueError(f'rng seed must be in [0, 2**64) (what numpy.uint64 holds), got {seed}')
    if seed < 2 ** 32:
      return jax.random.key(seed)
    return jax.random.wrap_key_data(jnp.asarray([seed >> 32, seed & 0xFFFFFFFF], jnp.uint32))
  if isinstance(rng, jax.Array) and jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    if rng.shape != ():
      raise ValueError(f'rng must be a single PRNG key, got a key array of shape {rng.shape}')
    return rng
  if isinstance(rng, (str, bytes, float, np.floating)):
    raise TypeError(f'rng must be None, an int seed, a PRNG key or 2 uint32 of key data; got '
                    f'{type(rng).__name__} {rng!r}')
  try:
    data = np.asarray(rng)
  except (TypeError, ValueError) as e:
    raise TypeError(f'rng must be None, an int seed, a PRNG key or 2 uint32 of key data; got '
                    f'{type(rng).__name__}') from e
  if data.shape != (2,) or not np.issubdtype(data.dtype, np.integer):
    raise ValueError(f'rng must be None, an int seed, a PRNG key or 2 uint32 of key data; '
                     f'got shape {data.shape} dtype {data.dtype}')
  if data.min() < 0 or data.max() >= 2 ** 32:
    raise ValueError(f'rng key data must be 2 uint32 values, got {data.tolist()}')
  return jax.random.wrap_key_data(jnp.asarray(data.astype(np.uint32)))


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


# Prompts longer than this are prefilled in chunks of this many tokens: the activations
# of one chunk (attention logits [B, N, C, cache_length + C] float32 included) bound the
# prefill's memory whatever the prompt's length.
PREFILL_CHUNK = 1024


def chunk_bounds(length: int, chunk: int, keep_whole: Sequence[tuple[int, int]] = ()
                 ) -> list[tuple[int, int]]:
  """[start, stop) of each prefill chunk of `length` tokens: `chunk` tokens each, the
  last shorter, except that no boundary falls strictly inside a span of `keep_whole`
  ([start, stop) spans, e.g. the soft tokens of an image that attend to each other both
  ways): the boundary moves back to the span's start, or past its end when the span
  starts the chunk."""
  spans: list[list[int]] = []  # merged, so a moved boundary never lands in another span
  for a, b in sorted(keep_whole):
    if spans and a < spans[-1][1]:
      spans[-1][1] = max(spans[-1][1], b)
    else:
      spans.append([a, b])
  bounds, start = [], 0
  while start < length:
    stop = min(start + chunk, length)
    for a, b in spans:
      if a < stop < b:
        stop = a if a > start else min(b, length)
        break
    bounds.append((start, stop))
    start = stop
  return bounds


def image_spans(tokens: np.ndarray) -> list[tuple[int, int]]:
  """[start, stop) of every run of image slots in any row of tokens [B, T]."""
  out = []
  for row in tokens == media.IMAGE_SLOT:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    out += list(zip(edges[::2].tolist(), edges[1::2].tolist()))
  return out


@_jit
def _keep_last(is_last: jax.Array, new: jax.Array, logits: jax.Array) -> jax.Array:
  """Rows of logits [B, V] where is_last [B] holds replaced by those of new."""
  return jnp.where(is_last[:, None], new, logits)


@dataclasses.dataclass(frozen=True)
class _Loop:
  """The static part of decoding (hashable, so jitted functions take it as static)."""

  cfg: TransformerConfig
  sampling: Any
  end_tokens: tuple[int, ...]
  forbidden_tokens: tuple[int, ...]
  sharder: Sharder | None = None  # the mesh and rules, when decoding on a mesh

  def placed(self, cache: KVCache) -> KVCache:
    """The cache a program returns, laid out on the mesh as the rules say (so that a
    donated cache comes back where it went in); as it is without a mesh."""
    return cache if self.sharder is None else self.sharder.constrain_cache(cache)

  def pick(self, logits: jax.Array, state: SamplingState, active: jax.Array,
           allowed: jax.Array | None = None) -> SamplingState:
    """Samples the next token of every row from logits [B, V] and records it; only
    tokens where allowed [B, V] (bool) is True, when given."""
    logits = logits.astype(jnp.float32)
    if allowed is not None:
      logits = jnp.where(allowed, logits, -jnp.inf)
    if self.forbidden_tokens:
      logits = logits.at[:, jnp.asarray(self.forbidden_tokens)].set(-jnp.inf)
    next_rng, rng = jax.random.split(state.rng)
    pen = state.penalties
    token = self.sampling.get_next_tokens(logits if pen is None else pen.apply(logits), rng)
    token = token.astype(jnp.int32)
    logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], -1)[:, 0]
    token = jnp.where(active, token, 0)
    done = state.done | (active & jnp.isin(token, jnp.asarray(self.end_tokens)))
    stops = state.stops
    if stops is not None:
      stops, hit = stops.advance(token, active)
      done = done | hit
    return dataclasses.replace(
        state, step=state.step + 1, rng=next_rng, stops=stops,
        penalties=None if pen is None else pen.record(token, active),
        last_token=jnp.where(active, token, state.last_token), done=done,
        predicted_tokens=state.predicted_tokens.at[:, state.step].set(token),
        logprobs=state.logprobs.at[:, state.step].set(jnp.where(active, logprob, 0.0)))

  def room(self, state: SamplingState) -> jax.Array:
    """[] bool: every unfinished row has a free cache position for its next token."""
    full = state.cache.next_pos >= state.cache.length
    return ~jnp.any(full & ~state.done)

  def going(self, state: SamplingState, max_new_tokens) -> jax.Array:
    """[] bool: decoding goes on (tokens left, a row unfinished, room in the cache)."""
    return (state.step < max_new_tokens) & ~jnp.all(state.done) & self.room(state)

  def step(self, params, state: SamplingState, allowed=None) -> SamplingState:
    """Feeds each unfinished row's last token and samples the next one."""
    # Tied to the step counter, the weights are not loop-invariant: XLA would otherwise
    # hoist an int8 weight's conversion out of the decode loop and keep a float32 copy
    # of it. (Tying the whole state made XLA copy the cache buffers.)
    params, step = jax.lax.optimization_barrier((params, state.step))
    state = dataclasses.replace(state, step=step)
    active = ~state.done
    logits, cache = forward(params, self.cfg, state.last_token[:, None],
                            valid=active[:, None], cache=state.cache, last_only=True)
    return self.pick(logits, dataclasses.replace(state, cache=self.placed(cache)), active, allowed)

  def start(self, logits: jax.Array, cache: KVCache, rng, out_zeros, allowed=None,
            penalties=None, stops=None) -> SamplingState:
    """The state after a prompt, with its first token sampled from logits [B, V]."""
    b = logits.shape[0]
    state = SamplingState(
        step=jnp.zeros((), jnp.int32), done=jnp.zeros((b,), bool),
        last_token=jnp.zeros((b,), jnp.int32),
        predicted_tokens=out_zeros.astype(jnp.int32),  # [B, max_out_length]
        logprobs=out_zeros.astype(jnp.float32), cache=cache, rng=rng,
        cache_full=jnp.zeros((), bool), penalties=penalties, stops=stops)
    return self.pick(logits, state, jnp.ones((b,), bool), allowed)

  def prefill(self, params, tokens, valid, cache, rng, out_zeros, soft=None, audio_soft=None,
              allowed=None, penalties=None, stops=None, *, owned: bool):
    """Prompt [B, T] into the cache in one pass; samples the first token from the last.

    soft / audio_soft: [B, S, D] image / audio soft tokens for the soft-token slots of
    `tokens`, or None. owned: the cache is not the caller's (it is written in place; a
    last_state's cache is kept as it is). One program, or, for a model with
    `transformer.split_layers`, the decoder's programs (one per distinct layer) and
    one that ends the pass and samples.
    """
    args = (allowed, penalties, stops)
    if not split_layers(self.cfg):
      whole = self.whole_owned if owned else self.whole_keep
      return whole(params, tokens, valid, cache, rng, out_zeros, soft, audio_soft, *args)
    embeds = vision_mask = None
    if soft is not None or audio_soft is not None:
      embeds, vision_mask = self.embed(params, tokens, soft, audio_soft)
    x, ctx, written = layers(params, self.cfg, tokens, embeds=embeds, vision_mask=vision_mask,
                             valid=valid, cache=cache)
    end = self.end_owned if owned else self.end_keep
    return end(output_params(params), x, ctx, written, cache, rng, out_zeros, *args)

  def whole(self, params, tokens, valid, cache, rng, out_zeros, soft, audio_soft, allowed,
            penalties, stops):
    """`prefill` as one program."""
    embeds = vision_mask = None
    if soft is not None or audio_soft is not None:
      embeds, vision_mask = merge_soft_tokens(params, tokens, soft, audio_soft)
    logits, cache = forward(params, self.cfg, tokens, embeds=embeds, vision_mask=vision_mask,
                            valid=valid, cache=cache, last_only=True)
    return self.start(logits, self.placed(cache), rng, out_zeros, allowed, penalties, stops)

  whole_keep = functools.partial(_jit, static_argnums=0)(whole)
  whole_owned = functools.partial(_jit, static_argnums=0, donate_argnames='cache')(whole)

  def end(self, head, x, ctx, written, cache, rng, out_zeros, allowed, penalties, stops):
    """`transformer.conclude` of a prompt's pass, and its first token sampled."""
    logits, cache = conclude(head, self.cfg, x, ctx, cache, written, last_only=True)
    return self.start(logits, self.placed(cache), rng, out_zeros, allowed, penalties, stops)

  end_keep = functools.partial(_jit, static_argnums=0)(end)
  end_owned = functools.partial(_jit, static_argnums=0, donate_argnames='cache')(end)

  @functools.partial(_jit, static_argnums=0)
  def embed(self, params, tokens, soft, audio_soft):
    """Input embeddings [B, T, D] with the soft tokens at their slots, and the vision mask."""
    return merge_soft_tokens(params, tokens, soft, audio_soft)

  def chunk(self, params, tokens, valid, embeds, vision_mask, cache, logits, is_last, *,
            owned: bool):
    """One chunk [B, C] of a long prompt into the cache; logits [B, V] of the rows whose
    last prompt token (is_last [B]) is in this chunk replace those carried in. owned: as
    for `prefill` (the first chunk must not take over a last_state's cache)."""
    new, cache = forward(params, self.cfg, tokens, embeds=embeds, vision_mask=vision_mask,
                         valid=valid, cache=cache, last_only=True, donate_cache=owned)
    return _keep_last(is_last, new, logits), cache

  @functools.partial(_jit, static_argnums=0, donate_argnames='cache')
  def jit_placed(self, cache: KVCache) -> KVCache:
    return self.placed(cache)

  @functools.partial(_jit, static_argnums=0, donate_argnames='cache')
  def jit_start(self, logits, cache, rng, out_zeros, allowed=None, penalties=None, stops=None):
    """`start` after `Gemma4Sampler._fill`, which has placed the cache already."""
    return self.start(logits, cache, rng, out_zeros, allowed, penalties, stops)

  @functools.partial(_jit, static_argnums=0, donate_argnames='state')
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

  @functools.partial(_jit, static_argnums=0, donate_argnames='state')
  def stream_step(self, params, state: SamplingState, max_new_tokens, allowed=None):
    """One step of `loop`: a decode step where its condition holds, else the state as
    it is; that condition, and the first row's last token after it."""
    going = self.going(state, max_new_tokens)
    state = jax.lax.cond(going, lambda s: self.step(params, s, allowed), lambda s: s, state)
    return state, going, state.last_token[0]

  @functools.partial(_jit, static_argnums=0)
  def jit_finish(self, state, max_new_tokens):
    """`finish`'s new fields (tokens, logprobs, cache_full): returning the cache from a
    program that does not own it would copy it."""
    state = self.finish(state, max_new_tokens)
    return state.predicted_tokens, state.logprobs, state.cache_full


def _check_int(value, name: str, low: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise TypeError(f'{name} must be an int >= {low}, got {type(value).__name__} {value!r}')
  if value < low:
    raise ValueError(f'{name} must be >= {low}, got {value}')
  return int(value)


def _buckets(pad_length) -> tuple[int, ...] | None:
  """The sorted prompt lengths of `pad_length` (None, an int or a tuple of ints >= 1)."""
  if pad_length is None:
    return None
  values = (pad_length,) if isinstance(pad_length, (int, np.integer)) else pad_length
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise TypeError(f'pad_length must be None, an int or a tuple of ints, got {pad_length!r}')
  for v in values:
    _check_int(v, f'pad_length entry {v!r} of {pad_length!r}')
  return tuple(sorted(int(v) for v in values)) or None


def _token_list(tokens, name: str) -> list:
  """forbidden_tokens / stop_tokens: a sequence of str or int; one str or int is one token
  (not a sequence of its characters)."""
  if tokens is None:
    return []
  if isinstance(tokens, (str, int, np.integer)) and not isinstance(tokens, bool):
    return [tokens]
  if not isinstance(tokens, (list, tuple, set, frozenset, np.ndarray)):
    raise TypeError(f'{name} must be a sequence of str or int tokens, got {type(tokens).__name__}')
  bad = [t for t in tokens if isinstance(t, bool) or not isinstance(t, (str, int, np.integer))]
  if bad:
    raise TypeError(f'{name} must hold str or int tokens, got {bad[0]!r}')
  return list(tokens)


def _check_sampling(method, name: str, vocab_size: int) -> None:
  """A sampling method: has get_next_tokens, is hashable (a static jit argument), and
  fits the vocabulary (its own `check(vocab_size)` where it has one)."""
  if isinstance(method, type):
    raise TypeError(f'{name} must be a sampling method instance, e.g. {method.__name__}(); got '
                    f'the class {method.__name__} itself')
  if not callable(getattr(method, 'get_next_tokens', None)):
    raise TypeError(f'{name} must be a sampling method (e.g. gemma4.sampling.Greedy(), '
                    f'TopkSampling(k=40), Combined()), got {type(method).__name__}')
  try:
    hash(method)
  except TypeError as e:
    raise TypeError(f'{name} must be hashable (a frozen dataclass), got {method!r}') from e
  check = getattr(method, 'check', None)
  if callable(check):
    check(vocab_size)


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
  per-token log-probabilities; `mesh` (a jax.sharding.Mesh, gemma4.sharding.make_mesh)
  places the parameters, KV cache and batch on its devices by `sharding_rules`
  (gemma4.sharding.DEFAULT_RULES updated by the entries given).
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
  mesh: jax.sharding.Mesh | None = None
  sharding_rules: Mapping[str, str | None] | None = None

  def __post_init__(self):
    if not isinstance(self.model, Model):
      raise TypeError(f'model must be a gemma4 Model (e.g. gemma4.models.Gemma4_E2B(), or '
                      f'gemma4.models.from_reference(official_model)); got {type(self.model).__name__}')
    tokenizer = self.tokenizer
    if tokenizer is None:
      raise ValueError(f'no tokenizer is known for model {self.model.name!r}: pass '
                       'tokenizer=gemma4.Gemma4Tokenizer("path/to/tokenizer.model")')
    if isinstance(tokenizer, (str, os.PathLike)):  # a path to a SentencePiece model
      cls = Gemma3Tokenizer if self.model.config.family == 'gemma3' else Gemma4Tokenizer
      tokenizer = cls(tokenizer)
      object.__setattr__(self, 'tokenizer', tokenizer)
    if not isinstance(tokenizer, Gemma4Tokenizer):
      raise TypeError(f'tokenizer must be a gemma4.Gemma4Tokenizer or the path of a '
                      f'SentencePiece .model file, got {type(tokenizer).__name__}')
    if tokenizer.vocab_size != self.model.config.vocab_size:
      raise ValueError(f'the tokenizer has {tokenizer.vocab_size} pieces but the model '
                       f'{self.model.config.vocab_size}; they must match')
    _check_sampling(self.sampling, 'sampling', self.model.config.vocab_size)
    for name in ('cache_length', 'max_out_length', 'audio_sample_rate', 'audio_seq_length',
                 'patch_size', 'pooling_kernel_size'):
      _check_int(getattr(self, name), name)
    _images.check_budget(self.max_soft_tokens)  # one of 70, 140, 280, 560, 1120
    vision = self.model.config.vision
    if self.model.has_vision:
      for name, want in (('patch_size', vision.patch_size),
                         ('pooling_kernel_size', vision.pooling_kernel_size)):
        if getattr(self, name) != want:
          raise ValueError(f'{name}={getattr(self, name)} disagrees with the vision encoder of '
                           f'{self.model.name!r}, which has {name} {want}')
    object.__setattr__(self, '_buckets', _buckets(self.pad_length))
    object.__setattr__(self, 'params', unwrap(self.params))
    self.model.check_params(self.params)
    sharder = Sharder.checked(self.mesh, self.sharding_rules)
    object.__setattr__(self, '_sharder', sharder)
    if sharder is not None:  # the parameters go where the rules say (kept if already there)
      object.__setattr__(self, 'params', sharder.put_params(self.model.param_specs(), self.params))
    if jax.default_backend() == 'cpu' and quant.describe(self.params) == 'bfloat16':
      warnings.warn('bfloat16 weights on a CPU: XLA CPU converts every weight to float32 on '
                    'every decode step, many times slower than int8 or float32 weights; load '
                    'with gemma4.load_checkpoint(..., quantize="auto") or pass '
                    'gemma4.quant.quantize_params(params) for int8', stacklevel=2)
    forbidden = tuple(tokenizer.token_id(t) for t in _token_list(self.forbidden_tokens, 'forbidden_tokens'))
    stop = tuple(tokenizer.token_id(t) for t in _token_list(self.stop_tokens, 'stop_tokens'))
    object.__setattr__(self, '_forbidden', forbidden + tuple(tokenizer.FORBIDDEN_TOKENS))
    object.__setattr__(self, '_end', tuple(int(t) for t in tokenizer.END_TOKENS) + stop)

  @property
  def end_tokens(self) -> tuple[int, ...]:
    """The ids that end a reply: the tokenizer's end tokens and `stop_tokens`."""
    return self._end

  @property
  def forbidden_ids(self) -> tuple[int, ...]:
    """The ids never sampled: `forbidden_tokens` and the tokenizer's forbidden tokens."""
    return self._forbidden

  @functools.cached_property
  def _token_bytes(self) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The vocabulary's bytes (Gemma4Tokenizer.token_bytes) on the device, put there once
    for every `sample(stop=)` call (3 MB for 262144 tokens)."""
    return tuple(jnp.asarray(x) for x in self.tokenizer.token_bytes())

  def _loop(self, sampling) -> _Loop:
    return _Loop(self.model.config, sampling or self.sampling, self._end, self._forbidden,
                 self._sharder)

  def _prepare(self, prompt, images, audio, audio_lengths, max_new_tokens, last_state,
               sharding, rng, max_soft_tokens=None, sampling=None, return_state=False):
    """Checks every argument and tokenizes, then prepares the media; nothing is computed
    on the model yet. Every check that can reject the call (types, counts, cache fit)
    runs before the costly host work (image resizing, audio resampling)."""
    if prompt is None:
      raise TypeError('prompt must be a str or a non-empty sequence of str, got None')
    if not isinstance(return_state, (bool, np.bool_)):
      raise TypeError(f'return_state must be True or False, got {return_state!r}')
    batched = not isinstance(prompt, str)
    if batched and not isinstance(prompt, Sequence):
      raise TypeError(f'prompt must be a str or a non-empty sequence of str, got '
                      f'{type(prompt).__name__}')
    prompts = list(prompt) if batched else [prompt]
    if not prompts:
      raise ValueError('prompt is an empty list: expected a str or a non-empty sequence of str')
    if not all(isinstance(p, str) for p in prompts):
      raise TypeError(f'prompt must be a str or a sequence of str, got {[type(p).__name__ for p in prompts]}')
    if max_new_tokens is not None:
      _check_int(max_new_tokens, 'max_new_tokens')
      if max_new_tokens > self.max_out_length:
        raise ValueError(f'max_new_tokens={max_new_tokens} must be in [1, max_out_length='
                         f'{self.max_out_length}]')
    if sampling is not None:
      _check_sampling(sampling, 'sampling', self.model.config.vocab_size)
    budget = _images.check_budget(self.max_soft_tokens if max_soft_tokens is None else max_soft_tokens)
    if sharding is not None and not isinstance(sharding, jax.sharding.Sharding):
      raise TypeError(f'sharding must be None or a jax.sharding.Sharding (it places the prompt '
                      f'batch), got {type(sharding).__name__}')
    key = normalize_rng(rng)
    if isinstance(last_state, SamplerOutput):
      last_state = last_state.state  # the state of a turn, as returned with return_state
    if last_state is not None:
      self._check_state(last_state, len(prompts))
    ids = [self.tokenizer.encode(p, add_bos=last_state is None) for p in prompts]
    if any(not t for t in ids):
      raise ValueError('a prompt encodes to no tokens: expected at least one token per prompt')
    ids, pictures, clips = self._expand_media(ids, images, audio, audio_lengths, budget)
    before = np.zeros(len(ids), np.int64) if last_state is None else to_host(last_state.cache.next_pos)
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
    if sharding is not None:
      self._check_sharding(sharding, tokens.shape)
    elif self._sharder is not None:
      sharding = self._sharder.batch(tokens.shape)
    tokens, valid = jnp.asarray(tokens), jnp.asarray(valid)
    if sharding is not None:
      tokens, valid = jax.device_put(tokens, sharding), jax.device_put(valid, sharding)
    if last_state is not None:
      cache = last_state.cache
    else:
      dtype = quant.compute_dtype(self.params)
      cache = init_cache(self.model.config, len(ids), self.cache_length, dtype)
      if self._sharder is not None:
        cache = self._sharder.put_cache(cache)
    soft, audio_soft = self._soft_tokens(pictures, clips, budget, length)
    return (batched, tokens, valid, cache, key, max_new_tokens or self.max_out_length,
            (soft, audio_soft))

  def _check_sharding(self, sharding, shape) -> None:
    """`sharding=` (the prompt batch's placement) must split the [B, T] prompt tokens
    evenly and, with a mesh, lie on the mesh's devices."""
    try:
      sharding.shard_shape(shape)
    except ValueError as e:
      raise ValueError(f'sharding={sharding} cannot place the prompt batch of {shape[0]} '
                       f'rows (tokens {tuple(shape)}): {e}') from None
    if self.mesh is not None and sharding.device_set != set(self.mesh.devices.flat):
      raise ValueError(f'sharding={sharding} places the prompt batch on '
                       f'{len(sharding.device_set)} devices other than the sampler mesh\'s '
                       f'{self.mesh.devices.size} ({dict(self.mesh.shape)})')

  def _expand_media(self, ids, images, audio, audio_lengths, budget):
    """Checks each prompt's media (not yet resized or resampled) and expands its
    placeholders into soft-token slots: (ids, images per prompt, clips per prompt)."""
    if images is not None and not self.model.has_vision:  # check_params saw the encoder
      raise ValueError(f'images were given but model {self.model.name!r} has no vision encoder '
                       '(load it with text_only=False, or a checkpoint that has one)')
    if audio is not None and not self.model.has_audio:
      why = ('it has no audio encoder' if self.model.config.audio is None else
             'it was built text_only (use text_only=False, or a checkpoint with its audio tower)')
      raise ValueError(f'audio was given but model {self.model.name!r} cannot take it: {why}')
    pictures = media.images_per_prompt(ids, images)  # checked, not yet resized
    clips = media.audio_per_prompt(ids, audio, audio_lengths, self.audio_sample_rate,
                                   self.audio_seq_length * 4 * _audio.HOP)  # not yet resampled
    if pictures is not None:
      counts = [[_images.soft_token_count(*img.shape[:2], budget, self.patch_size,
                                          self.pooling_kernel_size) for img in row]
                for row in pictures]
      ids = [media.expand_image_tokens(t, c, i) for i, (t, c) in enumerate(zip(ids, counts))]
    if clips is not None:
      ids = [media.expand_audio_tokens(t, [c.soft_token_counts for c in row], i)
             for i, (t, row) in enumerate(zip(ids, clips))]
    return ids, pictures, clips

  def _soft_tokens(self, pictures, clips, budget, length):
    """The image and audio soft tokens of every row in slot order, [B, length, D] each
    (None where a kind is absent): the costly host and encoder work."""
    soft = audio_soft = None
    if pictures is not None and any(pictures):
      rows = [[_images.preprocess(img, budget, self.patch_size, self.pooling_kernel_size)
               for img in row] for row in pictures]
      soft = soft_tokens_for_rows(self.params, self.model.config, rows, length)
    if clips is not None and any(clips):
      rows = [[clip.segments() for clip in row] for row in clips]
      audio_soft = audio_soft_tokens_for_rows(self.params, self.model.config, rows, length)
    return soft, audio_soft

  def encode(self, prompt: str, *, images=None, audio=None, audio_lengths=None,
             max_soft_tokens: int | None = None, add_bos: bool = True) -> EncodedPrompt:
    """One prompt as the decoder takes it: its ids with every image and audio
    placeholder expanded into soft-token slots, and those soft tokens (encoded now).
    Checked as `sample` checks it; the cache fit is the caller's to check."""
    if not isinstance(prompt, str):
      raise TypeError(f'prompt must be a str, got {type(prompt).__name__}')
    budget = _images.check_budget(self.max_soft_tokens if max_soft_tokens is None else max_soft_tokens)
    ids = [self.tokenizer.encode(prompt, add_bos=add_bos)]
    if not ids[0]:
      raise ValueError('the prompt encodes to no tokens: expected at least one token')
    ids, pictures, clips = self._expand_media(ids, images, audio, audio_lengths, budget)
    soft, audio_soft = self._soft_tokens(pictures, clips, budget, len(ids[0]))
    return EncodedPrompt(np.asarray(ids[0], np.int32), soft, audio_soft)

  def prefill_row(self, prompt: EncodedPrompt, cache: KVCache, *, start: int = 0,
                  owned: bool = True) -> tuple[jax.Array, KVCache]:
    """Writes `prompt.ids[start:]` into a cache of one row after the tokens it holds
    (its next position must be where `start` goes); returns the logits [1, V]
    (float32) of the prompt's last token and the cache. The tokens go in padded to a
    `pad_length` bucket, or in PREFILL_CHUNK chunks, as in `sample`. owned: the cache
    is not the caller's (it is updated in place)."""
    ids = prompt.ids[start:]
    if cache.batch_size != 1 or not 0 <= start < len(prompt.ids):
      raise ValueError(f'prefill_row takes a cache of one row and a start in [0, '
                       f'{len(prompt.ids)}), got {cache.batch_size} rows and start {start}')
    def after(soft, slot):  # the soft tokens of the slots from `start` on
      if soft is None:
        return None
      return soft[:, int(np.sum(prompt.ids[:start] == slot)):]
    soft = (after(prompt.soft, media.IMAGE_SLOT), after(prompt.audio_soft, media.AUDIO_SLOT))
    length = pad_to_bucket(len(ids), self._buckets)
    if length > PREFILL_CHUNK:
      length = -(-len(ids) // PREFILL_CHUNK) * PREFILL_CHUNK
    tokens = np.zeros((1, length), np.int32)
    tokens[0, :len(ids)] = ids
    valid = jnp.asarray(np.arange(length)[None] < len(ids))
    soft = tuple(None if x is None else
                 jnp.pad(x, [(0, 0), (0, max(0, length - x.shape[1])), (0, 0)])[:, :length]
                 for x in soft)
    return self._fill(self._loop(None), jnp.asarray(tokens), valid, cache, soft, owned)

  def _fill(self, loop: _Loop, tokens, valid, cache, soft, owned: bool):
    """Prompts [B, T] into the cache chunk by chunk (an image of a model whose soft
    tokens see each other both ways is never split): the logits [B, V] of each row's
    last token, and the cache."""
    embeds = vision_mask = None
    if soft[0] is not None or soft[1] is not None:
      embeds, vision_mask = loop.embed(self.params, tokens, *soft)
    whole = (image_spans(to_host(tokens))
             if self.model.config.bidirectional_vision and soft[0] is not None else [])
    lengths = to_host(valid).sum(axis=1)
    logits = jnp.zeros((tokens.shape[0], self.model.config.vocab_size), jnp.float32)
    chunk = min(tokens.shape[1], PREFILL_CHUNK)  # a short prompt goes in one pass
    for a, b in chunk_bounds(tokens.shape[1], chunk, whole):
      size = -(-(b - a) // chunk) * chunk  # few compiled chunk shapes
      def part(x):
        if x is None:
          return None
        return jnp.pad(x[:, a:b], [(0, 0), (0, size - (b - a))] + [(0, 0)] * (x.ndim - 2))
      is_last = jnp.asarray((lengths > a) & (lengths <= b))
      logits, cache = loop.chunk(self.params, part(tokens), part(valid), part(embeds),
                                 part(vision_mask), cache, logits, is_last, owned=owned)
      owned = True
    if loop.sharder is not None:  # laid out as the rules say, as a decode step returns it
      cache = loop.jit_placed(cache)
    return logits, cache

  def _check_state(self, state, n_prompts: int) -> None:
    """A last_state that this sampler can continue: its type, batch and cache layout."""
    if not isinstance(state, SamplingState):
      raise TypeError(f'last_state must be the SamplingState of an earlier turn (out.state of '
                      f'sample(..., return_state=True)), got {type(state).__name__}')
    if state.batch_size != n_prompts:
      raise ValueError(f'last_state holds {state.batch_size} conversations but {n_prompts} '
                       'prompts were given; they must match')
    if state.cache.length != self.cache_length:
      raise ValueError(f'last_state has a cache of {state.cache.length} tokens but this '
                       f'sampler has cache_length={self.cache_length}')
    if state.predicted_tokens.shape[1] != self.max_out_length:
      raise ValueError(f'last_state comes from a sampler with max_out_length='
                       f'{state.predicted_tokens.shape[1]}, this one has {self.max_out_length}')
    want = jax.eval_shape(lambda: init_cache(self.model.config, n_prompts, self.cache_length))
    got_shapes = [None if x is None else tuple(x.shape) for x in state.cache.k]
    want_shapes = [None if x is None else tuple(x.shape) for x in want.k]
    if got_shapes != want_shapes:
      raise ValueError(f'last_state was made by another model or config: its KV cache has '
                       f'{len(got_shapes)} layers of shapes {got_shapes}, model '
                       f'{self.model.name!r} needs {want_shapes}')

  def _prefill(self, loop: _Loop, tokens, valid, cache, key, zeros, soft, owned: bool,
               allowed=None, penalties=None, stops=None) -> SamplingState:
    """The prompt into the cache, the first token sampled: in one pass up to
    PREFILL_CHUNK tokens, else chunk by chunk (an image of a model whose soft tokens see
    each other both ways is never split). owned: the cache is not the caller's."""
    if tokens.shape[1] <= PREFILL_CHUNK:
      return loop.prefill(self.params, tokens, valid, cache, key, zeros, *soft, allowed,
                          penalties, stops, owned=owned)
    logits, cache = self._fill(loop, tokens, valid, cache, soft, owned)
    return loop.jit_start(logits, cache, key, zeros, allowed, penalties, stops)

  def _penalties(self, repetition, presence, frequency, logit_bias):
    """The call's penalties, checked now; made for the prompt's tokens later."""
    vocab = self.model.config.vocab_size
    values = _sampling.check_penalties(
        vocab, repetition_penalty=repetition, presence_penalty=presence,
        frequency_penalty=frequency, logit_bias=logit_bias, token_id=self.tokenizer.token_id)
    return functools.partial(_sampling.penalties, values, vocab_size=vocab)

  def _decode_texts(self, state: SamplingState, stops: tuple[str, ...] = ()) -> list[str]:
    texts = [self.tokenizer.decode(row) for row in to_host(state.predicted_tokens)]
    return [cut(t, stops)[0] for t in texts] if stops else texts

  def sample(self, prompt: str | Sequence[str], *, images=None, audio=None,
             audio_lengths=None, max_new_tokens: int | None = None, sampling=None,
             rng=None, return_state: bool = False, last_state: SamplingState | SamplerOutput | None = None,
             sharding=None, max_soft_tokens: int | None = None, repetition_penalty=None,
             presence_penalty=None, frequency_penalty=None, logit_bias=None, stop=None
             ) -> str | list[str] | SamplerOutput:
    """Samples a continuation of each prompt.

    A str prompt returns a str, a sequence returns a list. With `return_state`, returns
    SamplerOutput(text, state); pass the state as `last_state` to continue the
    conversation from the cache (BOS is added on the first turn only). As in the
    official sampler, the last token sampled in a turn (usually the end token, such
    as `<turn|>`) is not part of the history: the next prompt starts in its place, so
    begin that prompt with it to keep it. Unlike the official last_state path, the
    result equals sampling the whole history as one prompt.

    repetition_penalty, presence_penalty, frequency_penalty, logit_bias: see
    gemma4.sampling.Penalties (logit_bias maps a token id or its text to a bias); the
    values are data, so changing them does not recompile.

    stop: a str or a list of str: each row's text ends before the first of them, and
    that row stops decoding at the token that completes it (found inside the jitted
    loop, by an automaton over the bytes of the sampled tokens: other stop strings of
    about the same total length run the same compiled program). The row's tokens end
    with that token; only the text is cut.
    """
    stops = check_stop(stop)
    pen = self._penalties(repetition_penalty, presence_penalty, frequency_penalty, logit_bias)
    batched, tokens, valid, cache, key, n, soft = self._prepare(
        prompt, images, audio, audio_lengths, max_new_tokens, last_state, sharding, rng,
        max_soft_tokens, sampling, return_state)
    loop = self._loop(sampling)
    zeros = jnp.zeros((tokens.shape[0], self.max_out_length), jnp.int32)
    stop_matcher = matcher(stops, self._token_bytes, tokens.shape[0]) if stops else None
    state = self._prefill(loop, tokens, valid, cache, key, zeros, soft, last_state is None,
                          None, pen(tokens, valid), stop_matcher)
    state = loop.loop(self.params, state, jnp.asarray(n, jnp.int32))
    texts = self._decode_texts(state, stops)
    text = texts if batched else texts[0]
    return SamplerOutput(text, state) if return_state else text

  def stream(self, prompt: str, *, images=None, audio=None, audio_lengths=None,
             max_new_tokens: int | None = None,
             sampling=None, rng=None, last_state: SamplingState | None = None,
             return_state: bool = False, sharding=None, max_soft_tokens: int | None = None,
             stop=None, **penalties) -> Iterator[str] | Iterator[SamplerOutput]:
    """Yields the text of one prompt piece by piece as it is decoded (the end token's
    text is not yielded). The decode step is the one `sample` loops over, so the
    tokens equal `sample`'s. With `return_state`, yields SamplerOutput(piece, state);
    the last one's state continues the conversation (an earlier one is handed on to the
    next decode step: only the last stays valid). Each piece decodes a window of the last
    ids, not the whole text; the next step computes while a piece is shown.

    stop: a str or a list of str: the text ends before the first of them (found across
    pieces; decoding stops there). Penalties: as in `sample`.
    """
    stops = StopText(check_stop(stop))
    ids = self.stream_tokens(prompt, images=images, audio=audio, audio_lengths=audio_lengths,
                             max_new_tokens=max_new_tokens, sampling=sampling, rng=rng,
                             last_state=last_state, sharding=sharding,
                             max_soft_tokens=max_soft_tokens, return_state=return_state,
                             **penalties)
    text = IncrementalDecoder(self.tokenizer)
    for token in ids:
      if token not in self._end:
        piece = text.add(token)
        if stops.stops:
          piece, found = stops.add(piece)
          if found:
            ids.close()  # decoding ends here; the state is the final one
        if piece:
          yield SamplerOutput(piece, ids.state) if return_state else piece
        if stops.found:
          break
    rest = '' if stops.found else text.rest()
    if stops.stops and not stops.found:
      rest, _ = stops.add(rest)
      rest += stops.flush()
    if return_state:  # always: the caller needs the final state
      yield SamplerOutput(rest, ids.state)
    elif rest:
      yield rest

  def stream_tokens(self, prompt: str, *, images=None, audio=None, audio_lengths=None,
                    max_new_tokens: int | None = None, sampling=None, rng=None,
                    last_state: SamplingState | None = None, sharding=None,
                    max_soft_tokens: int | None = None, allowed_tokens=None,
                    return_state: bool = False, repetition_penalty=None,
                    presence_penalty=None, frequency_penalty=None, logit_bias=None
                    ) -> TokenStream:
    """The ids one prompt's decode samples, one at a time, its end token included; the
    stream's `state` is the SamplingState after the last (final once it is exhausted).

    allowed_tokens: None, or a function of the ids sampled so far that returns the ids
    the next token may be (a sequence of ids, a bool mask [vocab], or None for any);
    it runs on the host before every step (HF's `prefix_allowed_tokens_fn`), so the
    steps are not pipelined then. Checked before any compute, like `stream`.
    """
    if not isinstance(prompt, str):
      raise TypeError(f'stream takes one str prompt, got {type(prompt).__name__}')
    if allowed_tokens is not None and not callable(allowed_tokens):
      raise TypeError(f'allowed_tokens must be None or a function of the ids so far, got '
                      f'{type(allowed_tokens).__name__}')
    pen = self._penalties(repetition_penalty, presence_penalty, frequency_penalty, logit_bias)
    _, tokens, valid, cache, key, n, soft = self._prepare(
        prompt, images, audio, audio_lengths, max_new_tokens, last_state, sharding, rng,
        max_soft_tokens, sampling, return_state)
    loop = self._loop(sampling)
    mask = None if allowed_tokens is None else _Allowed(allowed_tokens, self.model.config.vocab_size)
    zeros = jnp.zeros((1, self.max_out_length), jnp.int32)
    first = None if mask is None else mask([])
    state = self._prefill(loop, tokens, valid, cache, key, zeros, soft, last_state is None, first,
                          pen(tokens, valid))
    n = jnp.asarray(n, jnp.int32)
    # compiled now, before the first token, not after the last; its tokens [1, N] start
    # with the first token, which the stream reads without holding the state
    first = loop.jit_finish(state, n)[0]
    return TokenStream(self.params, loop, state, n, mask, first)


class _Allowed:
  """A user's allowed_tokens function as the [1, V] mask a step takes, checked."""

  def __init__(self, fn, vocab_size: int):
    self.fn, self.vocab_size = fn, vocab_size

  def __call__(self, ids: list[int]) -> jax.Array:
    got = self.fn(list(ids))
    mask = np.ones((1, self.vocab_size), bool)
    if got is None:
      return jnp.asarray(mask)
    arr = np.asarray(got)
    if arr.dtype == bool:
      if arr.shape != (self.vocab_size,):
        raise ValueError(f'allowed_tokens returned a bool mask of shape {arr.shape}, expected '
                         f'({self.vocab_size},)')
      mask[0] = arr
    else:
      if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
        raise ValueError(f'allowed_tokens must return None, a bool mask or a non-empty '
                         f'sequence of token ids; got {got!r:.80}')
      if arr.min() < 0 or arr.max() >= self.vocab_size:
        raise ValueError(f'allowed_tokens returned ids outside [0, {self.vocab_size}): '
                         f'{arr[(arr < 0) | (arr >= self.vocab_size)][:5].tolist()}')
      mask[0] = False
      mask[0, arr] = True
    if not mask.any():
      raise ValueError('allowed_tokens allowed no token at all')
    return jnp.asarray(mask)


class TokenStream:
  """Iterates over the ids a decode samples (see Gemma4Sampler.stream_tokens).

  Without allowed_tokens the device runs one step ahead of the host: step k+1 is
  dispatched before step k's token is read, so it computes while the caller handles the
  token. A step whose condition no longer holds leaves the state as it is. `state` is
  the state to hand on: while iterating, the one the next step will consume; at the end,
  the final state (its tokens, log-probabilities and cache_full set).
  """

  def __init__(self, params, loop: _Loop, state: SamplingState, n, mask, first: jax.Array):
    self._params, self._loop, self._n, self._mask = params, loop, n, mask
    self._first = first  # [1, N] int32: the tokens of `state`, the first one sampled
    self.state = state
    self._gen = self._run(state)

  def __iter__(self):
    return self._gen

  def close(self) -> None:
    """Stops the decode here: `state` becomes the final state of what was sampled (with
    the device one step ahead, that step's token is in it too)."""
    self._gen.close()

  def _run(self, state):
    loop, params, n = self._loop, self._params, self._n
    try:
      if self._mask is None:
        # The step is dispatched (so compiled, or read from the compilation cache) while
        # the prompt is still being computed, before the first token is read.
        pending = loop.stream_step(params, state, n)
        token = int(to_host(self._first)[0, 0])  # the first token, sampled from the prompt
        while True:
          state = self.state = pending[0]
          yield int(token)
          state, going, token = pending
          pending = loop.stream_step(params, state, n)
          going, token = bool(to_host(going)), int(to_host(token))
          if not going:  # the while_loop's own condition, before that step
            break
        state = pending[0]
      else:
        token = int(to_host(self._first)[0, 0])
        ids = [token]
        while True:
          self.state = state
          yield int(token)
          if int(token) in loop.end_tokens or len(ids) >= int(n):
            break  # done: the hook is not asked for a token that will not come
          state, going, token = loop.stream_step(params, state, n, self._mask(ids))
          going, token = bool(to_host(going)), int(to_host(token))
          if not going:
            break
          ids.append(int(token))
    finally:  # also when the caller stops early (close): the state it has is valid
      tokens, logprobs, cache_full = loop.jit_finish(state, n)
      self.state = dataclasses.replace(state, predicted_tokens=tokens, logprobs=logprobs,
                                       cache_full=cache_full)
