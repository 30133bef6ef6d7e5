"""Continuous batching (gemma4.serve.Engine): a request's tokens equal what
Gemma4Sampler.sample gives it alone, whatever else is in the batch.

Bounds: tokens identical (greedy, and seeded draws with top-k / top-p / min-p and
penalties); each token's log-probability within 1e-5 of sample()'s; sampling.sample_rows
gives exactly Combined's token for every row (200 draws). Requests of mixed lengths
arrive while others decode, on a tiny E2B-shaped model (local, global and KV-shared
layers) with fewer slots than requests, and on the real Gemma 3 270M (int8), where a
chat continuation and a shared system prompt take their prefix from a freed row
(counted: `Request.reused`) and still equal sampling the whole prompt.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from gemma4 import sampling
from gemma4.serve import Engine, Finished, QueueFull, Settings
from tests import tokenizer_util


@pytest.mark.slow
def test_sample_rows_equals_combined_for_every_row():
  rng = np.random.default_rng(0)
  vocab = 500
  cases = [(0.0, None, 1.0, 0.0), (1.0, None, 1.0, 0.0), (0.7, 5, 1.0, 0.0), (1.3, None, 0.8, 0.0),
           (0.9, 40, 0.9, 0.05), (1.0, None, 1.0, 0.2), (0.5, 1, 1.0, 0.0), (2.0, 499, 0.5, 0.0)]
  for trial in range(25):
    logits = jnp.asarray(rng.normal(0, 3, (len(cases), vocab)).astype(np.float32))
    logits = logits.at[:, 7].set(-jnp.inf)  # a forbidden token
    keys = jnp.stack([jax.random.key(trial * 100 + i) for i in range(len(cases))])
    t, k, p, m = (jnp.asarray([c[j] or 0 for c in cases]) for j in range(4))
    got = sampling.sample_rows(logits, keys, t, k, p, m)
    for i, (ti, ki, pi, mi) in enumerate(cases):
      want = sampling.Combined(temperature=ti, top_k=ki, top_p=pi, min_p=mi).get_next_tokens(
          logits[i:i + 1], keys[i])
      assert int(got[i]) == int(want[0]), (trial, cases[i])
  # without filters (every row's top-k, top-p and min-p off) the draw is the same
  plain = [0, 1]
  got = sampling.sample_rows(logits[:2], keys[:2], t[:2], k[:2], p[:2], m[:2], filters=False)
  for i in plain:
    want = sampling.RandomSampling(temperature=1.0).get_next_tokens(logits[i:i + 1], keys[i]) \
        if cases[i][0] else sampling.Greedy().get_next_tokens(logits[i:i + 1], keys[i])
    assert int(got[i]) == int(want[0])


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  tok = gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path_factory.mktemp('tok') / 't.model', chat=True))
  m = gemma4.models.tiny('e2b')
  return gemma4.Gemma4Sampler(model=m, params=m.init(0), tokenizer=tok, cache_length=256,
                              max_out_length=40, pad_length=(32, 64, 128, 256))


def _method(st: Settings):
  if st.temperature == 0:
    return sampling.Greedy()
  return sampling.Combined(temperature=st.temperature, top_k=st.top_k, top_p=st.top_p,
                           min_p=st.min_p)


def _alone(sampler, prompt, st: Settings):
  out = sampler.sample(prompt, max_new_tokens=st.max_new_tokens, sampling=_method(st),
                       rng=st.seed, return_state=True, repetition_penalty=st.repetition_penalty,
                       presence_penalty=st.presence_penalty, frequency_penalty=st.frequency_penalty,
                       logit_bias=st.logit_bias)
  n = int(np.count_nonzero(out.tokens)) or 1
  return [int(t) for t in out.tokens[:n]], np.asarray(out.logprobs[:n])


def _collect(request):
  tokens, logprobs = [], []
  for event in request.events(timeout=300):
    if isinstance(event, Finished):
      return tokens, np.asarray(logprobs), event
    tokens.append(event.id)
    logprobs.append(event.logprob)


@pytest.mark.slow
def test_each_request_equals_sampling_it_alone(tiny):
  """7 requests, 3 slots: mixed prompt lengths (1 to 150 tokens), greedy and seeded,
  filters and penalties, arriving while earlier ones decode."""
  words = 'the quick brown fox jumps over a lazy dog while seven wizards quietly hex'.split()
  prompts = [' '.join(words[:n] * (1 + n // 5)) for n in (1, 3, 14, 6, 9, 2, 12)]
  settings = [
      Settings(max_new_tokens=12),
      Settings(max_new_tokens=20, temperature=0.8, seed=3),
      Settings(max_new_tokens=7, temperature=1.0, top_k=20, top_p=0.9, seed=11),
      Settings(max_new_tokens=25, presence_penalty=1.5, frequency_penalty=0.5,
               repetition_penalty=1.3, logit_bias={5: 3.0}),
      Settings(max_new_tokens=16, temperature=0.6, min_p=0.1, seed=2 ** 40 + 5),
      Settings(max_new_tokens=1),
      Settings(max_new_tokens=30, temperature=1.2, top_p=0.7, seed=0, top_logprobs=3),
  ]
  engine = Engine(tiny, slots=3).start()
  try:
    requests = []
    for i, (p, st) in enumerate(zip(prompts, settings)):
      requests.append(engine.submit(tiny.encode(p), st))
      if i in (2, 4):  # later ones join a running batch
        deadline = time.monotonic() + 120
        while engine.stats['steps'] < 3 * i and time.monotonic() < deadline:
          time.sleep(0.01)
    results = [_collect(r) for r in requests]
  finally:
    engine.stop()
  for p, st, (tokens, logprobs, done) in zip(prompts, settings, results):
    want, want_lp = _alone(tiny, p, st)
    assert tokens == want, (p, st)
    np.testing.assert_allclose(logprobs, want_lp, atol=1e-5, rtol=0)
    assert done.reason == ('stop' if want[-1] in tiny.end_tokens else 'length')
  assert engine.stats['finished'] == len(prompts)


def test_queue_cancel_and_cache_limits(tiny):
  engine = Engine(tiny, slots=1, max_queue=2)
  prompt = tiny.encode('hello there')
  first = engine.submit(prompt, Settings(max_new_tokens=30))  # the free row takes it
  engine.submit(prompt, Settings(max_new_tokens=30)).cancel()  # never decoded
  engine.submit(prompt, Settings(max_new_tokens=1))
  with pytest.raises(QueueFull, match=r'2 requests are waiting already \(max_queue 2\)'):
    engine.submit(prompt, Settings(max_new_tokens=30))
  too_long = gemma4.sampler.EncodedPrompt(np.full(256, 9, np.int32))
  with pytest.raises(ValueError, match=r'needs 257 cache positions but the cache holds 256'):
    engine.submit(too_long, Settings(max_new_tokens=1))
  with pytest.raises(ValueError, match=r'top_p.*must be in \(0, 1\]'):
    Settings(max_new_tokens=3, top_p=1.5)
  engine.start()
  try:
    events = first.events(timeout=120)
    next(events)
    first.cancel()  # the row is freed at the next step
    tokens, done = first.result(timeout=60)
    assert done.reason == 'cancelled' and len(tokens) < 30
    # a request that fills the cache ends with cache_full
    near = gemma4.sampler.EncodedPrompt(np.full(250, 9, np.int32))
    tokens, done = engine.submit(near, Settings(max_new_tokens=40)).result(timeout=120)
    assert done.cache_full and done.reason == 'length' and len(tokens) == 7  # 6 free positions
  finally:
    engine.stop()
  assert engine.busy == 0


@pytest.fixture(scope='module')
def gemma3():
  ck = gemma4.load_default()  # int8, as the server runs it on CPU
  return gemma4.Gemma4Sampler(model=ck.model, params=ck.params, tokenizer=ck.tokenizer,
                              cache_length=1024, max_out_length=24, pad_length=(32, 64, 128))


@pytest.mark.slow
def test_gemma3_270m_batch_and_prefix_reuse_equal_sampling_alone(gemma3):
  s = gemma3
  system = ('You are a careful assistant. Answer in one short sentence, and say so when '
            'you do not know. ')
  first = [system + 'Question: what is the capital of France?\nAnswer:',
           'The three primary colors are', 'def fibonacci(n):']
  engine = Engine(s, slots=3).start()
  try:
    reqs = [engine.submit(s.encode(p), Settings(max_new_tokens=16)) for p in first]
    outs = [r.result(timeout=300)[0] for r in reqs]
    # a chat continuation: the earlier prompt and reply, then more
    follow = first[0] + s.tokenizer.decode(outs[0]) + '\nQuestion: and of Spain?\nAnswer:'
    # then a shared system prompt: the row the continuation leaves holds it
    shared = system + 'Question: what is the capital of Italy?\nAnswer:'
    later, reqs2, outs2 = [follow, shared], [], []
    for p in later:
      reqs2.append(engine.submit(s.encode(p), Settings(max_new_tokens=16, temperature=0.7, seed=5)))
      outs2.append(reqs2[-1].result(timeout=300)[0])
  finally:
    engine.stop()
  for p, got in zip(first, outs):
    assert got == _alone(s, p, Settings(max_new_tokens=16))[0], p
  for p, got in zip(later, outs2):
    assert got == _alone(s, p, Settings(max_new_tokens=16, temperature=0.7, seed=5))[0], p
  held = len(s.encode(first[0]).ids) + len(outs[0]) - 1
  assert reqs2[0].reused == held  # the whole earlier turn came from the freed row
  assert reqs2[1].reused >= len(s.encode(system).ids) - 2  # the system prompt's tokens
