"""The vision encoders against the official gemma==4.0.1 outputs recorded by the oracle
suite (tests/oracle/test_vision_oracle.py, GEMMA4_WRITE_GOLDEN=1): tiny encoders of both
variants, float32, an image that fills the patch budget, outputs within 1e-4; the
projection and chunked attention against direct computations within 1e-5."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gemma4 import vision
from gemma4.config import VisionConfig
from gemma4.params import unflatten

HERE = os.path.join(os.path.dirname(__file__), 'golden')


@pytest.mark.parametrize('variant', ['clipped', 'standardized'])
def test_encoder_matches_official_within_1e4(variant):
  g = np.load(os.path.join(HERE, f'vision_{variant}.npz'))
  params = unflatten({k[6:]: jnp.asarray(g[k]) for k in g.files if k.startswith('param/')})
  cfg = VisionConfig(d_model=64, num_layers=2, num_heads=4, ffw_hidden=96,
                     pos_emb_shape_yx=(50, 2), use_clipped_linears=variant == 'clipped',
                     standardize_embeddings=variant == 'standardized')
  with jax.default_matmul_precision('highest'):
    ours, mask = jax.jit(vision.encode, static_argnums=1)(params, cfg, jnp.asarray(g['patches']),
                                                          jnp.asarray(g['positions']))
  assert np.array_equal(np.asarray(mask), g['official_mask'])
  assert float(np.max(np.abs(np.asarray(ours) - g['official']))) < 1e-4


def test_projection_is_unscaled_rms_then_matmul_within_1e5():
  """Measured 2.4e-7 (outputs up to 4)."""
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 8)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(1).standard_normal((8, 3)), jnp.float32)
  want = (x / jnp.sqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6)) @ w
  assert float(jnp.max(jnp.abs(vision.project(x, w) - want))) < 1e-5


def test_attention_in_query_chunks_equals_all_at_once_within_1e5():
  """Large budgets attend `QUERY_CHUNK` queries at a time (memory); the rows are the
  same sums up to float32 rounding of differently blocked matmuls (measured 2.7e-6).
  630 patches, 100 of them padding, chunks of 64 (uneven)."""
  from gemma4 import vision
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.standard_normal((2, 630, 4, 16)), jnp.float32) for _ in range(3))
  valid = jnp.asarray(np.arange(630)[None] < np.array([[630], [530]]))
  whole = vision._attend(q, k, v, valid, chunk=1024)
  chunked = vision._attend(q, k, v, valid, chunk=64)
  assert float(jnp.abs(whole - chunked).max()) <= 1e-5
