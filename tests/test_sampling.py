"""Sampling methods on hand-made logits with known answers."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma4 import sampling
from tests.sampling_reference import full_vocabulary_draw

KEYS = [jax.random.key(i) for i in range(200)]


def _draws(method, logits):
  f = jax.jit(lambda k: method.get_next_tokens(jnp.asarray(logits, jnp.float32), k))
  return np.stack([np.asarray(f(k)) for k in KEYS])  # [draws, B]


LOGITS = np.array([[0.0, 3.0, 1.0, 2.5, -1.0], [5.0, 0.0, 4.9, -2.0, 1.0]])


def test_greedy_is_argmax():
  np.testing.assert_array_equal(sampling.Greedy().get_next_tokens(jnp.asarray(LOGITS), KEYS[0]), [1, 0])


@pytest.mark.parametrize('method', [sampling.TopkSampling(k=1), sampling.Combined(top_k=1),
                                    sampling.RandomSampling(temperature=1e-4),
                                    sampling.Combined(temperature=0.0),
                                    sampling.TopPSampling(p=1e-6), sampling.Combined(min_p=0.999)])
def test_degenerate_settings_equal_greedy(method):
  """top-1, a tiny temperature, a tiny p and min-p ~1 all leave only the argmax."""
  assert (_draws(method, LOGITS) == [1, 0]).all()


def test_top_p_keeps_exactly_the_nucleus():
  # probabilities 0.5, 0.3, 0.15, 0.05: p=0.75 needs the first two; p=0.85 three.
  logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
  assert set(_draws(sampling.TopPSampling(p=0.75), logits).ravel()) == {0, 1}
  assert set(_draws(sampling.TopPSampling(p=0.85), logits).ravel()) == {0, 1, 2}
  assert set(_draws(sampling.Combined(top_k=None, top_p=0.85), logits).ravel()) == {0, 1, 2}


def test_top_k_keeps_exactly_k():
  logits = np.log(np.array([[0.1, 0.4, 0.2, 0.3]]))
  assert set(_draws(sampling.TopkSampling(k=2), logits).ravel()) == {1, 3}
  assert set(_draws(sampling.Combined(top_k=3, top_p=1.0), logits).ravel()) == {1, 2, 3}


def test_min_p_keeps_tokens_above_fraction_of_max():
  # max prob 0.5: min_p 0.5 keeps p >= 0.25 -> tokens 0 and 1 (0.3), not 2 (0.15)
  logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
  assert set(_draws(sampling.Combined(top_k=None, top_p=1.0, min_p=0.5), logits).ravel()) == {0, 1}


def test_combined_chains_top_k_then_top_p():
  # top_k=3 keeps 0.4, 0.3, 0.2 (renormalised 0.44, 0.33, 0.22); top_p=0.7 then keeps two
  logits = np.log(np.array([[0.4, 0.3, 0.2, 0.1]]))
  assert set(_draws(sampling.Combined(top_k=3, top_p=0.7), logits).ravel()) == {0, 1}


def test_random_sampling_frequencies_follow_softmax():
  logits = np.log(np.array([[0.7, 0.2, 0.1]]))
  f = jax.jit(lambda k: sampling.RandomSampling().get_next_tokens(jnp.asarray(logits), k))
  draws = np.asarray(jax.vmap(f)(jax.random.split(jax.random.key(0), 4000)))[:, 0]
  freq = np.bincount(draws, minlength=3) / len(draws)
  np.testing.assert_allclose(freq, [0.7, 0.2, 0.1], atol=0.03)


def test_combined_rejects_bad_values():
  with pytest.raises(ValueError, match=re.escape('Combined(top_p=1.5): top_p must be in (0, 1]')):
    sampling.Combined(top_p=1.5)
  with pytest.raises(ValueError, match=re.escape('Combined(min_p=-0.1): min_p must be in [0, 1]')):
    sampling.Combined(min_p=-0.1)
  with pytest.raises(ValueError, match=re.escape('Combined(top_k=0): top_k must be >= 1 or None')):
    sampling.Combined(top_k=0)


NAN, INF = float('nan'), float('inf')
_POSITIVE = 'must be finite and > 0'


@pytest.mark.parametrize('cls, field, value, error, message', [
    # temperature: finite and > 0 (Combined: >= 0, 0 is greedy); a real number, not bool / str
    *[(cls, 'temperature', v, ValueError, _POSITIVE)
      for cls in (sampling.RandomSampling, sampling.TopkSampling, sampling.TopPSampling)
      for v in (NAN, INF, -INF, 0, 0.0, -1.0)],
    *[(cls, 'temperature', v, TypeError, 'must be a real number')
      for cls in (sampling.RandomSampling, sampling.TopkSampling, sampling.TopPSampling,
                  sampling.Combined)
      for v in (True, False, '1.0', None, 1j)],
    *[(sampling.Combined, 'temperature', v, ValueError, 'must be finite and >= 0')
      for v in (NAN, INF, -1e-9, -1)],
    # top-p: in (0, 1]
    *[(cls, field, v, ValueError, 'must be in (0, 1]')
      for cls, field in ((sampling.TopPSampling, 'p'), (sampling.Combined, 'top_p'))
      for v in (0, 0.0, -0.1, 1.0000001, 2, NAN, INF)],
    *[(cls, field, v, TypeError, 'must be a real number')
      for cls, field in ((sampling.TopPSampling, 'p'), (sampling.Combined, 'top_p'))
      for v in (True, '0.9', None)],
    # top-k: an int >= 1 (Combined: or None)
    (sampling.TopkSampling, 'k', 0, ValueError, 'must be >= 1'),
    (sampling.TopkSampling, 'k', -3, ValueError, 'must be >= 1'),
    (sampling.Combined, 'top_k', -1, ValueError, 'must be >= 1 or None'),
    *[(sampling.TopkSampling, 'k', v, TypeError, 'must be an int >= 1, got')
      for v in (True, 2.0, '2', None, np.float32(2))],
    *[(sampling.Combined, 'top_k', v, TypeError, 'must be an int >= 1 or None, got')
      for v in (True, 2.0, '2')],
    # min-p: in [0, 1]
    *[(sampling.Combined, 'min_p', v, ValueError, 'must be in [0, 1]')
      for v in (-0.1, 1.5, NAN, INF)],
    (sampling.Combined, 'min_p', False, TypeError, 'must be a real number'),
])
def test_invalid_fields_are_refused_at_construction(cls, field, value, error, message):
  expected = f'{cls.__name__}({field}={value!r}): {field} {message}'
  with pytest.raises(error, match=re.escape(expected)):
    cls(**{field: value})


@pytest.mark.parametrize('method', [
    sampling.TopPSampling(p=1.0), sampling.TopPSampling(p=1), sampling.TopPSampling(p=1e-6),
    sampling.TopkSampling(k=1), sampling.TopkSampling(k=np.int64(2)),
    sampling.RandomSampling(temperature=1e-3), sampling.RandomSampling(temperature=1),
    sampling.TopkSampling(temperature=1e-3, k=3), sampling.TopPSampling(temperature=2),
    sampling.Combined(temperature=0), sampling.Combined(temperature=1e-3, top_k=None, top_p=1.0),
    sampling.Combined(top_k=1, top_p=1e-6, min_p=1.0), sampling.Combined(min_p=0),
    sampling.RandomSampling(temperature=np.float32(0.5)),
])
def test_valid_edge_values_are_accepted_hashable_and_frozen(method):
  assert hash(method) == hash(dataclasses.replace(method))
  assert method == dataclasses.replace(method)
  with pytest.raises(dataclasses.FrozenInstanceError):
    method.temperature = 0.5
  tokens = _draws(method, LOGITS)
  assert tokens.shape == (len(KEYS), 2) and ((tokens >= 0) & (tokens < 5)).all()


def test_numpy_k_is_stored_as_int():
  assert type(sampling.TopkSampling(k=np.int32(3)).k) is int
  assert sampling.TopkSampling(k=np.int32(3)) == sampling.TopkSampling(k=3)
  assert type(sampling.Combined(top_k=np.int64(7)).top_k) is int


def test_check_refuses_k_beyond_the_vocabulary():
  with pytest.raises(ValueError, match=re.escape(
      'TopkSampling(k=300000): k must be at most the vocabulary size 262144')):
    sampling.TopkSampling(k=300000).check(262144)
  with pytest.raises(ValueError, match=re.escape(
      'Combined(top_k=6): top_k must be at most the vocabulary size 5')):
    sampling.Combined(top_k=6).check(5)
  sampling.TopkSampling(k=5).check(5)  # k equal to the vocabulary is fine
  sampling.Combined(top_k=5).check(5)
  sampling.Combined(top_k=None).check(5)
  for method in (sampling.Greedy(), sampling.RandomSampling(), sampling.TopPSampling()):
    assert method.check(1) is None  # nothing to check


def test_validation_keeps_the_same_tokens():
  """The checks change no maths: the methods still draw what the bare formulas draw."""
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 50)), jnp.float32)
  key = jax.random.key(7)
  want = jax.random.categorical(key, logits / 0.7, axis=-1)
  np.testing.assert_array_equal(sampling.RandomSampling(temperature=0.7).get_next_tokens(logits, key),
                                want)
  values, ids = jax.lax.top_k(logits, 5)
  pick = jax.random.categorical(key, values / 0.7, axis=-1)
  np.testing.assert_array_equal(
      sampling.TopkSampling(temperature=0.7, k=5).get_next_tokens(logits, key),
      jnp.take_along_axis(ids, pick[..., None], axis=-1)[..., 0])


def test_argmax_equals_jnp_argmax_on_ties_nan_and_inf():
  """sampling.argmax (two plain reductions) picks exactly what jnp.argmax picks: the first
  of tied maxima, the first NaN, index 0 of an all -inf row."""
  rng = np.random.default_rng(0)
  x = rng.integers(0, 4, (9, 1000)).astype(np.float32)  # many ties; 9 rows: the row loop
  x[1, 17] = np.nan
  x[1, 400] = np.nan
  x[2] = -np.inf
  x[3, 999] = np.inf
  x[4, 5] = x[4, 900] = np.inf
  got = sampling.argmax(jnp.asarray(x))
  np.testing.assert_array_equal(got, np.asarray(jnp.argmax(jnp.asarray(x), axis=-1)))
  np.testing.assert_array_equal(got[:5], [int(np.argmax(x[0])), 17, 0, 999, 5])


def test_gumbel_at_equals_jax_random_gumbel_bitwise():
  """gumbel_at(key, i) is jax.random.gumbel(key, shape).ravel()[i], bit for bit."""
  for seed in range(4):
    key = jax.random.key(seed)
    want = np.asarray(jax.random.gumbel(key, (3, 4096))).ravel()
    index = np.random.default_rng(seed).permutation(want.size)[:500]
    got = np.asarray(jax.jit(sampling.gumbel_at)(key, jnp.asarray(index, jnp.int32)))
    np.testing.assert_array_equal(got.view(np.uint32), want[index].view(np.uint32))


# (logits scale, peak, temperature, top_k, top_p, min_p, the path it takes)
_PATHS = [(3.0, 25.0, 1.0, None, 1.0, 0.0, 'candidates, no filter'),
          (1.0, 0.0, 1.0, None, 1.0, 0.0, 'whole-vocabulary draw: noise could lift an outsider'),
          (3.0, 10.0, 0.8, 64, 0.95, 0.0, 'candidates, top-k and top-p'),
          (3.0, 0.0, 1.0, 1000, 1.0, 0.0, 'full sort: top_k above CANDIDATES'),
          (1.0, 0.0, 1.0, None, 0.9, 0.0, 'full sort: the nucleus reaches past CANDIDATES'),
          (1.0, 0.0, 1.0, None, 1.0, 0.05, 'whole-vocabulary draw: min-p keeps outsiders'),
          (3.0, 0.0, 1.3, 300, 0.5, 0.02, 'full sort then candidates')]


def test_draws_equal_the_whole_vocabulary_reference_on_every_path():
  """Combined and sample_rows draw exactly the token of the plain full-vocabulary
  reference (200 keys per case, vocabulary 4096 = 16 x CANDIDATES), on each path the
  fast draw can take; in one sample_rows batch holding every case, each row still gets
  its own reference token (a row's path never changes another row's token)."""
  vocab, draws = 4096, 200
  assert sampling.CANDIDATES * 16 == vocab
  rng = np.random.default_rng(0)
  rows = []
  for scale, peak, t, k, p, m, path in _PATHS:
    logits = rng.normal(0, scale, (1, vocab)).astype(np.float32)
    logits[0, 11:14] += peak
    logits[0, 7] = -np.inf  # a forbidden token
    logits = jnp.asarray(logits)
    method = sampling.Combined(temperature=t, top_k=k, top_p=p, min_p=m)
    mine = jax.jit(method.get_next_tokens)
    ref = jax.jit(lambda x, key, t=t, k=k, p=p, m=m: full_vocabulary_draw(x, key, t, k, p, m))
    keys = [jax.random.key(1000 * len(rows) + i) for i in range(draws)]
    want = [int(ref(logits, key)[0]) for key in keys]
    got = [int(mine(logits, key)[0]) for key in keys]
    assert got == want, path
    assert len(set(want)) > 1, path  # a real draw, not one token
    if 'nucleus' in path:  # it does reach past the candidates
      probs = np.sort(np.asarray(jax.nn.softmax(logits[0] / t)))[::-1]
      assert np.searchsorted(np.cumsum(probs), p) > sampling.CANDIDATES
    rows.append((logits, keys, want, (t, k or 0, p, m)))
  f = jax.jit(sampling.sample_rows)
  for i in range(20):
    got = f(jnp.concatenate([r[0] for r in rows]), jnp.stack([r[1][i] for r in rows]),
            *(jnp.asarray([r[3][j] for r in rows]) for j in range(4)))
    assert [int(g) for g in got] == [r[2][i] for r in rows], i
