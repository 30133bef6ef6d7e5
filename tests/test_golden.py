"""gemma4 against golden fixtures of the official gemma==4.0.1 decoder (tests/golden/).

The oracle suite wrote them on the same seeded params; bounds as there: float32 logits
(plain, and with image soft tokens marked by a vision mask)
within 1e-4 at every valid position (256 fixed vocab columns plus each position's
argmax column, and the logsumexp over the whole vocabulary); bfloat16 within a mean
|diff| of 0.1 (dense) or 0.5 (MoE, where rounding flips expert choices).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from tests import golden

F32_BOUND = 1e-4


def _ours(preset, tokens, dtype, vision_mask=None):
  cfg = gemma4.models.tiny_config(preset)
  params = gemma4.init_params(cfg, golden.PARAM_SEED, dtype)
  fwd = jax.jit(lambda p, t, vm: gemma4.forward(p, cfg, t, vision_mask=vm)[0])
  return cfg, np.asarray(fwd(params, jnp.asarray(tokens), vision_mask))


@pytest.mark.parametrize('preset', golden.PRESETS)
def test_f32_logits_match_official_within_1e4(preset):
  """Measured 8.8e-6 to 2.2e-5 (columns), 9.5e-7 (logsumexp)."""
  g = golden.load(preset)
  cfg, logits = _ours(preset, g['tokens'], jnp.float32)
  valid = golden.valid_positions(g['tokens'])
  s = golden.summarize(logits, cfg.vocab_size, argmax_ids=g['argmax'])
  assert np.abs(s['logits_cols'] - g['logits_cols'])[valid].max() <= F32_BOUND
  assert np.abs(s['lse'] - g['lse'])[valid].max() <= F32_BOUND
  np.testing.assert_array_equal(logits.argmax(-1)[valid], g['argmax'][valid])


@pytest.mark.parametrize('preset', golden.PRESETS)
def test_bf16_logits_mean_diff_within_0p1_dense_0p5_moe(preset):
  """Mean |gemma4 bfloat16 - official bfloat16| over the stored columns: measured 0.04-0.06
  dense, 0.37 MoE."""
  g = golden.load(preset)
  cfg, logits = _ours(preset, g['tokens'], jnp.bfloat16)
  valid = golden.valid_positions(g['tokens'])
  diff = np.abs(logits[..., g['cols']] - g['logits_bf16_cols'])[valid]
  assert diff.mean() <= (0.5 if cfg.is_moe else 0.1)


@pytest.mark.parametrize('preset', golden.PRESETS)
def test_vision_mask_logits_match_official_within_1e4(preset):
  """Two images' soft tokens marked: bidirectional within each image on local layers
  for 26B-A4B and 31B, causal for E2B/E4B, as the official multimodal path computes.
  Measured 7.2e-6 to 2.9e-5 (columns), 9.5e-7 (logsumexp)."""
  g = golden.load(preset)
  toks = golden.vision_tokens(g['tokens'])
  cfg, logits = _ours(preset, toks, jnp.float32, jnp.asarray(toks == -2))
  valid = golden.valid_positions(g['tokens'])
  s = golden.summarize(logits, cfg.vocab_size, argmax_ids=g['argmax'])
  assert np.abs(s['logits_cols'] - g['vision_logits_cols'])[valid].max() <= F32_BOUND
  assert np.abs(s['lse'] - g['vision_lse'])[valid].max() <= F32_BOUND
