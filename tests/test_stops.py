"""Stop strings inside the jitted loop (gemma4.stops): the automaton against a brute-force
search, each token's bytes against the tokenizer's own decode (the real Gemma 3 vocabulary
and the test one), the matcher step by step. `sample(stop=)` itself: tests/test_sampler.py."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gemma4
from gemma4 import stops as stops_lib
from tests import tokenizer_util


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  return gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path_factory.mktemp('tok') / 't.model'))


@pytest.fixture(scope='module')
def real_tok():
  from gemma4.checkpoints import gguf
  return gguf.load_tokenizer(gemma4.default_checkpoint_path())


def first_end(data: bytes, stops) -> int | None:
  """Brute force: the least k such that data[:k] holds a stop string, or None."""
  for k in range(1, len(data) + 1):
    if any(data[:k].endswith(s) for s in stops):
      return k
  return None


def run(delta, match, data: bytes) -> int | None:
  state = 0
  for k, byte in enumerate(data, 1):
    state = delta[state, byte]
    if match[state]:
      return k
  return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet='ab\u00e9c', min_size=1, max_size=5), min_size=1, max_size=4),
       st.text(alphabet='ab\u00e9cd', max_size=40))
def test_automaton_ends_where_the_first_stop_string_ends_exactly(stops, text):
  """Over random stop sets (overlapping, prefixes of each other, a 2-byte character) and
  texts: the automaton's first match is at the exact byte where brute force finds one."""
  delta, match = stops_lib.automaton(stops)
  assert len(match) <= 1 + sum(len(s.encode()) for s in stops)
  data = text.encode()
  assert run(delta, match, data) == first_end(data, [s.encode() for s in stops])


def test_automaton_known_cases():
  delta, match = stops_lib.automaton(['he', 'she', 'hers'])
  assert run(delta, match, b'ushers') == 4  # 'she' ends at byte 4, 'he' too
  assert run(delta, match, b'xhxe') is None
  delta, match = stops_lib.automaton(['aab'])
  assert run(delta, match, b'aaab') == 4  # the fallback after 'aa' + 'a' keeps 'aa'


@pytest.mark.parametrize('which', ['test', 'real'])
def test_token_bytes_join_to_what_decode_gives(which, tok, real_tok):
  """Every token alone, and 2000 random sequences of 1-12 tokens (byte tokens that form
  multi-byte characters among them): the joined bytes equal decode(ids) exactly."""
  t = tok if which == 'test' else real_tok
  data, start, length = t.token_bytes()
  assert start.shape == length.shape == (t.vocab_size,)
  def of(ids):
    return b''.join(data[start[i]:start[i] + length[i]].tobytes() for i in ids)
  sp = t._sp
  byte_ids = [i for i in range(t.vocab_size) if sp.IsByte(i)]
  assert byte_ids or which == 'test'
  # each non-byte token alone (a byte token alone is half a character)
  singles = [i for i in range(t.vocab_size) if not sp.IsByte(i)]
  texts = sp.DecodeIds([[i] for i in singles])
  bad = [i for i, text in zip(singles, texts) if of([i]) != text.encode()]
  assert not bad, [(i, sp.IdToPiece(i)) for i in bad[:5]]
  rng = np.random.default_rng(0)
  for _ in range(2000):
    ids = rng.integers(0, t.vocab_size, rng.integers(1, 13)).tolist()
    if byte_ids and rng.random() < 0.3:  # a whole character from byte tokens
      char = rng.choice(['é', '€', '😀', 'ß']).encode()
      at = int(rng.integers(0, len(ids) + 1))
      ids[at:at] = [sp.PieceToId(f'<0x{b:02X}>') for b in char]
    want = t.decode(ids)
    joined = of(ids)
    if '\ufffd' not in want:
      assert joined == want.encode(), ids


def test_matcher_pads_to_a_size_class(tok):
  data = tok.token_bytes()
  m = stops_lib.matcher(['abc', 'de'], data, 2)
  assert m.delta.shape == (16, 256) and m.state.shape == (2,)
  m = stops_lib.matcher(['x' * 40], data, 1)
  assert m.delta.shape == (64, 256)
  m = stops_lib.matcher(['y' * 300], data, 1)
  assert m.delta.shape == (512, 256)


def test_matcher_advance_flags_the_row_whose_token_completes_a_stop(tok):
  """Rows fed 'Hello', ' world' token by token: the row with stop 'lo w' is hit at the
  token holding ' w' and not before; an inactive row keeps its state."""
  ids = tok.encode('Hello world')
  m = stops_lib.matcher(['lo w'], tok.token_bytes(), 2)
  text, hits = '', []
  for i in ids:
    text += tok.decode([i])
    m, hit = m.advance(jax.numpy.asarray([i, i]), jax.numpy.asarray([True, False]))
    hits.append(np.asarray(hit).tolist())
    if 'lo w' in text:
      break
  assert hits[-1] == [True, False] and all(h == [False, False] for h in hits[:-1])
  assert int(m.state[1]) == 0
