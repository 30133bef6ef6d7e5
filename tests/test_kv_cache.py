"""The cache is sized per layer kind; ring buffers wrap at exact positions."""

import jax
import jax.numpy as jnp
import numpy as np

import gemma4
from gemma4.kv_cache import write_slots


def test_sizes_per_layer_kind_e2b_32k():
  """E2B at 32768 tokens: 12 local ring buffers of 512, 3 global buffers of 32768 and
  no buffer for the 20 KV-shared layers; the official layout gives all 35 layers 32768."""
  cfg = gemma4.PRESETS['gemma4_e2b']
  cache = jax.eval_shape(lambda: gemma4.init_cache(cfg, 1, 32768, jnp.bfloat16))
  shapes = [None if k is None else k.shape for k in cache.k]
  assert shapes.count(None) == 20
  assert shapes.count((1, 512, 1, 256)) == 12 and shapes.count((1, 32768, 1, 512)) == 3
  kv_bytes = sum(2 * np.prod(s) * 2 for s in shapes if s)
  official = sum(2 * 32768 * cfg.kv_heads(t) * cfg.key_size(t) * 2 for t in cfg.layer_types)
  assert kv_bytes == 12 * 2 * 512 * 256 * 2 + 3 * 2 * 32768 * 512 * 2
  assert (round(kv_bytes / 2**20), round(official / 2**20)) == (198, 1344)  # README's figures


def test_ring_slots_keep_last_window_positions():
  pos = jnp.arange(10)[None]
  valid = jnp.ones((1, 10), bool)
  idx = np.asarray(write_slots(pos, valid, 4, ring=True))[0]
  np.testing.assert_array_equal(idx, [4, 4, 4, 4, 4, 4, 2, 3, 0, 1])  # 6..9 kept, 4 = dropped
  lin = np.asarray(write_slots(pos, valid.at[0, 9].set(False), 8, ring=False))[0]
  np.testing.assert_array_equal(lin, [0, 1, 2, 3, 4, 5, 6, 7, 8, 8])


def test_ring_buffer_wraps_with_exact_positions():
  m = gemma4.models.tiny('e4b')
  params = m.init(0)
  cache = m.init_cache(1, 32, jnp.float32)
  tokens = jnp.arange(1, 12, dtype=jnp.int32)[None]
  _, cache = m.apply(params, tokens[:, :5], cache=cache)
  np.testing.assert_array_equal(cache.pos['local'], [[0, 1, 2, 3, 4, -1, -1, -1]])
  for t in range(5, 11):
    _, cache = m.apply(params, tokens[:, t:t + 1], cache=cache)
  np.testing.assert_array_equal(cache.pos['local'], [[8, 9, 10, 3, 4, 5, 6, 7]])
  np.testing.assert_array_equal(cache.pos['global'][0, :12], list(range(11)) + [-1])
  assert int(cache.next_pos[0]) == 11


def test_global_buffer_drops_past_its_length_instead_of_wrapping():
  m = gemma4.models.tiny('31b')
  cache = m.init_cache(1, 6, jnp.float32)
  _, cache = m.apply(m.init(0), jnp.arange(1, 9, dtype=jnp.int32)[None], cache=cache)
  np.testing.assert_array_equal(cache.pos['global'], [[0, 1, 2, 3, 4, 5]])
  np.testing.assert_array_equal(cache.pos['local'], [[6, 7, 2, 3, 4, 5]])
