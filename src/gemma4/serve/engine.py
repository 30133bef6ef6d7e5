"""Continuous batching: requests join and leave a running decode batch of fixed slots.

`Engine` owns one KV cache of `slots` rows, one per request being decoded, and a thread
that loops: admit waiting requests (each prefilled alone into its own row while the
others wait one prefill, then inserted), then one decode step for every busy row, then
hand each request its token. The step runs the whole batch, or, when so few rows are busy
that decoding each alone in turn costs less (measured as the loop runs; always for a
single row), one row at a time: on CPU a one-row forward reads the weights as
matrix-vector products and is several times cheaper than a batch step, which computes
every slot (bench/serve_load.txt). A request that ends frees its row at once. Every
shape the loop compiles is fixed (the batch, the prefill buckets), so requests never
recompile.

Each row samples with its own key and settings (`sampling.sample_rows`), and a row's
computation does not depend on the others (attention and masks are per row), so a
request's tokens are the ones `Gemma4Sampler.sample` gives it alone with the same seed
(tests/test_serve_engine.py).

Prefix reuse: a freed row keeps its tokens. A new request whose prompt begins with the
tokens a free row holds (a shared system prompt, the earlier turns of a chat) takes that
row and prefills only the rest, where `kv_cache.can_truncate` says going back is exact.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import compilation
from gemma4 import quant
from gemma4 import sampling as _sampling
from gemma4.kv_cache import KVCache, can_truncate, init_cache, put_row, take_row, truncate
from gemma4.media import AUDIO_SLOT, IMAGE_SLOT
from gemma4.sampler import EncodedPrompt, Gemma4Sampler, normalize_rng
from gemma4.transformer import forward

_jit = compilation.jit

MAX_TOP_LOGPROBS = 20  # OpenAI's limit for top_logprobs


class QueueFull(RuntimeError):
  """The engine's waiting queue is full; try again later."""


class EngineStopped(RuntimeError):
  """The engine is shutting down or stopped and takes no new requests."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """How one request samples. Checked when made (errors name the field and the value).

  temperature 0 is greedy; top_k None (or 0) and top_p 1 and min_p 0 are off: the
  filters of `sampling.Combined`, which the tokens equal. seed: as `sample(rng=seed)`;
  None draws one. top_logprobs: how many of the most likely tokens to report at each
  step (0-20). allowed: None, or a function of the ids sampled so far returning the ids
  the next may be (a bool mask [vocab], a sequence of ids, or None for any), called on
  the host before each step (a grammar's mask).
  """

  max_new_tokens: int
  temperature: float = 0.0
  top_k: int | None = None
  top_p: float = 1.0
  min_p: float = 0.0
  seed: int | None = None
  top_logprobs: int = 0
  repetition_penalty: float | None = None
  presence_penalty: float | None = None
  frequency_penalty: float | None = None
  logit_bias: dict | None = None
  allowed: Callable | None = None

  def __post_init__(self):
    if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
        or self.max_new_tokens < 1:
      raise ValueError(f'max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}')
    # Combined checks temperature, top_k, top_p and min_p, naming the field.
    _sampling.Combined(temperature=self.temperature, top_k=self.top_k or None,
                       top_p=self.top_p, min_p=self.min_p)
    if isinstance(self.top_logprobs, bool) or not isinstance(self.top_logprobs, int) \
        or not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
      raise ValueError(f'top_logprobs must be an int in [0, {MAX_TOP_LOGPROBS}], got '
                       f'{self.top_logprobs!r}')
    if self.allowed is not None and not callable(self.allowed):
      raise TypeError(f'allowed must be None or a function of the ids so far, got '
                      f'{type(self.allowed).__name__}')
    if self.seed is not None:
      normalize_rng(self.seed)  # an int in [0, 2**64)

  @property
  def filters(self) -> bool:
    return bool(self.top_k) or self.top_p < 1.0 or self.min_p > 0.0

  @property
  def penalized(self) -> bool:
    return bool(self.logit_bias) or (self.repetition_penalty not in (None, 1.0)) or bool(
        self.presence_penalty) or bool(self.frequency_penalty)


@dataclasses.dataclass(frozen=True)
class Token:
  """One sampled token: its id, log-probability (before temperature and filters) and,
  with top_logprobs, the most likely ids and theirs [(id, logprob), ...]."""

  id: int
  logprob: float
  top: tuple[tuple[int, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class Finished:
  """The request's end. reason: 'stop' (an end token), 'length' (max_new_tokens, or the
  cache is full: `cache_full`), 'cancelled' (Request.cancel), or 'error' (`error`)."""

  reason: str
  cache_full: bool = False
  error: str | None = None


class Request:
  """A request in the engine. Events (Token, then one Finished) go to `sink` from the
  engine's thread; without a sink they queue up for `events()`."""

  def __init__(self, prompt: EncodedPrompt, settings: Settings, sink: Callable | None = None):
    self.prompt, self.settings = prompt, settings
    self.tokens: list[int] = []
    self.finished: Finished | None = None
    self.cancelled: str | None = None
    self.queued_at = time.perf_counter()
    self.reused = 0  # prompt tokens taken from a cached prefix
    self._events = collections.deque()
    self._ready = threading.Condition()
    self._sink = sink

  def cancel(self, reason: str = 'cancelled') -> None:
    """Ends the request at the engine's next step (its row freed then); the Finished
    event carries `reason`."""
    self.cancelled = self.cancelled or reason

  def _emit(self, event) -> None:
    if isinstance(event, Finished):
      self.finished = event
    if self._sink is not None:
      self._sink(event)
      return
    with self._ready:
      self._events.append(event)
      self._ready.notify_all()

  def events(self, timeout: float | None = None):
    """Yields the events as they come, the Finished one last (without a sink)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
      with self._ready:
        while not self._events:
          left = None if deadline is None else deadline - time.monotonic()
          if left is not None and left <= 0:
            raise TimeoutError('no event from the engine in time')
          self._ready.wait(left)
        event = self._events.popleft()
      yield event
      if isinstance(event, Finished):
        return

  def result(self, timeout: float | None = None) -> tuple[list[int], Finished]:
    """Waits for the end: the sampled ids (the end token included) and the Finished."""
    done = None
    for event in self.events(timeout):
      if isinstance(event, Finished):
        done = event
    return list(self.tokens), done


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Rows:
  """The per-row device state the decode carries: keys [N] and penalties [N, V]."""

  keys: jax.Array
  penalties: _sampling.Penalties


@dataclasses.dataclass(frozen=True)
class _Static:
  cfg: object
  forbidden: tuple[int, ...]


def _decode(static: _Static, params, cache: KVCache, last: jax.Array, active: jax.Array):
  """One token of every active row into the cache: logits [N, V] and the cache."""
  return forward(params, static.cfg, last[:, None], valid=active[:, None], cache=cache,
                 last_only=True)


def _decode_row(static: _Static, params, cache: KVCache, row: jax.Array, last: jax.Array):
  """One token of row `row` alone into the cache: logits [1, V] and the cache. The
  one-row forward is the step `Gemma4Sampler.sample` takes for one prompt."""
  one = take_row(cache, row)
  logits, one = forward(params, static.cfg, last[:, None], valid=jnp.ones((1, 1), bool),
                        cache=one, last_only=True)
  return logits, put_row(cache, row, one)


@dataclasses.dataclass(frozen=True)
class _Flags:
  """What this step's rows ask for (static: each mix compiles once, at most 16 programs):
  a draw (some temperature > 0), filters (top-k, top-p or min-p), top_logprobs,
  penalties (any penalty or logit bias)."""

  drawing: bool
  filters: bool
  top: bool
  penalized: bool


def _flags(settings: list[Settings]) -> _Flags:
  return _Flags(drawing=any(s.temperature > 0 for s in settings),
                filters=any(s.filters for s in settings),
                top=any(s.top_logprobs for s in settings),
                penalized=any(s.penalized for s in settings))


def _pick(static: _Static, flags: _Flags, logits, rows: _Rows, settings, active, allowed):
  """Samples each row's next token as `Gemma4Sampler`'s pick does (allowed, forbidden,
  penalties, then the draw); returns tokens, logprobs, top ids and logprobs (or None)
  and the rows' new keys and penalties (unchanged where not active, and everywhere
  without penalties: no row reads them then)."""
  logits = logits.astype(jnp.float32)
  if allowed is not None:
    logits = jnp.where(allowed, logits, -jnp.inf)
  if static.forbidden:
    logits = logits.at[:, jnp.asarray(static.forbidden)].set(-jnp.inf)
  split = jax.vmap(jax.random.split)(rows.keys)  # [N, 2]: the next key, this draw's
  temperature, top_k, top_p, min_p = settings
  pen = rows.penalties
  token = _sampling.sample_rows(pen.apply(logits) if flags.penalized else logits, split[:, 1],
                                temperature, top_k, top_p, min_p, filters=flags.filters,
                                drawing=flags.drawing)
  total = jax.nn.logsumexp(logits, axis=-1)
  logprob = jnp.take_along_axis(logits, token[:, None], -1)[:, 0] - total
  top_lp = top_ids = None
  if flags.top:
    top_lp, top_ids = jax.lax.top_k(logits, MAX_TOP_LOGPROBS)
    top_lp = top_lp - total[:, None]
  keys = jnp.where(active, split[:, 0], rows.keys)
  if flags.penalized:
    pen = pen.record(jnp.where(active, token, 0), active)
  return token, logprob, top_ids, top_lp, _Rows(keys, pen)


@dataclasses.dataclass
class _Slot:
  held: list[int] = dataclasses.field(default_factory=list)  # the ids in its cache row
  request: Request | None = None
  last_used: float = 0.0


class Engine:
  """Continuous batching over a Gemma4Sampler's model, params, tokenizer, cache_length,
  pad_length buckets and end and forbidden tokens.

  slots: rows decoded together. max_queue: requests waiting for a row (beyond those the
  free rows take next) before `submit` raises QueueFull. `start()` runs the loop on a
  thread; `stop()` ends it.
  """

  def __init__(self, sampler: Gemma4Sampler, *, slots: int = 4, max_queue: int = 64):
    for name, value in (('slots', slots), ('max_queue', max_queue)):
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be an int >= 1, got {value!r}')
    self.sampler, self.num_slots, self.max_queue = sampler, slots, max_queue
    cfg = sampler.model.config
    self.cfg, self.vocab = cfg, cfg.vocab_size
    self.cache_length = sampler.cache_length
    self.end_tokens = frozenset(sampler.end_tokens)
    self._dtype = quant.compute_dtype(sampler.params)
    static = _Static(cfg, tuple(sampler.forbidden_ids))
    self._decode = functools.partial(_jit(_decode, static_argnums=0, donate_argnums=2), static)
    self._decode_row = functools.partial(
        _jit(_decode_row, static_argnums=0, donate_argnums=2), static)
    self._pick = _jit(_pick, static_argnums=(0, 1), donate_argnums=3)
    self._static = static
    self._take = _jit(take_row)
    self._truncate = _jit(truncate, donate_argnums=0)
    self._put = _jit(put_row, donate_argnums=0)
    self._put_rows = _jit(lambda rows, i, one: jax.tree.map(
        lambda x, y: jax.lax.dynamic_update_slice_in_dim(x, y, i, 0), rows, one),
        donate_argnums=0)
    self._cache = init_cache(cfg, slots, self.cache_length, self._dtype)
    keys = jnp.stack([jax.random.key(0)] * slots)
    self._rows = _Rows(keys, self._no_penalties(slots))
    self._slots = [_Slot() for _ in range(slots)]
    self._last = np.zeros(slots, np.int32)
    self._waiting: collections.deque[Request] = collections.deque()
    self._admitting = 0  # taken off the queue, not yet in a row
    self._lock = threading.Condition()
    self._thread: threading.Thread | None = None
    self._running = False
    self._accepting = True
    self.stats = collections.Counter()
    # Seconds per step, measured as the loop runs (the first of each, a compile, is left
    # out): a whole-batch step, and one row decoded alone. A few busy rows go one by one
    # when that costs less than the batch, which always computes every slot.
    self._cost: dict[str, float | None] = {'batch': None, 'row': None}
    self._seen = collections.Counter()

  def _no_penalties(self, n: int) -> _sampling.Penalties:
    values = (1.0, 0.0, 0.0, {})
    return _sampling.penalties(values, np.zeros((n, 1), np.int32), np.zeros((n, 1), bool),
                               self.vocab)

  # --- the caller's side -------------------------------------------------------------

  def check(self, prompt: EncodedPrompt, settings: Settings) -> None:
    """Raises ValueError when the request cannot run here (before it takes a row)."""
    if not isinstance(settings, Settings):
      raise TypeError(f'settings must be gemma4.serve.Settings, got {type(settings).__name__}')
    n = len(prompt.ids)
    if n + 1 > self.cache_length:
      raise ValueError(f'the prompt is {n} tokens; with its first new token it needs {n + 1} '
                       f'cache positions but the cache holds {self.cache_length}')
    _sampling.check_penalties(self.vocab, repetition_penalty=settings.repetition_penalty,
                              presence_penalty=settings.presence_penalty,
                              frequency_penalty=settings.frequency_penalty,
                              logit_bias=settings.logit_bias)
    if settings.top_k and settings.top_k > self.vocab:
      raise ValueError(f'top_k must be at most the vocabulary size {self.vocab}, got '
                       f'{settings.top_k}')

  def submit(self, prompt: EncodedPrompt, settings: Settings, sink: Callable | None = None
             ) -> Request:
    """Queues a request (checked first); raises QueueFull when `max_queue` wait already,
    EngineStopped when the engine takes no more."""
    self.check(prompt, settings)
    request = Request(prompt, settings, sink)
    with self._lock:
      if not self._accepting:
        raise EngineStopped('the server is shutting down')
      # Requests a free row takes next do not wait for one: they are not counted.
      free = self.num_slots - self.busy - self._admitting
      waiting = len(self._waiting) - max(free, 0)
      if waiting >= self.max_queue:
        raise QueueFull(f'{waiting} requests are waiting already (max_queue '
                        f'{self.max_queue})')
      self._waiting.append(request)
      self._lock.notify_all()
    return request

  @property
  def busy(self) -> int:
    return sum(s.request is not None for s in self._slots)

  @property
  def waiting(self) -> int:
    return len(self._waiting)

  def start(self) -> Engine:
    if self._thread is None:
      self._running = True
      self._thread = threading.Thread(target=self._loop, name='gemma4-engine', daemon=True)
      self._thread.start()
    return self

  def stop(self, deadline: float = 10.0) -> None:
    """Takes no new requests, lets the running ones finish for up to `deadline` seconds,
    cancels what is left (its requests get Finished('cancelled')), ends the thread."""
    with self._lock:
      self._accepting = False
      self._lock.notify_all()
    end = time.monotonic() + deadline
    while (self.busy or self._waiting) and time.monotonic() < end and self._thread is not None:
      time.sleep(0.01)
    with self._lock:
      for r in list(self._waiting):
        r._emit(Finished('cancelled', error='the server shut down'))
      self._waiting.clear()
      for s in self._slots:
        if s.request is not None:
          s.request.cancel('cancelled')
      self._running = False
      self._lock.notify_all()
    if self._thread is not None:
      self._thread.join(timeout=60)
      self._thread = None

  def warmup(self, timeout: float = 600.0) -> None:
    """Compiles the programs every request runs (a short prefill, a first pick, a
    decode step of the whole batch, one of a single row, and their picks) with two
    greedy requests admitted together, twice: the second time measures what a batch
    step and a single-row step cost, so the loop knows when to decode rows one by one.
    The first client then does not wait for compiles."""
    bos = np.asarray(self.sampler.tokenizer.encode('', add_bos=True) or [2], np.int32)
    for _ in range(2):
      pending = [Request(EncodedPrompt(bos), Settings(max_new_tokens=n)) for n in (2, 3)]
      with self._lock:  # both are admitted before the first step (past max_queue)
        self._waiting.extend(pending)
        self._lock.notify_all()
      for request in pending:
        _, done = request.result(timeout)
        if done.reason == 'error':
          raise RuntimeError(f'the engine failed to warm up: {done.error}')

  # --- the engine's thread -----------------------------------------------------------

  def _loop(self) -> None:
    while True:
      with self._lock:
        while self._running and not self._waiting and not self.busy:
          self._lock.wait(0.5)
        if not self._running and not self.busy:
          return
      try:
        self._admit()
        if self.busy:
          self._step()
      except Exception as e:  # noqa: BLE001 - every request must hear of it
        self._fail_all(f'{type(e).__name__}: {e}')
      if not self._running:
        self._cancel_busy()

  def _fail_all(self, message: str) -> None:
    for i, s in enumerate(self._slots):
      if s.request is not None:
        self._finish(i, Finished('error', error=message))
    with self._lock:
      waiting, self._waiting = list(self._waiting), collections.deque()
    for r in waiting:
      r._emit(Finished('error', error=message))

  def _cancel_busy(self) -> None:
    for i, s in enumerate(self._slots):
      if s.request is not None:
        self._finish(i, Finished('cancelled', error='the server shut down'))

  def _free_slot(self, ids: np.ndarray) -> tuple[int, int] | None:
    """The free row to take and how many of `ids` it holds already (exactly reusable)."""
    free = [i for i, s in enumerate(self._slots) if s.request is None]
    if not free:
      return None
    media = np.flatnonzero((ids == IMAGE_SLOT) | (ids == AUDIO_SLOT))
    limit = min(len(ids) - 1, int(media[0]) if media.size else len(ids))
    best, best_len = None, 0
    for i in free:
      held = self._slots[i].held
      n = min(limit, len(held))
      if n == 0:
        continue
      same = np.asarray(held[:n], np.int32) == ids[:n]
      common = n if same.all() else int(np.argmin(same))
      if common > max(best_len, 1) and can_truncate(self.cfg, len(held), common, self.cache_length):
        best, best_len = i, common
    if best is None:  # the row used least recently
      best = min(free, key=lambda i: self._slots[i].last_used)
    return best, best_len

  def _admit(self) -> None:
    while True:
      with self._lock:
        if not self._waiting or self.busy >= self.num_slots:
          return
        request = self._waiting.popleft()
        self._admitting += 1
      try:
        if request.cancelled:
          request._emit(Finished('cancelled'))
        else:
          self._prefill(request)
      except Exception as e:  # noqa: BLE001 - this request fails, the others go on
        request._emit(Finished('error', error=f'{type(e).__name__}: {e}'))
      finally:
        with self._lock:
          self._admitting -= 1

  def _settings(self, requests: list[Settings | None]):
    s = [r or Settings(max_new_tokens=1) for r in requests]
    return (jnp.asarray([x.temperature for x in s], jnp.float32),
            jnp.asarray([x.top_k or 0 for x in s], jnp.int32),
            jnp.asarray([x.top_p for x in s], jnp.float32),
            jnp.asarray([x.min_p for x in s], jnp.float32))

  def _mask(self, requests: list[Request | None]) -> jax.Array | None:
    if not any(r is not None and r.settings.allowed is not None for r in requests):
      return None
    mask = np.ones((len(requests), self.vocab), bool)
    for i, r in enumerate(requests):
      if r is None or r.settings.allowed is None:
        continue
      got = r.settings.allowed(list(r.tokens))
      if got is None:
        continue
      arr = np.asarray(got)
      if arr.dtype == bool:
        mask[i] = arr
      else:
        mask[i] = False
        mask[i, arr.astype(np.int64)] = True
    return jnp.asarray(mask)

  def _prefill(self, request: Request) -> None:
    ids = request.prompt.ids
    picked = self._free_slot(ids)
    assert picked is not None
    slot, reuse = picked
    if reuse:
      row = self._truncate(self._take(self._cache, slot), jnp.asarray([reuse], jnp.int32))
    else:
      row = init_cache(self.cfg, 1, self.cache_length, self._dtype)
    request.reused = reuse
    self.stats['prompt_tokens'] += len(ids)
    self.stats['reused_tokens'] += reuse
    logits, row = self.sampler.prefill_row(request.prompt, row, start=reuse, owned=True)
    st = request.settings
    key = normalize_rng(st.seed)
    pen_values = _sampling.check_penalties(
        self.vocab, repetition_penalty=st.repetition_penalty, presence_penalty=st.presence_penalty,
        frequency_penalty=st.frequency_penalty, logit_bias=st.logit_bias)
    pen = _sampling.penalties(pen_values or (1.0, 0.0, 0.0, {}), ids[None],
                              np.ones((1, len(ids)), bool), self.vocab)
    one = _Rows(key[None], pen)
    token, logprob, top_ids, top_lp, one = self._pick(
        self._static, _flags([st]), logits, one, self._settings([st]), jnp.ones((1,), bool),
        self._mask([request]))
    self._cache = self._put(self._cache, slot, row)
    self._rows = self._put_rows(self._rows, slot, one)
    s = self._slots[slot]
    s.held, s.request, s.last_used = list(ids.tolist()), request, time.perf_counter()
    self._deliver(slot, int(token[0]), float(logprob[0]),
                  None if top_ids is None else (np.asarray(top_ids[0]), np.asarray(top_lp[0])))

  def _one_by_one(self, n: int) -> bool:
    """Whether n busy rows decode faster alone in turn than as the whole batch (one row
    always: it is also `sample`'s own step)."""
    if self.num_slots == 1:
      return False
    if n == 1:
      return True
    row, batch = self._cost['row'], self._cost['batch']
    return row is not None and batch is not None and n * row < batch

  def _observe(self, kind: str, seconds: float) -> None:
    self._seen[kind] += 1
    if self._seen[kind] == 1:  # compiled then
      return
    old = self._cost[kind]
    self._cost[kind] = seconds if old is None else 0.8 * old + 0.2 * seconds

  def _step(self) -> None:
    for i, s in enumerate(self._slots):
      if s.request is not None and s.request.cancelled:
        self._finish(i, Finished(s.request.cancelled))
    requests = [s.request for s in self._slots]
    if not any(requests):
      return
    active = np.array([r is not None for r in requests])
    busy = np.flatnonzero(active)
    t0 = time.perf_counter()
    if self._one_by_one(len(busy)):
      picked = {int(i): self._step_row(int(i)) for i in busy}
      self._observe('row', (time.perf_counter() - t0) / len(busy))
      self.stats['row_steps'] += len(busy)
    else:
      picked = self._step_batch(requests, active)
      self._observe('batch', time.perf_counter() - t0)
      self.stats['batch_steps'] += 1
    self.stats['steps'] += 1
    self.stats['decoded_tokens'] += len(busy)
    for i in busy:
      self._slots[i].held.append(int(self._last[i]))  # fed this step: now in the cache
      self._deliver(int(i), *picked[int(i)])

  def _step_batch(self, requests: list[Request | None], active: np.ndarray) -> dict:
    """One step of the whole batch: {slot: (token, logprob, top or None)} for the busy."""
    settings = [r.settings if r is not None else None for r in requests]
    flags = _flags([x for x in settings if x is not None])
    mask = self._mask(requests)
    logits, self._cache = self._decode(self.sampler.params, self._cache,
                                       jnp.asarray(self._last), jnp.asarray(active))
    token, logprob, top_ids, top_lp, self._rows = self._pick(
        self._static, flags, logits, self._rows, self._settings(settings), jnp.asarray(active),
        mask)
    token, logprob = np.asarray(token), np.asarray(logprob)
    if flags.top:
      top_ids, top_lp = np.asarray(top_ids), np.asarray(top_lp)
    return {int(i): (int(token[i]), float(logprob[i]),
                     (top_ids[i], top_lp[i]) if requests[i].settings.top_logprobs else None)
            for i in np.flatnonzero(active)}

  def _step_row(self, slot: int) -> tuple:
    """One step of row `slot` alone, decoded and picked: (token, logprob, top or None)."""
    r = self._slots[slot].request
    flags = _flags([r.settings])
    i = jnp.int32(slot)
    logits, self._cache = self._decode_row(self.sampler.params, self._cache, i,
                                           jnp.asarray(self._last[slot:slot + 1]))
    one = self._take(self._rows, i)  # take_row slices any tree of [N, ...] arrays
    token, logprob, top_ids, top_lp, one = self._pick(
        self._static, flags, logits, one, self._settings([r.settings]), jnp.ones((1,), bool),
        self._mask([r]))
    self._rows = self._put_rows(self._rows, i, one)
    top = (np.asarray(top_ids[0]), np.asarray(top_lp[0])) if flags.top else None
    return int(token[0]), float(logprob[0]), top

  def _deliver(self, slot: int, token: int, logprob: float, top) -> None:
    s = self._slots[slot]
    r = s.request
    r.tokens.append(token)
    n = r.settings.top_logprobs
    pairs = () if top is None or not n else tuple(
        (int(i), float(v)) for i, v in zip(top[0][:n], top[1][:n]))
    r._emit(Token(token, logprob, pairs))
    self._last[slot] = token
    if token in self.end_tokens:
      self._finish(slot, Finished('stop'))
    elif len(r.tokens) >= r.settings.max_new_tokens:
      self._finish(slot, Finished('length'))
    elif len(s.held) >= self.cache_length:  # no position left for the next token
      self._finish(slot, Finished('length', cache_full=True))

  def _finish(self, slot: int, event: Finished) -> None:
    s = self._slots[slot]
    r, s.request, s.last_used = s.request, None, time.perf_counter()
    self.stats['finished'] += 1
    r._emit(event)
