"""Stop strings: the text ends before the first of them.

Two forms of one rule. `StopText` scans text that arrives piece by piece on the host
(`stream`, the chat layer, the server). `StopMatcher` runs inside the jitted decode
loop (`sample`): an Aho-Corasick automaton over the UTF-8 bytes of the stop strings,
fed the bytes of each sampled token, so a row ends at the token that completes a stop
string without the host reading any text. Both find the same first stop string; the
host then cuts the decoded text with `StopText`.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def check_stop(stop) -> tuple[str, ...]:
  """stop= as a tuple of non-empty str (None: none)."""
  if stop is None:
    return ()
  if isinstance(stop, str):
    stop = [stop]
  if not isinstance(stop, Sequence) or not stop or not all(isinstance(x, str) and x for x in stop):
    raise TypeError(f'stop must be a str or a list of non-empty str, got {stop!r:.80}')
  return tuple(stop)


class StopText:
  """Stop strings in a text that comes piece by piece. `add(piece)` returns the text
  that is safe to show (none of it can begin a stop string) and whether a stop string
  was found; the text from the stop string on is dropped. `flush()` returns what was
  held back. `text` is the text kept so far."""

  def __init__(self, stops: Sequence[str]):
    self.stops = tuple(stops)
    self.hold = max((len(x) for x in self.stops), default=1) - 1
    self.text, self.shown, self.found = '', 0, False

  def add(self, piece: str) -> tuple[str, bool]:
    since = max(0, len(self.text) - self.hold)  # the earlier text was searched already
    self.text += piece
    at = min((i for i in (self.text.find(x, since) for x in self.stops) if i >= 0), default=-1)
    if at >= 0:
      out, self.text, self.found = self.text[self.shown:at], self.text[:at], True
      self.shown = at
      return out, True
    safe = max(self.shown, len(self.text) - self.hold)
    out, self.shown = self.text[self.shown:safe], safe
    return out, False

  def flush(self) -> str:
    out, self.shown = self.text[self.shown:], len(self.text)
    return out


def cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
  """`text` up to its first stop string (StopText's rule), and whether one was there."""
  scan = StopText(stops)
  out, found = scan.add(text)
  return (out if found else out + scan.flush()), found


def automaton(stops: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """The Aho-Corasick automaton of the stop strings' UTF-8 bytes: delta [S, 256] int32,
  the state after a byte, and match [S] bool, the states in which some stop string has
  just ended. State 0 is the start; S is at most 1 + the stop strings' total bytes."""
  children: list[dict[int, int]] = [{}]
  ends = [False]
  for stop in stops:
    node = 0
    for byte in stop.encode('utf-8'):
      if byte not in children[node]:
        children.append({})
        ends.append(False)
        children[node][byte] = len(children) - 1
      node = children[node][byte]
    ends[node] = True
  delta = np.zeros((len(children), 256), np.int32)
  fail = np.zeros(len(children), np.int32)
  queue = collections.deque()
  for byte, child in children[0].items():
    delta[0, byte] = child
    queue.append(child)
  while queue:  # breadth first: a node's fallback state is shallower, so done before it
    node = queue.popleft()
    ends[node] = ends[node] or ends[fail[node]]
    delta[node] = delta[fail[node]]
    for byte, child in children[node].items():
      fail[child] = delta[fail[node], byte]
      delta[node, byte] = child
      queue.append(child)
  return delta, np.asarray(ends, bool)


# Automata are padded to one of these state counts (then to multiples of the largest),
# so that stop strings of any text run one compiled program per size class.
STATE_BUCKETS = (16, 64, 256)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class StopMatcher:
  """Stop strings as data the decode step carries (any strings of a size class run the
  same compiled program).

  delta [S, 256] int32, match [S] bool: the automaton (`automaton`), padded.
  token_bytes [N] uint8, token_start [V] int32, token_len [V] int32: the UTF-8 bytes of
    each token's text, token t's at token_bytes[token_start[t]:][:token_len[t]]
    (Gemma4Tokenizer.token_bytes).
  state [B] int32: each row's state after the text sampled so far in this turn.
  """

  delta: jax.Array
  match: jax.Array
  token_bytes: jax.Array
  token_start: jax.Array
  token_len: jax.Array
  state: jax.Array

  def advance(self, token: jax.Array, active: jax.Array) -> tuple[StopMatcher, jax.Array]:
    """Feeds each active row's token [B] through the automaton: the matcher after it,
    and [B] bool, the rows whose text now holds a stop string."""
    start, length = self.token_start[token], self.token_len[token]
    last = self.token_bytes.shape[0] - 1

    def byte(i, carry):
      state, hit = carry
      nxt = self.delta[state, self.token_bytes[jnp.minimum(start + i, last)]]
      state = jnp.where(i < length, nxt, state)
      return state, hit | self.match[state]

    state, hit = jax.lax.fori_loop(0, jnp.max(length), byte,
                                   (self.state, jnp.zeros(token.shape, bool)))
    return (dataclasses.replace(self, state=jnp.where(active, state, self.state)),
            active & hit)


def matcher(stops: Sequence[str], token_bytes: tuple, batch: int) -> StopMatcher:
  """The StopMatcher of `stops` for a batch of rows, all at the start state;
  token_bytes: (bytes, start, len) of the vocabulary (Gemma4Tokenizer.token_bytes(), as
  numpy arrays or already on the device)."""
  delta, match = automaton(stops)
  size = next((b for b in STATE_BUCKETS if b >= len(match)), None)
  if size is None:
    size = -(-len(match) // STATE_BUCKETS[-1]) * STATE_BUCKETS[-1]
  pad = size - len(match)  # unreachable states
  delta = np.pad(delta, [(0, pad), (0, 0)])
  match = np.pad(match, [(0, pad)])
  data, start, length = token_bytes
  return StopMatcher(jnp.asarray(delta), jnp.asarray(match), jnp.asarray(data),
                     jnp.asarray(start), jnp.asarray(length), jnp.zeros((batch,), jnp.int32))
