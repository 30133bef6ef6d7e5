"""gemma4.Gemma4Sampler against the official gm.text.Gemma4Sampler, live.

Same tiny params, same 262144-piece test tokenizer, float32. Asserts identical text and
tokens (one prompt; a batch of 3 of different lengths; stop and forbidden tokens as
strings and ids; seeded RandomSampling, TopkSampling, TopPSampling) and per-step logits
within 1e-4 (captured by a recording sampling method). Writes tests/golden/sampler_*.json
with GEMMA4_WRITE_GOLDEN=1 for the default tests.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gemma import gm

import gemma4
from tests import golden, tokenizer_util
from tests.oracle import official

pytestmark = pytest.mark.oracle
official.use_head_router()

SETTINGS = golden.SAMPLER_SETTINGS
PROMPTS = golden.SAMPLER_PROMPTS
RANDOM = {
    'random': (gm.text.RandomSampling(temperature=1.5), gemma4.sampling.RandomSampling(temperature=1.5)),
    'topk': (gm.text.TopkSampling(k=5, temperature=2.0), gemma4.sampling.TopkSampling(k=5, temperature=2.0)),
    'topp': (gm.text.TopPSampling(p=0.9, temperature=1.5), gemma4.sampling.TopPSampling(p=0.9, temperature=1.5)),
}
WRITE = os.environ.get('GEMMA4_WRITE_GOLDEN') == '1'
_RECORDED: list = []


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recording(gm.text.SamplingMethod):
  """Greedy, recording every step's logits on the host (works in both samplers)."""

  def get_next_tokens(self, logits, rng):
    jax.debug.callback(lambda x: _RECORDED.append(np.asarray(x)), logits, ordered=True)
    return jnp.argmax(logits, axis=-1)


class _Pair:
  def __init__(self, preset, tok_path):
    self.cfg = gemma4.models.tiny_config(preset)
    self.params = gemma4.init_params(self.cfg, golden.PARAM_SEED, jnp.float32)
    self.off_model = official.tiny_official_model(preset)
    self.ours_model = gemma4.Model(self.cfg, jnp.float32)
    self.off_tok = gm.text.Gemma4Tokenizer(path=str(tok_path))
    self.tok = gemma4.Gemma4Tokenizer(tok_path)

  def samplers(self, **kw):
    off = gm.text.Gemma4Sampler(model=self.off_model, params=self.params,
                                tokenizer=self.off_tok, **SETTINGS, **kw)
    ours = gemma4.Gemma4Sampler(model=self.ours_model, params=self.params,
                                tokenizer=self.tok, **SETTINGS, **kw)
    return off, ours

  def both(self, prompt, sampler_kw=None, **kw):
    off, ours = self.samplers(**(sampler_kw or {}))
    a = off.sample(prompt, return_state=True, **kw)
    b = ours.sample(prompt, return_state=True, **kw)
    return a, b, dict(prompt=prompt, sampler_kw=sampler_kw or {}, sample_kw=kw)


_PAIRS: dict = {}
_GOLDEN: dict = {}


@pytest.fixture(scope='module')
def tok_path(tmp_path_factory):
  return tokenizer_util.build(tmp_path_factory.mktemp('tok') / 'gemma4_test.model')


@pytest.fixture(params=golden.PRESETS)
def pair(request, tok_path):
  if request.param not in _PAIRS:
    _PAIRS[request.param] = _Pair(request.param, tok_path)
  _GOLDEN.setdefault(request.param, {})
  return request.param, _PAIRS[request.param]


def _same(a, b, case, key, preset):
  """Asserts identical tokens and text; records the case for the golden file."""
  np.testing.assert_array_equal(np.asarray(a.tokens), b.tokens)
  assert a.text == b.text
  _GOLDEN[preset][key] = dict(case, tokens=np.asarray(b.tokens).tolist(), text=b.text)


def test_one_prompt_identical(pair):
  preset, p = pair
  _same(*p.both(PROMPTS[0], max_new_tokens=12), 'one', preset)


def test_batch_of_three_identical(pair):
  preset, p = pair
  _same(*p.both(PROMPTS, max_new_tokens=10), 'batch', preset)


def test_stop_and_forbidden_tokens_identical(pair):
  preset, p = pair
  _, plain, _ = p.both(PROMPTS[1], max_new_tokens=10)
  first, second = int(plain.tokens[1]), int(plain.tokens[3])
  for kind, given in (('ids', [first]), ('strs', [p.tok.decode([first])])):
    _same(*p.both(PROMPTS[1], sampler_kw=dict(stop_tokens=given), max_new_tokens=10),
          f'stop_{kind}', preset)
  for kind, given in (('ids', [first, second]), ('strs', [p.tok.decode([first]), p.tok.decode([second])])):
    a, b, case = p.both(PROMPTS[1], sampler_kw=dict(forbidden_tokens=given), max_new_tokens=10)
    assert first not in b.tokens.tolist()
    _same(a, b, case, f'forbidden_{kind}', preset)


@pytest.mark.parametrize('method', list(RANDOM))
def test_seeded_random_methods_identical(pair, method):
  preset, p = pair
  off_m, ours_m = RANDOM[method]
  off, ours = p.samplers()
  a = off.sample(PROMPTS, sampling=off_m, rng=42, max_new_tokens=10, return_state=True)
  b = ours.sample(PROMPTS, sampling=ours_m, rng=42, max_new_tokens=10, return_state=True)
  case = dict(prompt=PROMPTS, sampler_kw={}, sample_kw=dict(rng=42, max_new_tokens=10),
              sampling=[type(ours_m).__name__, dataclasses.asdict(ours_m)])
  _same(a, b, case, f'seeded_{method}', preset)


def test_per_step_logits_within_1e4(pair):
  preset, p = pair
  off, ours = p.samplers(sampling=Recording())
  _RECORDED.clear()
  a = off.sample(PROMPTS, max_new_tokens=8, return_state=True)
  theirs, _RECORDED[:] = list(_RECORDED), []
  b = ours.sample(PROMPTS, max_new_tokens=8, return_state=True)
  mine = list(_RECORDED)
  np.testing.assert_array_equal(np.asarray(a.tokens), b.tokens)
  assert len(theirs) == len(mine) == 8
  live = np.asarray(b.tokens)[:, :8] != 0  # rows still decoding at each step
  worst = max(np.abs(t - m)[live[:, i]].max(initial=0) for i, (t, m) in enumerate(zip(theirs, mine)))
  print(f'{preset}: per-step logits max |diff| {worst:.3g}')
  assert worst <= 1e-4


TURNS = ['Hello world', 'And then', 'What is the capital of France?']


def test_three_turns_equal_official_on_the_whole_history(pair):
  """A 3-turn conversation through last_state gives, at every turn, the tokens the
  official sampler gives for the whole history as one prompt (earlier prompts plus
  their answers without the last sampled token, which the next prompt replaces in
  both samplers). The official last_state path itself differs from that: its turn-2
  prefill writes K/V one slot before where its mask reads them (each prompt token sees
  the next one) and re-feeds the last prompt token into a second slot; asserted here."""
  preset, p = pair
  off, ours = p.samplers()
  state = off_state = None
  history_ids, history_text = [], ''
  official_path_differs = False
  for i, prompt in enumerate(TURNS):
    n = 6 + 2 * i
    b = ours.sample(prompt, max_new_tokens=n, return_state=True, last_state=state)
    history_ids += p.tok.encode(prompt, add_bos=i == 0)
    history_text += prompt
    whole = p.tok.encode(history_text, add_bos=True)
    assert whole == history_ids, 'the history must tokenize as its turns did'
    a = off.sample(history_text, max_new_tokens=n, return_state=True)
    case = dict(turns=TURNS[:i + 1], turn_max_new_tokens=[6 + 2 * j for j in range(i + 1)],
                sampler_kw={}, sample_kw={})
    _same(a, b, case, f'turn_{i}', preset)
    a_path = off.sample(prompt, max_new_tokens=n, return_state=True, last_state=off_state)
    official_path_differs |= not np.array_equal(np.asarray(a_path.tokens), b.tokens)
    state, off_state = b.state, a_path.state
    kept = [int(t) for t in b.tokens if t][:-1]  # the last sampled token is not history
    history_ids += kept
    history_text += p.tok.decode(kept)
  assert official_path_differs


def test_write_sampler_golden(pair):
  """Runs last per preset: keeps what the tests above measured as the golden tokens."""
  preset, _ = pair
  path = golden.GOLDEN_DIR / f'sampler_{preset}.json'
  if WRITE:
    path.write_text(json.dumps(_GOLDEN[preset], indent=1, ensure_ascii=False))
  stored = json.loads(path.read_text())
  assert stored == _GOLDEN[preset]
