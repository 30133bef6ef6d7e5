"""Gemma4Sampler behaviour on a tiny random model, against teacher-forced decoding."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from gemma4 import compilation
from gemma4 import sampling
from gemma4 import stops as stops_lib
from gemma4.stops import StopText
from tests import tokenizer_util
from tests.compile_util import programs_compiled


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  return gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path_factory.mktemp('tok') / 't.model'))


@pytest.fixture(scope='module')
def model():
  m = gemma4.models.tiny('e2b')
  return m, m.init(0)


def make(model, tok, **kw):
  m, params = model
  kw = {'cache_length': 64, 'max_out_length': 16, 'pad_length': (16, 32), **kw}
  return gemma4.Gemma4Sampler(model=m, params=params, tokenizer=tok, **kw)


def teacher_forced_greedy(model, ids, n, forbidden=()):
  """Reference: argmax of the full-sequence forward, one token at a time (no cache)."""
  m, params = model
  seq = list(ids)
  for _ in range(n):
    logits = np.array(m.apply(params, jnp.asarray([seq]))[0][0, -1])
    logits[list(forbidden)] = -np.inf
    seq.append(int(logits.argmax()))
  return seq[len(ids):]


def test_greedy_equals_teacher_forced_and_types(model, tok):
  s = make(model, tok)
  out = s.sample('Hello world', max_new_tokens=8, return_state=True)
  assert isinstance(out.text, str) and s.sample(['Hello world'], max_new_tokens=8) == [out.text]
  want = teacher_forced_greedy(model, tok.encode('Hello world', add_bos=True), 8)
  np.testing.assert_array_equal(out.tokens[:8], want)
  assert (out.tokens[8:] == 0).all()
  assert out.text == tok.decode(want)


def test_batch_gives_each_prompt_its_text_alone(model, tok):
  s = make(model, tok)
  prompts = ['Hello', 'The quick brown fox jumps over', 'Paris is the capital of France']
  assert s.sample(prompts, max_new_tokens=6) == [s.sample(p, max_new_tokens=6) for p in prompts]


def test_logprobs_are_log_softmax_of_model_logits_within_1e4(model, tok):
  """The sampler's float32 log-probabilities (cached decode) against a float64 log-softmax
  of the full forward's logits: measured 2.9e-6."""
  m, params = model
  out = make(model, tok).sample('Hello world', max_new_tokens=4, return_state=True)
  ids = tok.encode('Hello world', add_bos=True) + list(out.tokens[:3])
  logits = np.asarray(m.apply(params, jnp.asarray([ids]))[0][0, -4:], np.float64)
  lsm = logits - logits.max(-1, keepdims=True)
  lsm -= np.log(np.exp(lsm).sum(-1, keepdims=True))
  np.testing.assert_allclose(out.logprobs[:4], lsm[np.arange(4), out.tokens[:4]], atol=1e-4,
                             rtol=0)


def test_stop_tokens_str_and_id_end_the_text_there(model, tok):
  full = make(model, tok).sample('Hello world', max_new_tokens=8, return_state=True).tokens
  stop = int(full[2])
  for given in (stop, tok.decode([stop])):
    out = make(model, tok, stop_tokens=[given]).sample('Hello world', max_new_tokens=8,
                                                      return_state=True)
    first = list(full).index(stop)
    np.testing.assert_array_equal(out.tokens[:first + 1], full[:first + 1])
    assert (out.tokens[first + 1:] == 0).all()


def test_forbidden_tokens_are_never_sampled(model, tok):
  full = make(model, tok).sample('Hello world', max_new_tokens=8, return_state=True).tokens
  banned = sorted(set(int(t) for t in full[:3]))
  out = make(model, tok, forbidden_tokens=banned).sample('Hello world', max_new_tokens=8,
                                                        return_state=True)
  assert not set(banned) & set(out.tokens.tolist())
  want = teacher_forced_greedy(model, tok.encode('Hello world', add_bos=True), 8, banned)
  np.testing.assert_array_equal(out.tokens[:8], want)


def test_rng_forms_and_seeded_methods(model, tok):
  s = make(model, tok, sampling=sampling.RandomSampling(temperature=2.0))
  a = s.sample('Hello', max_new_tokens=6, rng=7)
  assert a == s.sample('Hello', max_new_tokens=6, rng=jax.random.key(7))
  data = np.asarray(jax.random.key_data(jax.random.key(7)))
  assert a == s.sample('Hello', max_new_tokens=6, rng=data)
  assert a == s.sample('Hello', max_new_tokens=6, rng=data.tolist())
  assert isinstance(s.sample('Hello', max_new_tokens=2, rng=None), str)
  with pytest.raises(ValueError, match='rng must be None, an int seed'):
    s.sample('Hello', rng=[1, 2, 3])


def test_last_state_continues_the_conversation(model, tok):
  """Turn 2 sees turn 1's prompt and its sampled tokens but the last (which the next
  prompt replaces, as in the official sampler) from the cache: its tokens equal
  teacher-forced greedy over that history."""
  s = make(model, tok)
  t1 = s.sample('Hello world', max_new_tokens=5, return_state=True)
  t2 = s.sample('And then', max_new_tokens=5, return_state=True, last_state=t1.state)
  history = tok.encode('Hello world', add_bos=True) + list(t1.tokens[:4]) + tok.encode('And then')
  np.testing.assert_array_equal(t2.tokens[:5], teacher_forced_greedy(model, history, 5))
  assert int(t2.state.cache.next_pos[0]) == len(history) + 4


def test_stream_equals_sample(model, tok):
  s = make(model, tok)
  pieces = list(s.stream('Hello world', max_new_tokens=8))
  assert len(pieces) > 1 and ''.join(pieces) == s.sample('Hello world', max_new_tokens=8)


def test_bfloat16_weights_on_a_cpu_are_warned_about_with_the_fix(tok):
  m = gemma4.models.tiny('gemma3_270m', dtype=jnp.bfloat16)
  with pytest.warns(UserWarning, match=r'bfloat16 weights on a CPU: .*quantize="auto"'):
    gemma4.Gemma4Sampler(model=m, params=m.init(0), tokenizer=tok)


def test_incremental_text_equals_decoding_all_ids():
  """stream's text, token by token over a window of the last ids, joins to exactly the
  decoding of all ids: the real Gemma 3 vocabulary (byte fallback), text with multi-byte
  characters split across byte tokens, and random ids, byte tokens included."""
  from gemma4.checkpoints import gguf
  from gemma4.tokenizer import IncrementalDecoder
  tok = gguf.load_tokenizer(gemma4.default_checkpoint_path())
  texts = ['Hello, world! ', 'naïve café — 東京 🙂🚀 done', '  two  spaces\n\nnew lines\t',
           ''.join(chr(c) for c in range(0x1F600, 0x1F640))]
  rng = np.random.default_rng(0)
  byte_ids = tok.encode([f'<0x{b:02X}>' for b in (0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x99, 0x82)])
  cases_bytes = [byte_ids[:2], byte_ids[3:] + byte_ids[:3]]  # a split euro sign, an emoji
  cases = [tok.encode(t) for t in texts] + [
      list(rng.integers(5, tok.vocab_size, 40)) + byte_ids + list(rng.integers(5, 3000, 20))
      for _ in range(3)] + cases_bytes
  for ids in cases:
    text = IncrementalDecoder(tok)
    pieces = [text.add(int(i)) for i in ids]
    assert ''.join(pieces) + text.rest() == tok.decode([int(i) for i in ids])
    assert not any(p.endswith('\ufffd') for p in pieces)


def test_recompiles_neither_for_max_new_tokens_nor_within_a_bucket(model, tok):
  s = make(model, tok, cache_length=80)  # a cache no other test compiles for
  lengths = {p: len(tok.encode(p, add_bos=True)) for p in (
      'Hello', 'Hello there, you', 'Hi', 'Hello world, the quick brown fox')}
  assert list(lengths.values()) == [5, 12, 3, 24]  # buckets 16, 16, 16, 32
  s.sample('Hello', max_new_tokens=3)
  assert programs_compiled(lambda: (
      s.sample('Hello there, you', max_new_tokens=7), s.sample('Hi', max_new_tokens=1))) == []
  longer = programs_compiled(  # the 32 bucket: the prefill's programs, not the loop
      lambda: s.sample('Hello world, the quick brown fox', max_new_tokens=2))
  assert longer and 'jit(loop)' not in longer


@pytest.mark.parametrize('chunk', [None, 8])
def test_split_prefill_samples_what_one_program_samples_within_1e5(tok, monkeypatch, chunk):
  """A model deep enough for `transformer.split_layers` (8 layers, 2 distinct) prefills
  through one program per distinct layer; its tokens equal, and its logprobs are within
  1e-5 of, those of the same sampler prefilling in one program: a first turn, a second
  turn continuing its state (the cache not owned), in one pass or in chunks of 8."""
  import dataclasses
  from gemma4 import sampler as sampler_lib
  from gemma4 import transformer
  m = gemma4.models.tiny('31b')
  m = dataclasses.replace(m, config=dataclasses.replace(
      m.config, layer_types=('local',) * 3 + ('global',) + ('local',) * 3 + ('global',)))
  params = m.init(1)
  if chunk:
    monkeypatch.setattr(sampler_lib, 'PREFILL_CHUNK', chunk)
  runs = []
  for per_program in (4, 100):
    monkeypatch.setattr(transformer, 'SPLIT_LAYERS_PER_PROGRAM', per_program)
    assert transformer.split_layers(m.config) == (per_program == 4)
    s = make((m, params), tok, cache_length=96, pad_length=None)
    first = s.sample('Hello world, the quick brown fox', max_new_tokens=6, return_state=True)
    second = s.sample('and then some more words', max_new_tokens=6, last_state=first.state,
                      return_state=True)
    runs.append((first, second))
  for split, whole in zip(*runs):
    np.testing.assert_array_equal(split.tokens, whole.tokens)
    np.testing.assert_allclose(split.logprobs, whole.logprobs, atol=1e-5, rtol=0)


def test_full_cache_is_reported_not_silent(model, tok):
  s = make(model, tok, cache_length=12)
  out = s.sample('Hello world', max_new_tokens=16, return_state=True)
  n_prompt = len(tok.encode('Hello world', add_bos=True))
  assert out.stopped_by_cache
  assert (out.tokens != 0).sum() == 12 - n_prompt + 1  # every position used, +1 sampled last
  assert not make(model, tok).sample('Hello', max_new_tokens=3, return_state=True).stopped_by_cache


def test_bad_input_errors_before_compute(model, tok):
  s = make(model, tok)
  with pytest.raises(ValueError, match=r'max_new_tokens=17 must be in \[1, max_out_length=16\]'):
    s.sample('Hello', max_new_tokens=17)
  with pytest.raises(ValueError, match='must be exactly one token'):
    make(model, tok, stop_tokens=['Hello world'])
  with pytest.raises(ValueError, match='max_soft_tokens must be one of 70, 140, 280, 560, 1120, got 256'):
    make(model, tok, max_soft_tokens=256)
  with pytest.raises(ValueError, match='must be exactly one token'):
    make(model, tok, forbidden_tokens=['quick brown'])
  with pytest.raises(ValueError, match='prompt is an empty list'):
    s.sample([])
  n = len(tok.encode('one ' * 40, add_bos=True))
  assert n > 64
  with pytest.raises(ValueError, match=rf'prompt 0 needs {n} cache positions \(0 from earlier '
                     rf'turns \+ {n} new\) but cache_length is 64'):
    s.sample('one ' * 40)
  state = s.sample(['a', 'b'], max_new_tokens=2, return_state=True).state
  with pytest.raises(ValueError, match='last_state holds 2 conversations but 1 prompts'):
    s.sample('c', last_state=state)
  with pytest.raises(ValueError, match='has no vision encoder'):
    s.sample('<|image|>', images=[np.zeros((4, 4, 3))])
  with pytest.raises(ValueError, match=re.escape("audio was given but model 'tiny_gemma4_e2b' "
                                                 'cannot take it')):
    s.sample('x <|audio|>', audio=[np.zeros(16000)])
  m, params = model
  with pytest.raises(ValueError, match='no tokenizer is known'):
    gemma4.Gemma4Sampler(model=m, params=params)


@pytest.mark.parametrize('stop', ['quick', ['zzz', 'k bro'], 'The', 'fox'])
def test_stream_stop_strings_end_the_text_before_them_across_pieces(model, tok, stop):
  s = make(model, tok, max_out_length=40)
  text = 'The quick brown fox'
  forced = tok.encode(text)
  ids = s.stream_tokens('Hello world', max_new_tokens=len(forced),
                        allowed_tokens=lambda so_far: [forced[len(so_far)]])
  assert tok.decode(list(ids)) == text  # what the decode gives without a stop
  # stream() with stop: the text up to the first stop string, none of it after
  stops = [stop] if isinstance(stop, str) else stop
  first = min(i for i in (text.find(x) for x in stops) if i >= 0)
  scan = StopText(stops)
  shown = ''
  for piece in tok.split(text):  # the pieces as a stream would cut them
    out, found = scan.add(piece)
    shown += out
    if found:
      break
  assert shown + ('' if scan.found else scan.flush()) == text[:first]
  # stream() itself: a stop string cut from the middle of the greedy text
  full = s.sample('Hello world', max_new_tokens=12)
  mid = full[len(full) // 2:len(full) // 2 + 3]
  out = list(s.stream('Hello world', max_new_tokens=12, stop=[mid], return_state=True))
  assert ''.join(o.text for o in out) == full[:full.find(mid)]
  assert int((out[-1].state.predicted_tokens[0] != 0).sum()) < 12  # decoding stopped early
  with pytest.raises(TypeError, match=r'stop must be a str or a list of non-empty str'):
    list(s.stream('Hi', stop=['']))


def test_sample_stop_equals_stream_stop_and_ends_at_the_completing_token(model, tok):
  """A stop string cut from the middle of the greedy text (spanning a token boundary or
  not): sample(stop=) gives stream(stop=)'s text, the unstopped text cut before the stop
  string, and its tokens are the unstopped tokens up to the one that completes it."""
  s = make(model, tok, max_out_length=16)
  full = s.sample('Hello world', max_new_tokens=16, return_state=True)
  ids = [int(t) for t in full.tokens if t != 0]
  pieces = [tok.decode([i]) for i in ids]
  ends = np.cumsum([len(p) for p in pieces])  # the text's length after each token
  checked = 0
  for at in range(2, len(full.text) - 3, 5):
    stop = full.text[at:at + 4]
    first = full.text.find(stop)
    done = int(np.searchsorted(ends, first + len(stop)))  # the token completing it
    out = s.sample('Hello world', max_new_tokens=16, stop=stop, return_state=True)
    assert out.text == full.text[:first]
    assert out.text == ''.join(s.stream('Hello world', max_new_tokens=16, stop=stop))
    np.testing.assert_array_equal(out.tokens[:done + 1], ids[:done + 1])
    assert (out.tokens[done + 1:] == 0).all(), (stop, done, out.tokens)
    checked += 1
  assert checked >= 3


def test_sample_stop_rows_stop_on_their_own_and_values_do_not_recompile(model, tok):
  """A batch: each row ends at its own stop string (one of two) and the others decode
  on; a second call with other stop strings of the same size class compiles nothing."""
  s = make(model, tok, max_out_length=16)
  prompts = ['Hello world', 'The quick brown fox', 'Paris is']
  full = s.sample(prompts, max_new_tokens=16)
  stop = [full[0][6:9], full[1][3:7]]
  out = s.sample(prompts, max_new_tokens=16, stop=stop)
  want = [stops_lib.cut(t, stop)[0] for t in full]
  assert out == want
  assert out[0] != full[0] and out[1] != full[1]
  other = [full[2][4:8]]
  got = []
  assert 'jit(loop)' not in programs_compiled(
      lambda: got.append(s.sample(prompts, max_new_tokens=16, stop=other)))
  assert got == [[stops_lib.cut(t, other)[0] for t in full]]


def test_sample_stop_is_checked_before_any_compute(model, tok):
  """A bad stop= raises before anything is compiled: the sampler has a cache length no
  other test uses, so a prefill would compile a program of its own."""
  s = make(model, tok, cache_length=48)
  before = compilation.compile_seconds()
  for bad in ([''], 3, [], ['a', None]):
    with pytest.raises(TypeError, match=r'stop must be a str or a list of non-empty str'):
      s.sample('Hi', stop=bad)
  assert compilation.compile_seconds() == before
