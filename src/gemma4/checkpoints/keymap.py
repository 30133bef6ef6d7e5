"""The one key map: where each checkpoint tensor goes in the official parameter tree.

transformers' names (HF safetensors) for the decoder, the vision tower and the audio
tower, and llama.cpp's names for the same decoder tensors (GGUF): a GGUF piece is the HF
piece renamed (`gguf_name`), with the Gemma 3 norm offset taken off. Each `Piece` names
the shape the tensor must have and the NumPy rearrangement into the official layout;
`gemma4.checkpoints.plan.fill` checks the whole plan before reading a byte.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gemma4.checkpoints.plan import Piece, heads_in, heads_out, transpose
from gemma4.config import AudioConfig, TransformerConfig, VisionConfig

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


VISION_PREFIXES = ('model.vision_tower.', 'model.embed_vision.')
AUDIO_PREFIXES = ('model.audio_tower.', 'model.embed_audio.')
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


def _minus_one(x):  # Gemma 3 GGUF norms store 1 + w; the official tree stores w
  return x - np.float32(1.0)


def gguf_text_pieces(cfg: TransformerConfig) -> list[Piece]:
  """Where each tensor of a llama.cpp file goes: the HF key map with llama.cpp names.
  The converter writes every text tensor in transformers' own shape; for Gemma 3 it adds
  the 1 of the (1 + w) norm scale to every norm weight, which is taken off here."""
  out = [dataclasses.replace(p, source=gguf_name(p.source)) for p in text_pieces(cfg)]
  if cfg.norm_offset:  # every '/scale' of a Gemma 3 tree is a norm (no skip scale)
    out = [dataclasses.replace(p, fn=_minus_one) if p.target.endswith('/scale') else p
           for p in out]
  return out


# transformers name (after 'model.') -> llama.cpp name, for the Gemma 3 and 4 text tensors.
_NAMES = {
    'embed_tokens.weight': 'token_embd.weight',
    'norm.weight': 'output_norm.weight',
    'embed_tokens_per_layer.weight': 'per_layer_token_embd.weight',
    'per_layer_model_projection.weight': 'per_layer_model_proj.weight',
    'per_layer_projection_norm.weight': 'per_layer_proj_norm.weight',
}
_LAYER_NAMES = {
    'input_layernorm.weight': 'attn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight',
    'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight',
    'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.q_norm.weight': 'attn_q_norm.weight',
    'self_attn.k_norm.weight': 'attn_k_norm.weight',
    'post_attention_layernorm.weight': 'post_attention_norm.weight',
    'pre_feedforward_layernorm.weight': 'ffn_norm.weight',
    'post_feedforward_layernorm.weight': 'post_ffw_norm.weight',
    'pre_feedforward_layernorm_2.weight': 'pre_ffw_norm_2.weight',
    'post_feedforward_layernorm_1.weight': 'post_ffw_norm_1.weight',
    'post_feedforward_layernorm_2.weight': 'post_ffw_norm_2.weight',
    'mlp.gate_proj.weight': 'ffn_gate.weight',
    'mlp.up_proj.weight': 'ffn_up.weight',
    'mlp.down_proj.weight': 'ffn_down.weight',
    'layer_scalar': 'layer_output_scale.weight',
    'per_layer_input_gate.weight': 'inp_gate.weight',
    'per_layer_projection.weight': 'proj.weight',
    'post_per_layer_input_norm.weight': 'post_norm.weight',
    'router.proj.weight': 'ffn_gate_inp.weight',
    'router.scale': 'ffn_gate_inp.scale',
    'router.per_expert_scale': 'ffn_down_exps.scale',
    'experts.gate_up_proj': 'ffn_gate_up_exps.weight',
    'experts.down_proj': 'ffn_down_exps.weight',
}


def gguf_name(hf_name: str) -> str:
  """The llama.cpp name of a transformers Gemma 3/4 text tensor ('model.layers.3.…')."""
  name = hf_name.removeprefix('model.language_model.').removeprefix('model.')
  if name in _NAMES:
    return _NAMES[name]
  _, layer, rest = name.split('.', 2)
  return f'blk.{layer}.{_LAYER_NAMES[rest]}'
