"""Self-consistency through the KV cache: prefill of a whole sequence equals prefill of a
prefix (or of chunks) followed by token-by-token decode, well past the sliding window
(window 8, 40 tokens), for every tiny preset; float32, max absolute logit difference 1e-4
(measured 1e-5 to 3.7e-5), 1e-5 for the last-token logits; 2e-4 over the 1090 tokens of
the slow test of a cache read in blocks (see it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from gemma4.attention import BLOCK

PRESETS = ['e2b', 'e4b', '26b_a4b', '31b']
BOUND = 1e-4


@pytest.fixture(scope='module', params=PRESETS)
def model(request):
  m = gemma4.models.tiny(request.param)
  return m, m.init(0)


def _full(m, params, tokens):
  return np.asarray(jax.jit(lambda p, t: m.apply(p, t)[0])(params, jnp.asarray(tokens)))


_step = jax.jit(lambda p, t, c, cfg: gemma4.forward(p, cfg, t, cache=c), static_argnums=3)


def _run_chunks(m, params, tokens, chunks, length=64):
  cache = m.init_cache(tokens.shape[0], length, jnp.float32)
  out, start = [], 0
  for n in chunks:
    logits, cache = _step(params, jnp.asarray(tokens[:, start:start + n]), cache, m.config)
    out.append(np.asarray(logits))
    start += n
  return np.concatenate(out, axis=1), cache


def test_prefix_then_decode_equals_full_prefill_within_1e4(model):
  m, params = model
  tokens = np.random.default_rng(0).integers(1, 5000, (2, 40)).astype(np.int32)
  full = _full(m, params, tokens)
  stepped, cache = _run_chunks(m, params, tokens, [5] + [1] * 35)
  assert np.abs(stepped - full).max() <= BOUND
  np.testing.assert_array_equal(cache.next_pos, [40, 40])


def test_chunked_prefill_longer_than_window_equals_full_within_1e4(model):
  m, params = model
  tokens = np.random.default_rng(1).integers(1, 5000, (1, 40)).astype(np.int32)
  chunked, _ = _run_chunks(m, params, tokens, [13, 9, 1, 17])
  assert np.abs(chunked - _full(m, params, tokens)).max() <= BOUND


@pytest.mark.slow
def test_global_cache_read_in_blocks_equals_full_prefill_within_2e4():
  """A cache longer than attention.BLOCK (global layers read it in blocks up to the next
  position; e2b's KV-shared layers read their source's blocks): a prefill of 1020
  tokens, 10 decode steps across slot 1024 and a chunk of 60 equal one full prefill.
  Bound 2e-4, not BOUND: over 1090 positions with logits up to 11.5, the prefill part
  (the full prefill's math, compiled apart) already differs by 9.6e-5, and the decode
  steps by 1.05e-4 (head by head, attention.PER_HEAD_MAX; 9.6e-5 grouped)."""
  m = gemma4.models.tiny('e2b')
  params = m.init(0)
  tokens = np.random.default_rng(3).integers(1, 5000, (1, 1090)).astype(np.int32)
  stepped, cache = _run_chunks(m, params, tokens, [1020] + [1] * 10 + [60],
                               length=2 * BLOCK + 5)
  assert np.abs(stepped - _full(m, params, tokens)).max() <= 2e-4
  np.testing.assert_array_equal(cache.next_pos, [1090])


def test_padded_batch_rows_decode_as_alone_within_1e4(model):
  """Row 1's prompt is 12 tokens padded (id 0) to 20: decoding continues from its own
  position, and every row's logits equal that row run alone without a cache."""
  m, params = model
  rng = np.random.default_rng(2)
  seqs = [rng.integers(1, 5000, 30).astype(np.int32), rng.integers(1, 5000, 22).astype(np.int32)]
  prompt = np.zeros((2, 20), np.int32)
  prompt[0], prompt[1, :12] = seqs[0][:20], seqs[1][:12]
  cache = m.init_cache(2, 64, jnp.float32)
  logits, cache = _step(params, jnp.asarray(prompt), cache, m.config)
  got = [[np.asarray(logits[0, :20])], [np.asarray(logits[1, :12])]]
  for i in range(10):
    step = np.array([[seqs[0][20 + i]], [seqs[1][12 + i]]], np.int32)
    logits, cache = _step(params, jnp.asarray(step), cache, m.config)
    got[0].append(np.asarray(logits[0]))
    got[1].append(np.asarray(logits[1]))
  for row in range(2):
    alone = _full(m, params, seqs[row][None])[0]
    assert np.abs(np.concatenate(got[row]) - alone).max() <= BOUND


def test_last_only_returns_last_valid_token_within_1e5():
  """last_only logits equal the full run's at each row's last valid token (measured 0)."""
  m = gemma4.models.tiny('31b')
  params = m.init(0)
  tokens = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], np.int32)
  full = _full(m, params, tokens)
  last, _ = m.apply(params, jnp.asarray(tokens), last_only=True)
  np.testing.assert_allclose(last, full[[0, 1], [3, 1]], atol=1e-5, rtol=0)


def test_embeds_input_equals_token_input_within_1e4():
  m = gemma4.models.tiny('e2b')
  params = m.init(0)
  tokens = jnp.asarray(np.random.default_rng(3).integers(1, 5000, (1, 12)), jnp.int32)
  a, _ = m.apply(params, tokens)
  b, _ = m.apply(params, tokens, embeds=gemma4.transformer.embed(params, tokens))
  np.testing.assert_allclose(a, b, atol=BOUND, rtol=0)  # same math, compiled apart: 1.1e-5
  with pytest.raises(ValueError, match='per-layer embeddings need tokens'):
    m.apply(params, None, embeds=gemma4.transformer.embed(params, tokens))


@pytest.mark.parametrize('preset', ['gemma3_270m', 'e2b'])
def test_decode_loop_updates_the_cache_in_place(preset):
  """A jitted decode while_loop over `forward` (int8 weights, as the sampler runs it)
  compiles to no copy of any cache buffer: the K/V writes update them in place. Writes
  that did not depend on the attention reads made XLA copy every buffer twice a step."""
  import collections
  import dataclasses
  import re
  from gemma4 import quant
  m = gemma4.models.tiny(preset)
  cfg = dataclasses.replace(m.config, vocab_size=1024)
  params = quant.quantize_params(dataclasses.replace(m, config=cfg).init(0))
  cache = gemma4.init_cache(cfg, 1, 2 * BLOCK + 5, jnp.float32)

  def body(c):
    i, token, cache = c
    logits, cache = gemma4.forward(params, cfg, token[:, None], cache=cache, last_only=True)
    return i + 1, jnp.argmax(logits, -1).astype(jnp.int32), cache

  run = jax.jit(lambda cache: jax.lax.while_loop(
      lambda c: c[0] < 4, body, (0, jnp.ones((1,), jnp.int32), cache)), donate_argnums=0)
  hlo = run.lower(cache).compile().as_text()
  shapes = {'f32[%s]' % ','.join(map(str, b.shape)) for b in cache.k + cache.v if b is not None}
  copies = collections.Counter(
      s for s in re.findall(r'= (f32\[[0-9,]+\])\{[^}]*\} copy\(', hlo) if s in shapes)
  assert shapes and not copies, copies


@pytest.mark.parametrize('split', [True, False])
def test_forward_outside_jit_equals_one_program_within_1e4(model, split, monkeypatch):
  """forward called outside jit, split (one program per distinct layer, as a prefill of a
  deep model runs it) or not, gives the logits and cache of the same call inside jit
  (one program), KV-shared layers included, within 1e-4 (same math, compiled apart:
  measured up to 1.1e-5 on logits up to ~30); donate_cache=True writes the
  cache passed in place (its buffers are then used up), without it the cache passed
  stays as it was."""
  from gemma4 import transformer
  monkeypatch.setattr(transformer, 'SPLIT_LAYERS_PER_PROGRAM', 1 if split else 100)
  m, params = model
  assert transformer.split_layers(m.config) == split
  tokens = np.random.default_rng(4).integers(1, 5000, (2, 21)).astype(np.int32)
  _, cache = _run_chunks(m, params, tokens[:, :9], [9])
  held = [np.array(k, copy=True) for k in cache.k if k is not None]  # a view would pin them
  want, want_cache = _step(params, jnp.asarray(tokens[:, 9:]), cache, m.config)
  got, got_cache = gemma4.forward(params, m.config, jnp.asarray(tokens[:, 9:]), cache=cache)
  assert all(np.array_equal(a, b) for a, b in zip(held, (k for k in cache.k if k is not None)))
  assert np.abs(np.asarray(got) - np.asarray(want)).max() <= BOUND
  for a, b in zip(jax.tree.leaves(got_cache), jax.tree.leaves(want_cache)):
    np.testing.assert_allclose(a, b, atol=BOUND, rtol=0)
  donated, done_cache = gemma4.forward(params, m.config, jnp.asarray(tokens[:, 9:]),
                                       cache=cache, donate_cache=True)
  assert all(k.is_deleted() for k in cache.k if k is not None)
  np.testing.assert_array_equal(donated, got)
  for a, b in zip(jax.tree.leaves(done_cache), jax.tree.leaves(got_cache)):
    np.testing.assert_array_equal(a, b)


def test_a_program_returning_an_input_gives_a_new_buffer():
  """Why `transformer._block` returns only new arrays: a jitted program of its own that
  returns an array it was given gives it back in a new buffer (jax 0.10.2 on CPU), so
  returning the cache would copy it once per layer per prefill."""
  from gemma4 import compilation
  a = jnp.arange(16.0)
  same, _ = compilation.jit(lambda x: (x, x + 1))(a)
  assert same.unsafe_buffer_pointer() != a.unsafe_buffer_pointer()
