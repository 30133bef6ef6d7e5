"""MoE routing and experts against a NumPy loop over tokens (HF router semantics), 1e-5."""

import jax.numpy as jnp
import numpy as np

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


def test_route_keeps_top_k_renormalised():
  rng = np.random.default_rng(0)
  p = _params(rng)
  x = rng.standard_normal((9, 8))
  w, ids = route(jnp.asarray(x, jnp.float32), jnp.asarray(p['router_logits']['w'], jnp.float32),
                 jnp.asarray(p['router_scale'], jnp.float32), 2)
  _, probs = np_moe(p, x, x, 2)
  np.testing.assert_array_equal(np.sort(ids, -1), np.sort(np.argsort(-probs, -1)[:, :2], -1))
  np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-6)


def test_moe_mlp_within_1e5():
  rng = np.random.default_rng(1)
  p = _params(rng)
  x, xr = rng.standard_normal((2, 6, 8)), rng.standard_normal((2, 6, 8))
  jp = {k: ({'w': jnp.asarray(v['w'], jnp.float32)} if isinstance(v, dict)
            else jnp.asarray(v, jnp.float32)) for k, v in p.items()}
  got = moe_mlp(jp, jnp.asarray(x, jnp.float32), jnp.asarray(xr, jnp.float32), 3)
  want, _ = np_moe(p, x.reshape(-1, 8), xr.reshape(-1, 8), 3)
  np.testing.assert_allclose(np.asarray(got).reshape(-1, 8), want, atol=1e-5)
