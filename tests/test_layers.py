"""Per-op parity of gemma4.layers (float32) with plain NumPy references (float64): max
absolute error 1e-5, except RoPE at positions up to 500 (2e-5: float32 angles) and its
relative-position property (1e-4)."""

import jax.numpy as jnp
import numpy as np
import pytest

from gemma4.layers import gated_mlp, rms_norm, rope, softcap


def np_rms_norm(x, scale=None, eps=1e-6):
  y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
  return y if scale is None else y * scale


def np_rope(x, pos, base, proportion=1.0):
  """Rotates pairs (i, i + H/2) by pos * base**(-2i/H) for the first proportion*H/2 i."""
  h = x.shape[-1]
  out = x.copy()
  for i in range(int(proportion * h // 2)):
    ang = pos[..., None] * base ** (-2.0 * i / h)  # [B, T, 1]
    a, b = x[..., i], x[..., i + h // 2]
    out[..., i] = a * np.cos(ang) - b * np.sin(ang)
    out[..., i + h // 2] = b * np.cos(ang) + a * np.sin(ang)
  return out


def np_gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_rms_norm_within_1e5(seed):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((2, 5, 32)) * 3
  s = rng.standard_normal(32)
  got = rms_norm(jnp.asarray(x, jnp.float32), jnp.asarray(s, jnp.float32))
  # measured 5.3e-7
  np.testing.assert_allclose(got, np_rms_norm(x, s), atol=1e-5, rtol=0)
  np.testing.assert_allclose(rms_norm(jnp.asarray(x, jnp.float32)), np_rms_norm(x), atol=1e-5,
                             rtol=0)


@pytest.mark.parametrize('proportion,base', [(1.0, 10_000), (0.25, 1_000_000), (0.5, 10_000)])
def test_rope_full_and_partial_within_2e5(proportion, base):
  """Against float64 angles: float32 rounds an angle near 500 rad by up to 1.5e-5 (half
  its ulp), which moves the output by that times |x|; measured 1.2e-5 (0.25, 1e6)."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 7, 3, 32))
  pos = rng.integers(0, 500, (2, 7))
  got = rope(jnp.asarray(x, jnp.float32), jnp.asarray(pos), base, proportion)
  np.testing.assert_allclose(got, np_rope(x, pos, base, proportion), atol=2e-5, rtol=0)
  if proportion < 1:  # dims past the rotated share pass through unchanged
    n = int(proportion * 16)
    np.testing.assert_array_equal(np.asarray(got)[..., n:16], x[..., n:16].astype(np.float32))


def test_rope_relative_within_1e4():
  """q(p)·k(p') depends only on p - p' (exactly what RoPE is for), to 1e-4 (measured
  2.9e-6 on a dot product of 4.1)."""
  rng = np.random.default_rng(1)
  q, k = rng.standard_normal((2, 1, 1, 1, 16))
  def dot(pq, pk):
    a = rope(jnp.asarray(q, jnp.float32), jnp.array([[pq]]), 10_000)
    b = rope(jnp.asarray(k, jnp.float32), jnp.array([[pk]]), 10_000)
    return float(jnp.sum(a * b))
  assert abs(dot(10, 3) - dot(107, 100)) <= 1e-4


def test_gated_mlp_within_1e5():
  rng = np.random.default_rng(0)
  x, wg, wl = rng.standard_normal((3, 8)), rng.standard_normal((2, 12, 8)), rng.standard_normal((12, 8))
  want = (np_gelu_tanh(x @ wg[0].T) * (x @ wg[1].T)) @ wl
  got = gated_mlp(*(jnp.asarray(a, jnp.float32) for a in (x, wg, wl)))
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)  # measured 2e-6 (|want| to 29)


def test_softcap_within_1e5():
  x = np.array([-100.0, -1.0, 0.0, 2.0, 100.0])
  np.testing.assert_allclose(softcap(jnp.asarray(x), 30.0), 30 * np.tanh(x / 30), atol=1e-5,
                             rtol=0)  # measured 5.5e-7
  np.testing.assert_array_equal(softcap(jnp.asarray(x), None), x)
