"""HF checkpoints (the layout of the published google/gemma-4-* repositories).

A directory with config.json, safetensors weights (one file, or shards listed in
model.safetensors.index.json) and tokenizer.model beside them. config.json gives the
model; `text_pieces` is the explicit key map from transformers' names to the official
tree, with the shape each tensor must have. The safetensors format is read directly
(an 8-byte header length, a JSON header, raw little-endian data), memory-mapped, so a
tensor is read in row blocks and its pages are dropped once placed.
"""

from __future__ import annotations

import json
import mmap
import os
import sys

import ml_dtypes
import numpy as np

from gemma4 import loading
from gemma4.config import GLOBAL, LOCAL, AudioConfig, TransformerConfig, VisionConfig
from gemma4.loading import Piece, heads_in, heads_out, transpose
from gemma4.tokenizer import Gemma3Tokenizer, Gemma4Tokenizer

_DTYPES = {'F32': np.float32, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16,
           'F64': np.float64, 'I64': np.int64, 'I32': np.int32, 'U8': np.uint8,
           'BOOL': np.bool_}
_VISION_PREFIXES = ('model.vision_tower.', 'model.embed_vision.')
_AUDIO_PREFIXES = ('model.audio_tower.', 'model.embed_audio.')


# --- config --------------------------------------------------------------------------

def read_config(path: str) -> dict:
  file = os.path.join(path, 'config.json')
  if not os.path.isfile(file):
    raise FileNotFoundError(f'{path!r} has no config.json (expected a HF checkpoint directory)')
  try:
    with open(file) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f'{file!r} is not readable JSON: {e}') from e


def text_config(raw: dict) -> tuple[dict, str]:
  """The text model's config and its family ('gemma3' or 'gemma4')."""
  kind = raw.get('model_type')
  if kind in ('gemma4', 'gemma3'):
    return raw.get('text_config') or {}, kind
  if kind in ('gemma4_text', 'gemma3_text'):
    return raw, kind[:6]
  raise ValueError(f'config.json model_type {kind!r} is not a Gemma 3 or Gemma 4 model '
                   '(expected gemma4, gemma4_text, gemma3 or gemma3_text)')


def _layer_kinds(c: dict, n: int, pattern_default: int = 6) -> tuple[str, ...]:
  types = c.get('layer_types')
  if types is None:
    step = c.get('sliding_window_pattern', pattern_default)
    types = ['sliding_attention' if (i + 1) % step else 'full_attention' for i in range(n)]
  kinds = {'sliding_attention': LOCAL, 'full_attention': GLOBAL}
  bad = sorted({t for t in types if t not in kinds})
  if bad:
    raise ValueError(f'unknown layer_types {bad} in config.json')
  return tuple(kinds[t] for t in types)


def _rope(c: dict, kind: str) -> dict:
  params = c.get('rope_parameters') or {}
  return params.get('full_attention' if kind == GLOBAL else 'sliding_attention') or {}


def config_from_hf(raw: dict) -> TransformerConfig:
  """The gemma4 TransformerConfig of a HF config.json (Gemma 4 or Gemma 3 text)."""
  c, family = text_config(raw)
  n = int(c['num_hidden_layers'])
  kinds = _layer_kinds(c, n)
  heads, head_dim = int(c['num_attention_heads']), int(c.get('head_dim', 256))
  common = dict(vocab_size=int(c.get('vocab_size', 262144)), embed_dim=int(c['hidden_size']),
                num_heads=heads, num_kv_heads=int(c['num_key_value_heads']),
                head_dim=head_dim, layer_types=kinds, sliding_window=int(c['sliding_window']),
                final_logit_softcap=c.get('final_logit_softcapping'))
  if family == 'gemma3':
    glob, loc = _rope(c, GLOBAL), _rope(c, LOCAL)
    scaling = c.get('rope_scaling') or glob
    factor = float(scaling.get('factor', 1.0)) if scaling.get('rope_type') == 'linear' else 1.0
    return TransformerConfig(
        family='gemma3', hidden_dim=int(c['intermediate_size']), global_head_dim=None,
        local_rope_base=float(loc.get('rope_theta', c.get('rope_local_base_freq', 10_000))),
        global_rope_base=float(glob.get('rope_theta', c.get('rope_theta', 1_000_000))),
        global_rope_proportion=1.0, global_rope_scale=factor,
        query_scale=float(c.get('query_pre_attn_scalar', head_dim)) ** -0.5,
        attn_logits_softcap=c.get('attn_logit_softcapping'), **common)
  per_layer = {int(k): v for k, v in (c.get('per_layer_config') or {}).items()}
  global_over = next((per_layer[i] for i, k in enumerate(kinds) if k == GLOBAL and i in per_layer),
                     {})
  global_head_dim = c.get('global_head_dim', global_over.get('head_dim'))
  global_kv = c.get('num_global_key_value_heads', global_over.get('num_key_value_heads'))
  if not c.get('attention_k_eq_v', False):
    global_kv = None  # transformers applies the global kv-head count only with K = V
  glob, loc = _rope(c, GLOBAL), _rope(c, LOCAL)
  moe = bool(c.get('enable_moe_block', False))
  ffw = int(c['intermediate_size'])
  n_shared = int(c.get('num_kv_shared_layers', 0) or 0)
  return TransformerConfig(
      hidden_dim=ffw, global_head_dim=int(global_head_dim) if global_head_dim else None,
      num_global_kv_heads=int(global_kv) if global_kv else None,
      k_eq_v_global=bool(c.get('attention_k_eq_v', False)),
      local_rope_base=float(loc.get('rope_theta', 10_000)),
      global_rope_base=float(glob.get('rope_theta', 1_000_000)),
      local_rope_proportion=float(loc.get('partial_rotary_factor', 1.0)),
      global_rope_proportion=float(glob.get('partial_rotary_factor', 1.0)),
      per_layer_input_dim=int(c.get('hidden_size_per_layer_input') or 0),
      num_kv_shared_layers=n_shared,
      kv_shared_hidden_dim=2 * ffw if c.get('use_double_wide_mlp') and n_shared else None,
      num_experts=int(c['num_experts']) if moe else 0,
      expert_dim=int(c.get('moe_intermediate_size') or c.get('expert_intermediate_size') or 0)
      if moe else 0,
      top_k_experts=int(c['top_k_experts']) if moe else 0,
      bidirectional_vision=c.get('use_bidirectional_attention') == 'vision',
      vision=vision_config(raw), audio=audio_config(raw), **common)


def audio_config(raw: dict) -> AudioConfig | None:
  """The AudioConfig of a Gemma 4 config.json's `audio_config` (None without one)."""
  a = raw.get('audio_config') if raw.get('model_type') == 'gemma4' else None
  if not a:
    return None
  expected = dict(attention_chunk_size=12, attention_logit_cap=50.0, residual_weight=0.5,
                  subsampling_conv_channels=[128, 32], hidden_act='silu',
                  use_clipped_linears=True)
  problems = [f'{k} {a[k]!r} (expected {v!r})' for k, v in expected.items()
              if k in a and a[k] != v and not (isinstance(v, list) and list(a[k]) == v)]
  d, n = int(a.get('hidden_size', 1024)), int(a.get('num_attention_heads', 8))
  if d % n:
    problems.append(f'hidden_size {d} is not a multiple of num_attention_heads {n}')
  if int(a.get('attention_context_right', 0)) != 0:
    problems.append(f'attention_context_right {a["attention_context_right"]} (expected 0)')
  if problems:
    raise ValueError('config.json audio_config is not a Gemma 4 audio encoder: '
                     + '; '.join(problems))
  return AudioConfig(num_layers=int(a.get('num_hidden_layers', 12)), model_dims=d,
                     lm_model_dims=int(a.get('output_proj_dims', 1536)), atten_num_heads=n,
                     atten_left_context=int(a.get('attention_context_left', 13)),
                     atten_right_context=0, conv_kernel_size=int(a.get('conv_kernel_size', 5)),
                     gradient_clipping=float(a.get('gradient_clipping', 1e10)))


def vision_config(raw: dict) -> VisionConfig | None:
  """The VisionConfig of a Gemma 4 config.json's `vision_config` (None without one)."""
  v = raw.get('vision_config') if raw.get('model_type') == 'gemma4' else None
  if not v:
    return None
  d, n = int(v.get('hidden_size', 768)), int(v.get('num_attention_heads', 12))
  problems = []
  if int(v.get('num_key_value_heads', n)) != n:
    problems.append(f'num_key_value_heads {v["num_key_value_heads"]} (expected {n}, as many as '
                    'the query heads)')
  if int(v.get('head_dim', d // n)) * n != d:
    problems.append(f'head_dim {v["head_dim"]} (expected hidden_size / num_attention_heads '
                    f'= {d // n})')
  rope = v.get('rope_parameters') or {}
  if float(rope.get('rope_theta', 100.0)) != 100.0:
    problems.append(f'rope_theta {rope["rope_theta"]} (expected 100)')
  if int(v.get('pooling_kernel_size', 3)) != 3:
    problems.append(f'pooling_kernel_size {v["pooling_kernel_size"]} (expected 3)')
  if v.get('hidden_activation', 'gelu_pytorch_tanh') != 'gelu_pytorch_tanh':
    problems.append(f'hidden_activation {v["hidden_activation"]!r} (expected gelu_pytorch_tanh)')
  if problems:
    raise ValueError('config.json vision_config is not a Gemma 4 vision encoder: '
                     + '; '.join(problems))
  return VisionConfig(d_model=d, num_layers=int(v.get('num_hidden_layers', 16)), num_heads=n,
                      ffw_hidden=int(v.get('intermediate_size', 3072)),
                      patch_size=int(v.get('patch_size', 16)),
                      pos_emb_shape_yx=(int(v.get('position_embedding_size', 10240)), 2),
                      use_clipped_linears=bool(v.get('use_clipped_linears', False)),
                      standardize_embeddings=bool(v.get('standardize', False)))


# --- the key map ---------------------------------------------------------------------

def text_pieces(cfg: TransformerConfig, prefix: str = 'model.') -> list[Piece]:
  """Where each transformers decoder tensor goes in the official tree.

  prefix: 'model.' for Gemma4ForCausalLM, 'model.language_model.' for the published
  multimodal checkpoints. Gemma 3 norms are stored as w in both trees (scale 1 + w).
  """
  d, n, v = cfg.embed_dim, cfg.num_heads, cfg.vocab_size
  m = prefix
  pieces = [Piece(m + 'embed_tokens.weight', (v, d), 'embedder/input_embedding', rows=True),
            Piece(m + 'norm.weight', (d,), 'final_norm/scale')]
  if cfg.per_layer_input_dim:
    l, p = cfg.num_layers, cfg.per_layer_input_dim
    pieces += [
        Piece(m + 'embed_tokens_per_layer.weight', (v, l * p), 'embedder/per_layer_embeddings',
              fn=lambda x: x.reshape(x.shape[0], l, p), rows=True),
        Piece(m + 'per_layer_model_projection.weight', (l * p, d),
              'embedder/per_layer_model_projection/w', fn=lambda x: x.T.reshape(d, l, p)),
        Piece(m + 'per_layer_projection_norm.weight', (p,), 'embedder/per_layer_projection_norm/scale'),
    ]
  q_norm, k_norm = cfg.qk_norm_names
  for i, kind in enumerate(cfg.layer_types):
    b, t = f'{m}layers.{i}.', f'layer_{i}/'
    h, k = cfg.key_size(kind), cfg.kv_heads(kind)
    pieces += [
        Piece(b + 'input_layernorm.weight', (d,), t + 'pre_attention_norm/scale'),
        Piece(b + 'self_attn.q_proj.weight', (n * h, d), t + 'attn/q_einsum/w',
              fn=heads_in(n, h, d)),
        Piece(b + 'self_attn.o_proj.weight', (d, n * h), t + 'attn/attn_vec_einsum/w',
              fn=heads_out(n, h, d)),
        Piece(b + 'self_attn.q_norm.weight', (h,), t + f'attn/{q_norm}/scale'),
        Piece(b + 'post_attention_layernorm.weight', (d,), t + 'post_attention_norm/scale'),
        Piece(b + 'post_feedforward_layernorm.weight', (d,), t + 'post_ffw_norm/scale'),
    ]
    if not cfg.is_kv_shared(i):  # transformers keeps no K/V weights on KV-shared layers
      pieces.append(Piece(b + 'self_attn.k_norm.weight', (h,), t + f'attn/{k_norm}/scale'))
      if cfg.k_eq_v(kind):
        pieces.append(Piece(b + 'self_attn.k_proj.weight', (k * h, d), t + 'attn/k_einsum/w',
                            fn=heads_in(k, h, d)))
      else:
        pieces += [Piece(b + 'self_attn.k_proj.weight', (k * h, d), t + 'attn/kv_einsum/w',
                         (0,), heads_in(k, h, d)),
                   Piece(b + 'self_attn.v_proj.weight', (k * h, d), t + 'attn/kv_einsum/w',
                         (1,), heads_in(k, h, d))]
    if cfg.skip_scale:
      pieces.append(Piece(b + 'layer_scalar', (1,), t + 'skip_scale'))
    f = cfg.mlp_hidden(i)
    dense = 'mlp2/' if cfg.is_moe else 'mlp/'
    pieces += [
        Piece(b + 'mlp.gate_proj.weight', (f, d), t + dense + 'gating_einsum', (0,)),
        Piece(b + 'mlp.up_proj.weight', (f, d), t + dense + 'gating_einsum', (1,)),
        Piece(b + 'mlp.down_proj.weight', (d, f), t + dense + 'linear', fn=transpose),
        Piece(b + 'pre_feedforward_layernorm.weight', (d,),
              t + ('pre_ffw2_norm/scale' if cfg.is_moe else 'pre_ffw_norm/scale')),
    ]
    if cfg.is_moe:
      e, x = cfg.num_experts, cfg.expert_dim
      pieces += [
          Piece(b + 'pre_feedforward_layernorm_2.weight', (d,), t + 'pre_ffw_norm/scale'),
          Piece(b + 'post_feedforward_layernorm_1.weight', (d,), t + 'post_ffw2_norm/scale'),
          Piece(b + 'post_feedforward_layernorm_2.weight', (d,), t + 'post_ffw1_norm/scale'),
          Piece(b + 'experts.gate_up_proj', (e, 2 * x, d), t + 'mlp/gating_einsum/w',
                fn=lambda a, e=e, x=x: a.reshape(e, 2, x, d)),
          Piece(b + 'experts.down_proj', (e, d, x), t + 'mlp/linear/w',
                fn=lambda a: a.transpose(0, 2, 1)),
          Piece(b + 'router.proj.weight', (e, d), t + 'mlp/router_logits/w', fn=transpose),
          Piece(b + 'router.scale', (d,), t + 'mlp/router_scale'),
          Piece(b + 'router.per_expert_scale', (e,), t + 'mlp/per_expert_scale'),
      ]
    if cfg.per_layer_input_dim:
      p = cfg.per_layer_input_dim
      pieces += [
          Piece(b + 'per_layer_input_gate.weight', (p, d), t + 'per_layer_input_gate/w', fn=transpose),
          Piece(b + 'per_layer_projection.weight', (d, p), t + 'per_layer_projection/w', fn=transpose),
          Piece(b + 'post_per_layer_input_norm.weight', (d,), t + 'post_per_layer_input_norm/scale'),
      ]
  return pieces


def unused_params(cfg: TransformerConfig) -> dict[str, str]:
  """Official parameters the model never reads and transformers does not store: the K/V
  weights and key norm of KV-shared layers. They are filled with zeros (ones for norms)."""
  out = {}
  for i, kind in enumerate(cfg.layer_types):
    if cfg.is_kv_shared(i):
      t = f'layer_{i}/attn/'
      out[t + ('k_einsum/w' if cfg.k_eq_v(kind) else 'kv_einsum/w')] = 'zeros'
      out[t + cfg.qk_norm_names[1] + '/scale'] = 'ones'
  return out


_CLIPS = ('input_min', 'input_max', 'output_min', 'output_max')
# The official tree has one set of clip bounds for K and V (kv_einsum) and one for the
# gate and up projections (gating_einsum); transformers stores a copy on each.
_SHARED_CLIPS = {'self_attn.v_proj': 'self_attn.k_proj', 'mlp.up_proj': 'mlp.gate_proj'}


def vision_pieces(v: VisionConfig, text_width: int, prefix: str = 'model.') -> list[Piece]:
  """Where each transformers vision-tower tensor goes in the official `vision_encoder`
  tree (block parameters stacked over layers) and `embedder/mm_input_projection`."""
  d, n, f, h = v.d_model, v.num_heads, v.ffw_hidden, v.d_model // v.num_heads
  m, t = prefix + 'vision_tower.', 'vision_encoder/'
  blk = t + 'transformer/stacked_layers/block/'
  pieces = [
      Piece(m + 'patch_embedder.input_proj.weight', (d, 3 * v.patch_size ** 2),
            t + 'entry/input_projection/w', fn=transpose),
      Piece(m + 'patch_embedder.position_embedding_table', (2, v.pos_emb_shape_yx[0], d),
            t + 'entry/pos_emb', fn=lambda x: x.transpose(1, 0, 2)),
      Piece(prefix + 'embed_vision.embedding_projection.weight', (text_width, d),
            'embedder/mm_input_projection/w', fn=transpose),
  ]
  if v.standardize_embeddings:
    pieces += [Piece(m + 'std_bias', (d,), t + 'standardize/bias'),
               Piece(m + 'std_scale', (d,), t + 'standardize/scale')]
  for i in range(v.num_layers):
    b = f'{m}encoder.layers.{i}.'
    linears = [  # (transformers name, official name, shape, index after the layer, fn)
        ('self_attn.q_proj', 'attn/q_einsum', (n * h, d), (), heads_in(n, h, d)),
        ('self_attn.k_proj', 'attn/kv_einsum', (n * h, d), (0,), heads_in(n, h, d)),
        ('self_attn.v_proj', 'attn/kv_einsum', (n * h, d), (1,), heads_in(n, h, d)),
        ('self_attn.o_proj', 'attn/attn_vec_einsum', (d, n * h), (), heads_out(n, h, d)),
        ('mlp.gate_proj', 'mlp/gating_einsum', (f, d), (0,), None),
        ('mlp.up_proj', 'mlp/gating_einsum', (f, d), (1,), None),
        ('mlp.down_proj', 'mlp/linear', (d, f), (), transpose),
    ]
    for name, target, shape, index, fn in linears:
      pieces.append(Piece(f'{b}{name}.linear.weight', shape, f'{blk}{target}/w', (i,) + index, fn))
      if v.use_clipped_linears and name not in _SHARED_CLIPS:
        pieces += [Piece(f'{b}{name}.{c}', (), f'{blk}{target}/clip_{c}', (i,)) for c in _CLIPS]
    pieces += [
        Piece(b + 'self_attn.q_norm.weight', (h,), blk + 'attn/query_norm/scale', (i,)),
        Piece(b + 'self_attn.k_norm.weight', (h,), blk + 'attn/key_norm/scale', (i,)),
        Piece(b + 'input_layernorm.weight', (d,), blk + 'pre_attention_norm/scale', (i,)),
        Piece(b + 'post_attention_layernorm.weight', (d,), blk + 'post_attention_norm/scale', (i,)),
        Piece(b + 'pre_feedforward_layernorm.weight', (d,), blk + 'pre_ffw_norm/scale', (i,)),
        Piece(b + 'post_feedforward_layernorm.weight', (d,), blk + 'post_ffw_norm/scale', (i,)),
    ]
  return pieces


def audio_pieces(a: AudioConfig, text_width: int, prefix: str = 'model.') -> list[Piece]:
  """Where each transformers audio-tower tensor goes in the official `audio_encoder`
  tree and `embedder/audio_input_projection` (torch [out, in] -> official [in, out])."""
  from gemma4.conformer import CHANNELS, N_MELS
  d, n, p, k = a.model_dims, a.atten_num_heads, a.lm_model_dims, a.conv_kernel_size
  h, (c0, c1), f = d // n, CHANNELS, N_MELS // 4
  m, t = prefix + 'audio_tower.', 'audio_encoder/'
  s = m + 'subsample_conv_projection.'
  conv = lambda x: x.transpose(2, 3, 1, 0)  # [out, in, 3, 3] -> [3, 3, in, out]
  pieces = [
      Piece(s + 'layer0.conv.weight', (c0, 1, 3, 3), t + 'feature/subsampling_0/kernel', fn=conv),
      Piece(s + 'layer0.norm.weight', (c0,), t + 'feature/norm_0/scale'),
      Piece(s + 'layer1.conv.weight', (c1, c0, 3, 3), t + 'feature/subsampling_1/kernel', fn=conv),
      Piece(s + 'layer1.norm.weight', (c1,), t + 'feature/norm_1/scale'),
      Piece(s + 'input_proj_linear.weight', (d, f * c1), t + 'feature/input_proj/kernel',
            fn=lambda x: x.T.reshape(f, c1, d)),
      Piece(m + 'output_proj.weight', (p, d), t + 'output_projection/kernel', fn=transpose),
      Piece(m + 'output_proj.bias', (p,), t + 'output_projection/bias'),
      Piece(prefix + 'embed_audio.embedding_projection.weight', (text_width, p),
            'embedder/audio_input_projection/w', fn=transpose),
  ]
  for i in range(a.num_layers):
    b, o = f'{m}layers.{i}.', f'{t}conformer/stacked_layers_{i}/'
    linears = [  # (transformers name, official name, torch shape, fn)
        ('feed_forward1.ffw_layer_1', 'fflayer_start/ffn_layer1', (4 * d, d), transpose),
        ('feed_forward1.ffw_layer_2', 'fflayer_start/ffn_layer2', (d, 4 * d), transpose),
        ('feed_forward2.ffw_layer_1', 'fflayer_end/ffn_layer1', (4 * d, d), transpose),
        ('feed_forward2.ffw_layer_2', 'fflayer_end/ffn_layer2', (d, 4 * d), transpose),
        ('self_attn.q_proj', 'trans_atten/self_atten/query', (d, d), transpose),
        ('self_attn.k_proj', 'trans_atten/self_atten/key', (d, d), transpose),
        ('self_attn.v_proj', 'trans_atten/self_atten/value', (d, d), transpose),
        ('self_attn.post', 'trans_atten/post', (d, d), lambda x: x.T.reshape(n, h, d)),
        ('lconv1d.linear_start', 'lconv/linear_start', (2 * d, d), transpose),
        ('lconv1d.linear_end', 'lconv/linear_end', (d, d), transpose),
    ]
    for name, target, shape, fn in linears:
      pieces.append(Piece(f'{b}{name}.linear.weight', shape, f'{o}{target}/kernel', fn=fn))
      pieces += [Piece(f'{b}{name}.{c}', (), f'{o}{target}/clip_{c}') for c in _CLIPS]
    norms = [('feed_forward1.pre_layer_norm', 'fflayer_start/pre_layer_norm', d),
             ('feed_forward1.post_layer_norm', 'fflayer_start/post_layer_norm', d),
             ('feed_forward2.pre_layer_norm', 'fflayer_end/pre_layer_norm', d),
             ('feed_forward2.post_layer_norm', 'fflayer_end/post_layer_norm', d),
             ('norm_pre_attn', 'trans_atten/pre_norm', d),
             ('norm_post_attn', 'trans_atten/post_norm', d),
             ('lconv1d.pre_layer_norm', 'lconv/ln', d), ('lconv1d.conv_norm', 'lconv/conv_norm', d),
             ('norm_out', 'final_ln', d)]
    pieces += [Piece(f'{b}{name}.weight', (dim,), f'{o}{target}/scale') for name, target, dim in norms]
    pieces += [
        Piece(b + 'self_attn.per_dim_scale', (h,), o + 'trans_atten/self_atten/per_dim_scale'),
        Piece(b + 'self_attn.relative_k_proj.weight', (d, d),
              o + 'trans_atten/self_atten/relative_position_embedding/pos_proj/kernel',
              fn=lambda x: x.T.reshape(d, n, h)),
        Piece(b + 'lconv1d.depthwise_conv1d.weight', (d, 1, k), o + 'lconv/depthwise_conv1d/kernel',
              fn=lambda x: x.transpose(2, 1, 0)),
    ]
  return pieces


def shared_clip_copies(v: VisionConfig, prefix: str = 'model.') -> dict[str, str]:
  """The transformers clip bounds that copy another (V's copy K's, up's copy gate's):
  {copy: original}. They are not loaded; `check_shared_clips` checks they are equal."""
  if not v.use_clipped_linears:
    return {}
  m = prefix + 'vision_tower.encoder.layers.'
  return {f'{m}{i}.{copy}.{c}': f'{m}{i}.{orig}.{c}' for i in range(v.num_layers)
          for copy, orig in _SHARED_CLIPS.items() for c in _CLIPS}


def check_shared_clips(reader: 'SafetensorsFiles', copies: dict[str, str], path: str) -> None:
  """One CheckpointError naming every copied clip bound that differs from its original
  (the official tree could not hold it); runs before any weight is placed."""
  names = reader.shapes()
  bad = []
  for copy, orig in copies.items():
    if copy in names and orig in names:
      a, b = float(reader.read(copy)), float(reader.read(orig))
      if a != b and not (np.isnan(a) and np.isnan(b)):
        bad.append(f'{copy} = {a} but {orig} = {b}')
  if bad:
    raise loading.CheckpointError(
        f'checkpoint {path}: the official vision tree has one set of clip bounds for K and V '
        f'and one for the gate and up projections, but these differ ({len(bad)}):\n  '
        + '\n  '.join(bad))


# --- safetensors -----------------------------------------------------------------------

class SafetensorsFiles(loading.Reader):
  """The tensors of one or more .safetensors files, memory-mapped."""

  def __init__(self, files: list[str]):
    self.entries: dict[str, tuple[np.memmap, str, tuple[int, ...], int, int]] = {}
    self.maps = []
    for file in files:
      with open(file, 'rb') as f:
        head = f.read(8)
        if len(head) < 8:
          raise ValueError(f'{file!r} is not a safetensors file (too short)')
        n = int.from_bytes(head, 'little')
        try:
          header = json.loads(f.read(n))
        except ValueError as e:
          raise ValueError(f'{file!r} is not a safetensors file (bad header: {e})') from e
      data = np.memmap(file, np.uint8, 'r', offset=8 + n) if os.path.getsize(file) > 8 + n \
          else np.zeros(0, np.uint8)
      self.maps.append(data)
      for name, info in header.items():
        if name == '__metadata__':
          continue
        if info['dtype'] not in _DTYPES:
          raise ValueError(f'{file!r}: tensor {name} has unsupported dtype {info["dtype"]}')
        begin, end = info['data_offsets']
        self.entries[name] = (data, info['dtype'], tuple(info['shape']), begin, end)

  def shapes(self):
    return {k: v[2] for k, v in self.entries.items()}

  def read(self, name, start=None, stop=None):
    data, dtype, shape, begin, end = self.entries[name]
    arr = data[begin:end].view(_DTYPES[dtype]).reshape(shape)
    if start is not None:
      arr = arr[start:stop]
    out = np.array(arr)  # one copy, in the file's dtype; the caller casts
    return out if out.dtype in (np.float32, ml_dtypes.bfloat16) else out.astype(np.float32)

  def release(self):
    for data in self.maps:
      mm = getattr(data, '_mmap', None)
      if mm is not None:
        mm.madvise(mmap.MADV_DONTNEED)


def weight_files(path: str) -> list[str]:
  index = os.path.join(path, 'model.safetensors.index.json')
  if os.path.isfile(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)['weight_map'].values()))
    missing = [s for s in shards if not os.path.isfile(os.path.join(path, s))]
    if missing:
      raise FileNotFoundError(f'{path!r}: shards listed in model.safetensors.index.json are '
                              f'missing: {", ".join(missing)}')
    return [os.path.join(path, s) for s in shards]
  files = sorted(f for f in os.listdir(path) if f.endswith('.safetensors'))
  if not files:
    raise FileNotFoundError(f'{path!r} has no .safetensors weights')
  return [os.path.join(path, f) for f in files]


def load_tokenizer(path: str, family: str) -> Gemma4Tokenizer | None:
  """tokenizer.model beside the weights, else one built from tokenizer.json, else None."""
  cls = Gemma3Tokenizer if family == 'gemma3' else Gemma4Tokenizer
  file = os.path.join(path, 'tokenizer.model')
  if os.path.isfile(file):
    return cls(file)
  file = os.path.join(path, 'tokenizer.json')
  if os.path.isfile(file):
    return cls(proto=sentencepiece_from_tokenizer_json(file))
  return None


def sentencepiece_from_tokenizer_json(file: str) -> bytes:
  """The SentencePiece BPE model equal to a HF tokenizer.json of Gemma's kind (BPE with
  byte fallback): pieces in id order; a piece made by merge number r scores -r, so that
  SentencePiece's highest-score merge is transformers' lowest-rank merge; added tokens
  are user-defined pieces (matched in text), ids 0-3 the reserved ones."""
  from gemma4.tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, USER_DEFINED, sentencepiece_proto
  with open(file, encoding='utf-8') as f:
    j = json.load(f)
  model = j.get('model', {})
  if model.get('type') != 'BPE':
    raise ValueError(f'{file!r}: tokenizer model {model.get("type")!r} is not BPE')
  vocab = model['vocab']
  added = {t['id']: t['content'] for t in j.get('added_tokens', [])}
  n = max(max(vocab.values()), max(added, default=-1)) + 1
  pieces = [''] * n
  for piece, i in vocab.items():
    pieces[i] = piece
  for i, piece in added.items():
    pieces[i] = piece.replace(' ', '\u2581')
  rank = {}
  for r, merge in enumerate(model.get('merges', [])):
    a, b = merge.split(' ', 1) if isinstance(merge, str) else merge
    rank.setdefault(a + b, r)
  scores, types = [], []
  for i, piece in enumerate(pieces):
    if i in added:
      kind = {0: CONTROL, 1: CONTROL, 2: CONTROL, 3: UNKNOWN}.get(i, USER_DEFINED)
      scores.append(0.0)
    elif len(piece) == 6 and piece.startswith('<0x') and piece.endswith('>'):
      kind = BYTE
      scores.append(0.0)
    else:
      kind = NORMAL
      scores.append(-float(rank.get(piece, len(rank) + i)) if len(piece) > 1 else -float(len(rank)))
    types.append(kind)
  return sentencepiece_proto(pieces, scores, types)


def load(path, model=None, dtype=None, progress: bool | None = None):
  """(model, params, tokenizer) from a HF directory; see `gemma4.load_checkpoint`."""
  path = os.fspath(path)
  cfg = config_from_hf(read_config(path))
  reader = SafetensorsFiles(weight_files(path))
  names = reader.shapes()
  prefix = 'model.language_model.' if any(k.startswith('model.language_model.') for k in names) \
      else 'model.'
  embedding = prefix + 'embed_tokens.weight'
  file_dtype = (reader.entries.get(embedding) or next(iter(reader.entries.values())))[1]
  vision = [k for k in names if k.startswith(_VISION_PREFIXES)]
  audio = [k for k in names if k.startswith(_AUDIO_PREFIXES)]
  model = loading.resolve_model(cfg, model, dtype, np.float32 if file_dtype == 'F32'
                                else ml_dtypes.bfloat16, f'{cfg.family}_hf', path,
                                text_only=not (vision or audio))
  pieces = text_pieces(cfg, prefix)
  dropped = {}
  if model.has_vision:
    pieces += vision_pieces(model.config.vision, cfg.embed_dim)
    copies = shared_clip_copies(model.config.vision)
    check_shared_clips(reader, copies, path)
    dropped.update({k: 'a copy of another clip bound (checked equal)' for k in copies})
  elif vision:
    why = f'{model.name} is text_only' if model.text_only else 'config.json has no vision_config'
    print(f'gemma4: {path}: the vision tower ({len(vision)} tensors) is not loaded: {why}',
          file=sys.stderr)
    dropped.update({k: 'vision tower of a text_only model' for k in vision})
  if model.has_audio:
    pieces += audio_pieces(model.config.audio, cfg.embed_dim)
  elif audio:
    why = f'{model.name} is text_only' if model.text_only else 'config.json has no audio_config'
    print(f'gemma4: {path}: the audio tower ({len(audio)} tensors) is not loaded: {why}',
          file=sys.stderr)
    dropped.update({k: 'audio tower of a text_only model' for k in audio})
  if 'lm_head.weight' in names:
    dropped['lm_head.weight'] = 'tied to the embedding'
  params = loading.fill(reader, pieces, loading.target_shapes(model.param_specs()),
                        model.dtype, dropped=dropped, unused=unused_params(cfg),
                        what=f'checkpoint {path}', progress=progress)
  return model, params, load_tokenizer(path, cfg.family)
