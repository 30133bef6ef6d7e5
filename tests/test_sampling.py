"""Sampling methods on hand-made logits with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma4 import sampling

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
  with pytest.raises(ValueError, match='top_p must be in \\(0, 1\\], got 1.5'):
    sampling.Combined(top_p=1.5)
  with pytest.raises(ValueError, match='min_p must be in \\[0, 1\\], got -0.1'):
    sampling.Combined(min_p=-0.1)
  with pytest.raises(ValueError, match='top_k must be >= 1 or None, got 0'):
    sampling.Combined(top_k=0)
