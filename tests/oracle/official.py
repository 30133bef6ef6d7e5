"""Helpers that build the official gemma==4.0.1 models matching gemma4's tiny configs.

Imported only inside the oracle environment (scripts/run_oracle_tests.sh).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from gemma import gm
from gemma.gm.nn.gemma4 import _config, _modules, _moe

L, G = _modules.AttentionType.LOCAL_SLIDING, _modules.AttentionType.GLOBAL

OFFICIAL = {
    'gemma4_e2b': gm.nn.Gemma4_E2B,
    'gemma4_e4b': gm.nn.Gemma4_E4B,
    'gemma4_26b_a4b': gm.nn.Gemma4_26B_A4B,
    'gemma4_31b': gm.nn.Gemma4_31B,
}


def tiny_official_config(preset: str):
  """The official TransformerConfig of the tiny model, by dataclasses.replace on the preset."""
  base = OFFICIAL[preset].config
  kw = dict(embed_dim=64, hidden_dim=128, num_heads=4, head_dim=16,
            num_kv_heads=min(base.num_kv_heads, 2), global_key_size=32,
            sliding_window_size=8, attention_types=(L, L, G, L, L, G))
  if base.per_layer_input_dim:
    kw.update(per_layer_input_dim=16, kv_cache_sharing_config=_config.KVCacheSharingConfig(
        frac_shared_layers=0.5, share_global=True, share_local=True),
              override_kv_shared_ffw_hidden=256 if base.override_kv_shared_ffw_hidden else None)
  if base.num_global_kv_heads:
    kw.update(num_global_kv_heads=1)
  if base.enable_moe:
    kw.update(hidden_dim=48, moe_dense_hidden_dim=48, num_experts=4, expert_dim=24,
              top_k_experts=2)
  return dataclasses.replace(base, **kw)


class HeadRouterMoE(_moe.MoERagged):
  """MoERagged whose router reads the un-normalised residual, as the repository head
  (4.1.0) and HF transformers do; 4.0.1 routes on the pre-FFW-normed input."""

  def __call__(self, x, unnormalized_x=None):
    r = self.router_norm(x if unnormalized_x is None else unnormalized_x)
    r = r * jax.lax.rsqrt(jnp.array(self.features, dtype=r.dtype))
    r = r * self.router_scale.astype(r.dtype)
    weights, choices = self._router(self.router_logits('gsd,de->gse', r))
    return self._run_ffw_and_routing(x, choices, weights)


class HeadRouterBlock(_modules.Block):
  """Block that hands the residual to the router (head `_forward_moe`)."""

  def _forward_moe(self, attn_output):
    dense = self.post_ffw2_norm(self.mlp2(self.pre_ffw2_norm(attn_output)))
    moe = self.mlp(self.pre_ffw_norm(attn_output), unnormalized_x=attn_output)
    return self.post_ffw_norm(dense + self.post_ffw1_norm(moe))


def use_head_router():
  """Patches the official MoE to the head's router (module attributes read at setup)."""
  _moe.MoERagged = HeadRouterMoE
  _modules.Block = HeadRouterBlock


def tiny_official_model(preset: str, dtype=jnp.float32):
  return OFFICIAL[preset](config=tiny_official_config(preset), dtype=dtype)


def logits_with_vision_mask(model, params, tokens, vision_mask):
  """Official logits where `vision_mask` marks image soft tokens, through the same
  steps as the official multimodal input path (`_encode_and_get_inputs`), minus the
  vision encoder: the embeddings stay the token embeddings."""
  from gemma.gm.math import _pos_utils
  from gemma.gm.nn.gemma4 import _transformer
  from gemma.gm.utils import _attention_mask

  def fn(m, tokens, vision_mask):
    x = m.embedder.encode(tokens)
    inputs_mask = tokens != 0
    sliding = None
    if m.config.use_bidirectional_attention == 'vision':
      sliding = _attention_mask.make_causal_bidirectional_attention_mask(
          inputs_mask, bidirectional_mask=vision_mask)
    inputs = _transformer._Inputs(
        embeddings=x,
        positions=_pos_utils.build_positions_from_mask(inputs_mask),
        attention_mask=_attention_mask.make_causal_bidirectional_attention_mask(inputs_mask),
        inputs_mask=inputs_mask,
        sliding_attention_mask=sliding,
        per_layer_inputs=(m.embedder.encode_per_layer_input(x, tokens)
                          if m.config.per_layer_input_dim else None))
    h, _ = m._apply_attention(inputs, None)
    logits = m.embedder.decode(h)
    cap = m.config.final_logit_softcap
    return jnp.tanh(logits / cap) * cap

  return model.apply({'params': params}, tokens, vision_mask, method=fn)
