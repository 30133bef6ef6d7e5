"""MoE routing and experts against NumPy references (HF router semantics), float64:
expert ids exact, router weights within 1e-6, expert outputs within 1e-5."""

import jax.numpy as jnp
import numpy as np
import pytest

from gemma4.moe import moe_mlp, route
from tests.test_layers import np_gelu_tanh, np_rms_norm


def _params(rng, d=8, e=5, h=6):
  return {'router_logits': {'w': rng.standard_normal((d, e))},
          'router_scale': 1 + 0.3 * rng.standard_normal(d),
          'gating_einsum': {'w': rng.standard_normal((e, 2, h, d)) / 3},
          'linear': {'w': rng.standard_normal((e, h, d)) / 3},
          'per_expert_scale': 1 + 0.3 * rng.standard_normal(e)}


def np_moe(p, x, x_router, k):
  d = x.shape[-1]
  r = np_rms_norm(x_router) * p['router_scale'] * d ** -0.5
  logits = r @ p['router_logits']['w']
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  out = np.zeros_like(x)
  for i in range(x.shape[0]):
    top = np.argsort(-probs[i])[:k]
    w = probs[i, top] / probs[i, top].sum()
    for e, we in zip(top, w):
      g = p['gating_einsum']['w'][e]
      y = (np_gelu_tanh(g[0] @ x[i]) * (g[1] @ x[i])) @ p['linear']['w'][e]
      out[i] += we * p['per_expert_scale'][e] * y
  return out, probs


def np_route(p, x, k):
  """Per token, in float64: softmax over all experts of the router logits (unscaled RMS
  norm of x, times router_scale and D**-0.5, projected), the k most probable experts in
  descending order, and their probabilities divided by the sum of those k."""
  ids, weights = [], []
  for row in x:
    r = row / np.sqrt(np.mean(row * row) + 1e-6) * p['router_scale'] / np.sqrt(row.size)
    logits = r @ p['router_logits']['w']
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs)[:k]
    ids.append(top)
    weights.append(probs[top] / probs[top].sum())
  return np.array(ids), np.array(weights)


@pytest.mark.parametrize('seed,experts,k', [(0, 5, 2), (2, 8, 3), (3, 4, 1)])
def test_route_weights_are_renormalised_top_k_softmax_within_1e6(seed, experts, k):
  """route's expert ids equal the reference's exactly (same descending order) and its
  weights the reference's renormalised top-k probabilities within 1e-6 (measured
  9.6e-8); the smallest gap between the k-th and (k+1)-th logits here is 0.015."""
  rng = np.random.default_rng(seed)
  p = _params(rng, e=experts)
  x = rng.standard_normal((9, 8))
  w, ids = route(jnp.asarray(x, jnp.float32), jnp.asarray(p['router_logits']['w'], jnp.float32),
                 jnp.asarray(p['router_scale'], jnp.float32), k)
  want_ids, want_w = np_route(p, x, k)
  assert w.dtype == jnp.float32 and ids.dtype == jnp.int32
  assert w.shape == ids.shape == (9, k)
  np.testing.assert_array_equal(np.asarray(ids), want_ids)
  np.testing.assert_allclose(np.asarray(w), want_w, atol=1e-6, rtol=0)
  if k > 1:  # weights that a uniform 1/k (or unnormalised probabilities) would not pass
    assert np.abs(want_w - 1 / k).max() > 0.1 and np.abs(want_w.sum(-1) - 1).max() < 1e-12


def test_moe_mlp_within_1e5():
  """Measured 1.6e-7 (outputs up to 0.7)."""
  rng = np.random.default_rng(1)
  p = _params(rng)
  x, xr = rng.standard_normal((2, 6, 8)), rng.standard_normal((2, 6, 8))
  jp = {k: ({'w': jnp.asarray(v['w'], jnp.float32)} if isinstance(v, dict)
            else jnp.asarray(v, jnp.float32)) for k, v in p.items()}
  got = moe_mlp(jp, jnp.asarray(x, jnp.float32), jnp.asarray(xr, jnp.float32), 3)
  want, _ = np_moe(p, x.reshape(-1, 8), xr.reshape(-1, 8), 3)
  np.testing.assert_allclose(np.asarray(got).reshape(-1, 8), want, atol=1e-5, rtol=0)
