"""Sampling methods: (logits [B, V], rng) -> tokens [B]. Pure, frozen, traceable.

Greedy, RandomSampling, TopkSampling and TopPSampling compute what the official
classes of the same names compute (same tokens for the same key). `Combined` chains
temperature, top-k, top-p and min-p, which the official classes cannot express.
Each method checks its fields when it is made (TypeError / ValueError naming the field,
the value and what is expected) and `check(vocab_size)` refuses a top-k above the
vocabulary; the methods stay frozen and hashable (static jit arguments).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry2x32_p


def _field(method: Any, name: str) -> str:
  return f'{type(method).__name__}({name}={getattr(method, name)!r})'


def _check_real(method: Any, name: str, low: float, high: float = math.inf, *,
                low_open: bool = False) -> None:
  """The field `name` is a finite real number (not bool, not NaN) from low (excluded if
  low_open) to high (included)."""
  value = getattr(method, name)
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise TypeError(f'{_field(method, name)}: {name} must be a real number, '
                    f'got {type(value).__name__}')
  try:
    v = float(value)
  except OverflowError:  # an int too large for a float
    v = math.inf
  if not (math.isfinite(v) and (v > low if low_open else v >= low) and v <= high):
    if high == math.inf:
      want = f'finite and {">" if low_open else ">="} {low:g}'
    else:
      want = f'in {"(" if low_open else "["}{low:g}, {high:g}]'
    raise ValueError(f'{_field(method, name)}: {name} must be {want}')


# The smallest positive temperature: logits (|x| up to ~1e3) divided by less overflow
# float32 (or come close), and the draw would no longer be the distribution it names.
MIN_TEMPERATURE = 1e-6


def _check_temperature(method: Any, allow_zero: bool = False) -> None:
  _check_real(method, 'temperature', 0.0, low_open=not allow_zero)
  t = float(getattr(method, 'temperature'))
  if 0 < t < MIN_TEMPERATURE:
    raise ValueError(f'{_field(method, "temperature")}: temperature must be 0 (greedy'
                     f'{", with Combined" if allow_zero else ": use Greedy()"}) or at least '
                     f'{MIN_TEMPERATURE:g}; smaller ones overflow float32 logits')


def _check_k(method: Any, name: str, allow_none: bool = False) -> None:
  """The field `name` is an int >= 1 (or None where allowed); stored as a Python int."""
  value = getattr(method, name)
  if value is None and allow_none:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    want = 'an int >= 1 or None' if allow_none else 'an int >= 1'
    raise TypeError(f'{_field(method, name)}: {name} must be {want}, '
                    f'got {type(value).__name__}')
  if value < 1:
    raise ValueError(f'{_field(method, name)}: {name} must be >= 1'
                     + (' or None' if allow_none else ''))
  object.__setattr__(method, name, int(value))  # numpy ints hash and trace as ints


def _check_k_fits(method: Any, name: str, vocab_size: int) -> None:
  value = getattr(method, name)
  if value is not None and value > vocab_size:
    raise ValueError(f'{_field(method, name)}: {name} must be at most the vocabulary size '
                     f'{vocab_size}')


class SamplingMethod(abc.ABC):
  """Any object with this method that JAX can trace works as a sampling method."""

  @abc.abstractmethod
  def get_next_tokens(self, logits: jax.Array, rng: jax.Array) -> jax.Array:
    """logits: [B, V] (before softmax); rng: a PRNG key -> tokens [B] int."""

  def check(self, vocab_size: int) -> None:
    """Raises ValueError if this method cannot run on a vocabulary of this size."""
    del vocab_size


def argmax(logits: jax.Array) -> jax.Array:
  """`jnp.argmax` over the last axis (the first maximum; the first NaN if any), as two
  plain reductions: XLA CPU runs argmax's paired value-index reduction unvectorized
  (262144 logits: 1.38 ms against 0.67 ms, bench/decode_step.txt). From 8 rows of
  [B, 262144] on, one row at a time (16 rows: 7 ms where all at once take 23 ms and
  jnp.argmax 11 ms on this 2-core machine)."""
  if logits.ndim == 2 and logits.shape[0] >= 8:
    return jax.lax.map(lambda row: _argmax(row[None])[0], logits)
  return _argmax(logits)


def _argmax(logits: jax.Array) -> jax.Array:
  nan = jnp.isnan(logits)
  hit = jnp.where(jnp.any(nan, axis=-1, keepdims=True), nan,
                  logits == jnp.max(logits, axis=-1, keepdims=True))
  index = jnp.arange(logits.shape[-1], dtype=jnp.int32)
  return jnp.min(jnp.where(hit, index, logits.shape[-1]), axis=-1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Greedy(SamplingMethod):
  """The most likely token."""

  def get_next_tokens(self, logits, rng):
    del rng
    return argmax(logits)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomSampling(SamplingMethod):
  """A draw from softmax(logits / temperature)."""

  temperature: float = 1.0

  def __post_init__(self):
    _check_temperature(self)

  def get_next_tokens(self, logits, rng):
    return jax.random.categorical(rng, logits / self.temperature, axis=-1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopkSampling(SamplingMethod):
  """A draw among the k most likely tokens, at `temperature`."""

  temperature: float = 1.0
  k: int = 1

  def __post_init__(self):
    _check_temperature(self)
    _check_k(self, 'k')

  def check(self, vocab_size: int) -> None:
    _check_k_fits(self, 'k', vocab_size)

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

  def __post_init__(self):
    _check_real(self, 'p', 0.0, 1.0, low_open=True)
    _check_temperature(self)

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
    _check_temperature(self, allow_zero=True)
    _check_k(self, 'top_k', allow_none=True)
    _check_real(self, 'top_p', 0.0, 1.0, low_open=True)
    _check_real(self, 'min_p', 0.0, 1.0)

  def check(self, vocab_size: int) -> None:
    _check_k_fits(self, 'top_k', vocab_size)

  def get_next_tokens(self, logits, rng):
    if self.temperature == 0:
      return argmax(logits)
    b, vocab = logits.shape
    full = lambda v: jnp.full((b,), v)  # noqa: E731
    if b * vocab < 2**32:  # flat positions fit the counter's low word
      at = lambda ids: gumbel_at(rng, ids + vocab * jnp.arange(b, dtype=ids.dtype)[:, None])  # noqa: E731
    else:
      at = lambda ids: jnp.take_along_axis(jax.random.gumbel(rng, (b, vocab)), ids, -1)  # noqa: E731
    return _draw(logits.astype(jnp.float32) / self.temperature, full(self.top_k or 0),
                 full(self.top_p).astype(jnp.float32), full(self.min_p).astype(jnp.float32),
                 full(True), at, lambda: jax.random.gumbel(rng, (b, vocab)),
                 filters=bool(self.top_k) or self.top_p < 1.0 or self.min_p > 0.0)


# The fast path of a draw looks at this many of the most likely tokens (lax.top_k, ~0.5 ms
# on 262144 logits where a sort takes ~66 ms) and falls back to the whole vocabulary only
# when that could change the token (see `_draw`).
CANDIDATES = 256
# Above every float32 Gumbel draw of jax.random's default ('low') mode: the largest
# uniform is 1 - 2**-23, whose Gumbel is -log(-log(1 - 2**-23)) ~ 15.94.
_GUMBEL_MAX = 17.0


def gumbel_at(key: jax.Array, index: jax.Array) -> jax.Array:
  """`jax.random.gumbel(key, shape).ravel()[index]` without drawing the rest: the
  partitionable threefry (JAX's default) makes each flat position's bits a function of
  the key and that position alone. index: int positions below 2**32 (tested bitwise)."""
  if not jax.config.jax_threefry_partitionable:
    raise RuntimeError('gumbel_at needs jax_threefry_partitionable (the default)')
  k1, k2 = jax.random.key_data(key)
  lo = index.astype(jnp.uint32)
  b1, b2 = threefry2x32_p.bind(k1, k2, jnp.zeros_like(lo), lo)
  mantissa = jax.lax.shift_right_logical(b1 ^ b2, jnp.uint32(9)) | jnp.uint32(0x3F800000)
  floats = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - jnp.float32(1.0)
  tiny = jnp.float32(np.finfo(np.float32).tiny)
  uniform = jax.lax.max(tiny, floats * (jnp.float32(1.0) - tiny) + tiny)
  return -jnp.log(-jnp.log(uniform))


def _cuts(ordered, x, k, p, candidates: int):
  """The top-k and top-p thresholds of each row from its largest values `ordered`
  [B, n] (descending; n = candidates, or the whole vocabulary): kth and cutoff [B]
  (-inf where off) and whether n values sufficed [B]. The softmax's normaliser sums the
  whole row and the cumulative sum runs over the first `candidates` values first, so a
  row resolved from its candidates gets the same thresholds from the full sort."""
  vocab, n = x.shape[-1], ordered.shape[-1]
  neg = jnp.finfo(x.dtype).min
  position = jnp.arange(n)
  # ordered[i, at[i]] as a reduction: XLA CPU computes a top-k whose values are indexed
  # (or sliced) as a full sort
  pick = lambda a, at: jnp.max(jnp.where(position == at[:, None], a, -jnp.inf), axis=-1)  # noqa: E731
  cut_k = (k > 0) & (k < vocab)
  kth = jnp.where(cut_k, pick(ordered, jnp.clip(k - 1, 0, n - 1)), -jnp.inf)
  top = jnp.max(ordered, axis=-1, keepdims=True)
  z = jnp.sum(jnp.exp(jnp.where(x < kth[:, None], neg, x) - top), axis=-1, keepdims=True)
  kept = jnp.where(ordered < kth[:, None], neg, ordered)
  probs = jnp.exp(kept - top) / z
  head = jnp.cumsum(probs[:, :candidates], axis=-1)
  count = jnp.sum(head < p[:, None], axis=-1)
  if n > candidates:
    rest = head[:, -1:] + jnp.cumsum(probs[:, candidates:], axis=-1)
    count = count + jnp.sum(rest < p[:, None], axis=-1)
  cutoff = jnp.where(p < 1.0, pick(kept, jnp.minimum(count, n - 1)), -jnp.inf)
  enough = (~cut_k | (k <= n)) & ((p >= 1.0) | (head[:, -1] >= p))
  return kth, cutoff, enough


def _draw(x, k, p, m, drawing, gumbel_of, gumbel_full, *, filters: bool):
  """A draw per row from x [B, V] (logits over temperature) after the top-k, top-p and
  min-p filters of k, p, m [B] (0, 1, 0 = off): `jax.random.categorical` of the
  filtered logits, with the Gumbel noise `gumbel_full()` [B, V] whose entries at ids
  [B, C] `gumbel_of(ids)` gives. Rows where drawing [B] is False are not read.

  Exact, and cheap in the common case: the filters keep an upper set of each row's
  values, and the thresholds come from the row's CANDIDATES largest values unless a
  row needs more (top_k above it, or a nucleus reaching past it: then a full sort). The
  winner is argmax(filtered + noise); no token outside the candidates can win when none
  of them is kept or when the smallest candidate plus the largest possible noise is
  below the best candidate's score (strictly: ties go to the lowest id, as argmax's do),
  else every row draws over the whole vocabulary. A row's token never depends on the
  other rows: each path gives what the other would."""
  b, vocab = x.shape
  c = min(CANDIDATES, vocab)
  vals, ids = jax.lax.top_k(x, c)
  top = jnp.max(vals, axis=-1, keepdims=True)
  neg = jnp.finfo(x.dtype).min
  if filters:
    kth, cutoff, enough = _cuts(vals, x, k, p, c)
    kth, cutoff = jax.lax.cond(
        jnp.all(enough | ~drawing), lambda: (kth, cutoff),
        # -sort(-x) is sort(x, descending) exactly; that one XLA would share with the
        # top-k, making the top-k a full sort
        lambda: _cuts(-jnp.sort(-x, axis=-1), x, k, p, c)[:2])
    kth, cutoff = kth[:, None], cutoff[:, None]
    live = lambda v: (v >= kth) & (v >= cutoff) & (  # noqa: E731
        (m[:, None] <= 0.0) | (jnp.exp(v - top) >= m[:, None]))
  else:
    live = lambda v: jnp.ones(v.shape, bool)  # noqa: E731
  alive = live(vals)
  scores = jnp.where(alive, vals, neg) + gumbel_of(ids)
  best = jnp.max(scores, axis=-1, keepdims=True)
  token = jnp.min(jnp.where(scores == best, ids, vocab), axis=-1)
  low = jnp.min(vals, axis=-1)  # the smallest candidate
  safe = ~jnp.all(alive, axis=-1) | (low + _GUMBEL_MAX < best[:, 0])
  return jax.lax.cond(
      jnp.all(safe | ~drawing), lambda: token,
      lambda: argmax(jnp.where(live(x), x, neg) + gumbel_full()).astype(token.dtype))


__all__ = ['SamplingMethod', 'Greedy', 'RandomSampling', 'TopkSampling', 'TopPSampling',
           'Combined']


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Penalties:
  """Repetition, presence and frequency penalties and a logit bias, as arrays the decode
  step carries (any values run the same compiled program).

  repetition [B]: logits of tokens seen in the prompt or the output are divided by it
    where positive, multiplied where negative (1 = off; HF's and vLLM's rule).
  presence [B], frequency [B]: subtracted once if a token is in the output, and once per
    time it is there (OpenAI's rule; 0 = off).
  bias [B, V]: added to the logits (OpenAI's logit_bias).
  seen [B, V] bool: the prompt's and output's tokens; counts [B, V] int32: the output's.
  """

  repetition: jax.Array
  presence: jax.Array
  frequency: jax.Array
  bias: jax.Array
  seen: jax.Array
  counts: jax.Array

  def apply(self, logits: jax.Array) -> jax.Array:
    rep = self.repetition[:, None]
    logits = jnp.where(self.seen, jnp.where(logits > 0, logits / rep, logits * rep), logits)
    counts = self.counts.astype(logits.dtype)
    return (logits - self.presence[:, None] * (counts > 0) - self.frequency[:, None] * counts
            + self.bias)

  def record(self, token: jax.Array, active: jax.Array) -> Penalties:
    rows = jnp.arange(token.shape[0])
    return dataclasses.replace(
        self, seen=self.seen.at[rows, token].set(self.seen[rows, token] | active),
        counts=self.counts.at[rows, token].add(active.astype(jnp.int32)))


def check_penalties(vocab_size: int, *, repetition_penalty=None, presence_penalty=None,
                    frequency_penalty=None, logit_bias=None, token_id=None):
  """The checked values (repetition, presence, frequency, {id: bias}), or None when no
  penalty is asked for. Checked: repetition_penalty > 0, presence/frequency in [-2, 2]
  (OpenAI's range), logit_bias a dict of token (an id, or text when token_id is given)
  to a bias in [-100, 100]."""
  def real(value, name, low, high, default):
    if value is None:
      return default
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
      raise TypeError(f'{name} must be a number, got {type(value).__name__} {value!r}')
    if not (low <= float(value) <= high) or not math.isfinite(float(value)):
      raise ValueError(f'{name} must be in [{low}, {high}], got {value}')
    return float(value)

  rep = real(repetition_penalty, 'repetition_penalty', 0.0, math.inf, 1.0)
  if rep <= 0:
    raise ValueError(f'repetition_penalty must be > 0 (1 = off), got {repetition_penalty}')
  pres = real(presence_penalty, 'presence_penalty', -2.0, 2.0, 0.0)
  freq = real(frequency_penalty, 'frequency_penalty', -2.0, 2.0, 0.0)
  if logit_bias is not None and not isinstance(logit_bias, dict):
    raise TypeError(f'logit_bias must be a dict of token to bias, got {type(logit_bias).__name__}')
  bias = {}
  for tok, value in (logit_bias or {}).items():
    i = token_id(tok) if token_id is not None else tok
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < vocab_size:
      raise ValueError(f'logit_bias: {tok!r} is not a token id in [0, {vocab_size})')
    bias[int(i)] = real(value, f'logit_bias[{tok!r}]', -100.0, 100.0, 0.0)
  if (rep, pres, freq) == (1.0, 0.0, 0.0) and not bias:
    return None
  return rep, pres, freq, bias


def penalties(values, tokens, valid, vocab_size: int) -> Penalties | None:
  """The Penalties of prompts [B, T] (valid [B, T]) for check_penalties' values."""
  if values is None:
    return None
  rep, pres, freq, bias_of = values
  b = tokens.shape[0]
  bias = np.zeros((b, vocab_size), np.float32)
  for i, v in bias_of.items():
    bias[:, i] = v
  seen = np.zeros((b, vocab_size), bool)
  toks, ok = np.asarray(tokens), np.asarray(valid)
  for row in range(b):
    seen[row, toks[row][ok[row] & (toks[row] >= 0)]] = True
  full = lambda v: jnp.full((b,), v, jnp.float32)  # noqa: E731
  return Penalties(full(rep), full(pres), full(freq), jnp.asarray(bias), jnp.asarray(seen),
                   jnp.zeros((b, vocab_size), jnp.int32))


def sample_rows(logits: jax.Array, keys: jax.Array, temperature: jax.Array, top_k: jax.Array,
                top_p: jax.Array, min_p: jax.Array, *, filters: bool = True,
                drawing: bool = True) -> jax.Array:
  """One draw per row, each with its own key and settings, as data (any values run one
  compiled program): row i gets the token that `Combined(temperature[i], top_k[i] or
  None, top_p[i], min_p[i]).get_next_tokens(logits[i:i+1], keys[i])` gives (tested), so
  a request in a batch samples what it would alone. temperature 0 is greedy; top_k 0 is
  off. filters=False skips the filters: valid only when every row's top_k is 0, top_p 1
  and min_p 0; drawing=False: only when every row is greedy.

  logits [B, V] float32; keys [B] PRNG keys; the settings [B] each -> tokens [B] int32.
  """
  logits = logits.astype(jnp.float32)
  greedy = argmax(logits)
  if not drawing:
    return greedy
  t = temperature.astype(jnp.float32)
  vocab = logits.shape[-1]
  drawn = _draw(logits / jnp.where(t > 0, t, 1.0)[:, None], top_k.astype(jnp.int32),
                top_p.astype(jnp.float32), min_p.astype(jnp.float32), t > 0,
                lambda ids: jax.vmap(gumbel_at)(keys, ids),
                lambda: jax.vmap(lambda key: jax.random.gumbel(key, (1, vocab))[0])(keys),
                filters=filters)
  return jnp.where(t > 0, drawn, greedy).astype(jnp.int32)
