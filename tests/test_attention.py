"""Masks and attention against NumPy references: exact masks, 1e-5 outputs."""

import jax.numpy as jnp
import numpy as np

from gemma4.attention import attend, make_mask, vision_blocks


def test_sliding_mask_covers_window_keys_itself_included():
  pos = np.arange(12)[None]
  m = np.asarray(make_mask(jnp.asarray(pos), jnp.asarray(pos), jnp.ones((1, 12), bool), window=4))[0]
  for q in range(12):
    assert list(np.nonzero(m[q])[0]) == list(range(max(0, q - 3), q + 1))


def test_ring_buffer_mask_by_stored_positions():
  """Keys come from a ring buffer in slot order (positions wrapped), plus empty slots:
  visibility follows the stored positions, not the slot order."""
  k_pos = np.array([[8, 9, 6, 7, -1]])  # ring of 4 after positions 0..9, one unused slot
  q_pos = np.array([[10, 11]])
  m = np.asarray(make_mask(jnp.asarray(q_pos), jnp.asarray(k_pos),
                           jnp.asarray(k_pos >= 0), window=4))[0]
  np.testing.assert_array_equal(m[0], [True, True, False, True, False])  # 7, 8, 9 (10 is new)
  np.testing.assert_array_equal(m[1], [True, True, False, False, False])  # 8, 9


def test_vision_blocks_number_runs():
  vm = np.array([[0, 1, 1, 0, 0, 1, 1, 1, 0, 1]], bool)
  np.testing.assert_array_equal(vision_blocks(jnp.asarray(vm)), [[0, 1, 1, 0, 0, 2, 2, 2, 0, 3]])


def test_bidirectional_blocks_see_forward_within_window():
  t = 10
  pos = jnp.arange(t)[None]
  blocks = vision_blocks(jnp.asarray(np.array([[0, 0, 1, 1, 1, 1, 1, 1, 0, 0]], bool)))
  m = np.asarray(make_mask(pos, pos, jnp.ones((1, t), bool), window=3,
                           q_block=blocks, k_block=blocks))[0]
  causal = np.tril(np.ones((t, t), bool))
  near = np.abs(np.arange(t)[:, None] - np.arange(t)[None]) < 3
  b = np.asarray(blocks)[0]
  same = (b[:, None] == b[None]) & (b[:, None] > 0)
  np.testing.assert_array_equal(m, (causal | same) & near)
  assert m[2, 4] and not m[2, 5] and not m[1, 2]  # forward inside the block, in window


def np_attention(q, k, v, mask):
  b, t, n, h = q.shape
  kh = k.shape[2]
  out = np.zeros_like(q)
  for head in range(n):
    kv = head // (n // kh)
    logits = np.einsum('bth,bsh->bts', q[:, :, head], k[:, :, kv])
    logits = np.where(mask, logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out[:, :, head] = np.einsum('bts,bsh->bth', p, v[:, :, kv])
  return out


def test_grouped_query_attention_within_1e5():
  rng = np.random.default_rng(0)
  q = rng.standard_normal((2, 5, 6, 8))
  k, v = rng.standard_normal((2, 2, 7, 2, 8))
  mask = rng.random((2, 5, 7)) < 0.6
  mask[..., 0] = True
  got = attend(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)), jnp.asarray(mask))
  np.testing.assert_allclose(got, np_attention(q, k, v, mask), atol=1e-5,
                             rtol=0)  # measured 3.4e-7
