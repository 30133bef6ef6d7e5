"""Masks and attention against NumPy references: exact masks, 1e-5 outputs."""

import jax.numpy as jnp
import numpy as np
import pytest

from gemma4.attention import (BLOCK, PER_HEAD_MAX, Keys, attend, attend_parts, make_mask,
                              values_last, vision_blocks)


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


def _parts_case(rng, s_cache, t=3, b=2, heads=4, kv_heads=2):
  q = rng.standard_normal((b, t, heads, 8))
  kc, vc = rng.standard_normal((2, b, s_cache, kv_heads, 8))
  kn, vn = rng.standard_normal((2, b, t, kv_heads, 8))
  mask_c = rng.random((b, t, s_cache)) < 0.5
  mask_n = np.tril(np.ones((t, t), bool))[None].repeat(b, 0)
  return q, (kc, vc, mask_c), (kn, vn, mask_n)


def _attend_two(q, cache, new, used=None):
  """attend_parts over a cache part (read up to `used` when given) and a new part; the
  cache part's mask comes from its slot index, as a mask_of of positions would."""
  (kc, vc, mask_c), (kn, vn, mask_n) = cache, new
  b, s = kc.shape[:2]
  slots = jnp.broadcast_to(jnp.arange(s), (b, s))
  f = lambda a: jnp.asarray(a, jnp.float32)
  parts = [Keys(f(kc), values_last(f(vc)), slots, jnp.ones((b, s), bool), slots,
                None if used is None else jnp.int32(used)),
           Keys(f(kn), values_last(f(vn)), -1 - slots[:, :kn.shape[1]],
                jnp.ones((b, kn.shape[1]), bool), slots[:, :kn.shape[1]])]

  def mask_of(pos, valid, _):  # cache slots by index; the new part by -1 - index
    cached = jnp.take_along_axis(jnp.asarray(mask_c), jnp.maximum(pos, 0)[:, None, :], 2)
    fresh = jnp.take_along_axis(jnp.asarray(mask_n), jnp.maximum(-1 - pos, 0)[:, None, :], 2)
    return jnp.where((pos >= 0)[:, None, :], cached, fresh) & valid[:, None, :]
  return attend_parts(f(q), parts, mask_of)


def _joined(cache, new, used=None):
  """The first `used` (default: all) cache keys, values and mask columns joined with the
  new part's."""
  return [np.concatenate([a[..., :used, :, :] if i < 2 else a[..., :used], b],
                         axis=-1 if i == 2 else 1)
          for i, (a, b) in enumerate(zip(cache, new))]


def test_attention_over_parts_equals_one_softmax_within_1e5():
  """A cache part and a new part, merged as flash attention merges blocks, against one
  softmax over the keys joined (numpy)."""
  rng = np.random.default_rng(1)
  q, cache, new = _parts_case(rng, 37)
  got = _attend_two(q, cache, new)
  np.testing.assert_allclose(got, np_attention(q, *_joined(cache, new)), atol=1e-5, rtol=0)


@pytest.mark.parametrize('s_cache, used', [(2500, 2500), (2500, 1500), (2500, 2049),
                                           (3 * BLOCK, 2 * BLOCK + 1), (2500, 0)])
def test_cache_read_in_blocks_up_to_used_within_1e5(s_cache, used):
  """A cache part with `used` is read BLOCK slots at a time up to `used`, the last block
  shifted back into bounds without counting a slot twice: equal to one softmax over the
  first `used` cache slots and the new keys (numpy)."""
  rng = np.random.default_rng(2)
  q, cache, new = _parts_case(rng, s_cache)
  got = _attend_two(q, cache, new, used=used)
  np.testing.assert_allclose(got, np_attention(q, *_joined(cache, new, used)), atol=1e-5,
                             rtol=0)


@pytest.mark.parametrize('heads, kv_heads', [(4, 1), (4, 2), (2, 2), (8, 1), (8, 4)])
def test_one_query_head_by_head_equals_one_softmax_within_1e5(heads, kv_heads):
  """A decode step's query (batch 1, one token) over a cache part read in blocks and a
  new part: with at most PER_HEAD_MAX query heads its products run head by head, above
  it as one grouped product; both equal one softmax over the keys joined (numpy)."""
  assert 4 <= PER_HEAD_MAX < 8  # (4, *) and (2, 2) run head by head, (8, *) grouped
  rng = np.random.default_rng(3)
  used = BLOCK + 5
  q, cache, new = _parts_case(rng, BLOCK + 40, t=1, b=1, heads=heads, kv_heads=kv_heads)
  got = _attend_two(q, cache, new, used=used)
  np.testing.assert_allclose(got, np_attention(q, *_joined(cache, new, used)), atol=1e-5,
                             rtol=0)
