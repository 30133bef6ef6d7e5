"""Gemma 3 presets on gemma4's decoder against the official gemma==4.0.1 Gemma 3 models.

Bounds: full-size parameter trees (names, shapes) equal the official eval_shape for
every Gemma 3 text preset; float32 logits of a tiny Gemma 3 (the 270M preset with small
dims, official `model.init` params) within 1e-4 at every position of a 40-token prompt
longer than the window.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gemma import gm
from gemma.gm.nn import _modules

import gemma4
from gemma4 import params as gparams

pytestmark = pytest.mark.oracle

OFFICIAL = {'gemma3_270m': gm.nn.Gemma3_270M, 'gemma3_1b': gm.nn.Gemma3_1B,
            'gemma3_4b': gm.nn.Gemma3_4B, 'gemma3_12b': gm.nn.Gemma3_12B,
            'gemma3_27b': gm.nn.Gemma3_27B}


def _official(name, **kw):
  cls = OFFICIAL[name]
  return cls(text_only=True, **kw) if 'text_only' in cls.__dataclass_fields__ else cls(**kw)


@pytest.mark.parametrize('name', list(OFFICIAL))
def test_gemma3_param_tree_equals_official(name):
  model = _official(name)
  theirs = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32)))
  ours = gemma4.models.get_model(name).eval_shape()
  sig = lambda t: {k: tuple(v.shape) for k, v in gparams.flatten(gparams.unwrap(t)).items()}
  assert sig(ours) == sig(theirs)


@pytest.mark.parametrize('name', ['gemma3_270m', 'gemma3_27b'])
def test_tiny_gemma3_logits_equal_official_within_1e4(name):
  L, G = _modules.AttentionType.LOCAL_SLIDING, _modules.AttentionType.GLOBAL
  base = OFFICIAL[name].config
  kinds = (L,) * 5 + (G,)
  official_cfg = dataclasses.replace(base, embed_dim=64, hidden_dim=128, num_heads=4,
                                     head_dim=16, num_kv_heads=2, sliding_window_size=8,
                                     attention_types=kinds, vision_encoder=None)
  ref = _official(name, config=official_cfg, dtype=jnp.float32)  # default: bf16 activations
  tokens = jnp.asarray(np.random.default_rng(0).integers(5, 262144, (2, 40)), jnp.int32)
  params = ref.init(jax.random.key(1), tokens)['params']
  # official init leaves every norm at 0 (scale 1 + 0): perturb them so they count
  rng = np.random.default_rng(2)
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.1 * rng.standard_normal(x.shape).astype(x.dtype)
      if 'norm' in jax.tree_util.keystr(p) else x, params)
  theirs = ref.apply({'params': params}, tokens).logits
  preset = gemma4.PRESETS[name]
  cfg = dataclasses.replace(
      preset, embed_dim=64, hidden_dim=128, num_heads=4, head_dim=16, num_kv_heads=2,
      sliding_window=8, layer_types=('local',) * 5 + ('global',),
      query_scale=(16 ** -0.5 if name == 'gemma3_270m' else (64 // 4) ** -0.5))
  ours, _ = gemma4.forward(params, cfg, tokens)
  scale = float(jnp.max(jnp.abs(theirs)))
  assert float(jnp.max(jnp.abs(ours - theirs))) < 1e-4, (float(jnp.max(jnp.abs(ours - theirs))), scale)
