"""The Gemma 4 vision encoders (E2B/E4B: 16 layers with clipped linears; 26B-A4B/31B:
27 layers with standardized outputs), on the official parameter tree unchanged.

patches [B, L, 768] in [0, 1] and positions [B, L, 2] (column, row; -1 for padding) from
`gemma4.images.preprocess` -> soft tokens [B, L // 9, text width] and their validity.
Steps (gemma/gm/nn/gemma4/vision, gemma==4.0.1): 2 * (x - 0.5), patch projection, one
learned position table per axis, blocks of (RMS-normed, QK-normed, 2-D RoPE base 100,
unscaled) bidirectional attention and a GELU-tanh gated MLP with post-norms, 3 x 3 mean
pooling by position, times sqrt(width), standardization where the preset has it, then
an RMS norm without scale and the projection into the text width.

One deliberate difference from the official code: padding patches are masked out of
attention. The official encoder adds its boolean mask to the logits (+1 on valid pairs),
so padding patches leak into real tokens; HF transformers masks them, and so does this.
Without padding (an image that fills the budget) the two agree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gemma4.config import VisionConfig
from gemma4.layers import rms_norm, rope
from gemma4.params import ParamSpec

ROPE_BASE = 100.0
POOL = 3


def param_specs(v: VisionConfig) -> dict:
  """The official `vision_encoder` tree: block params stacked over layers (nn.scan)."""
  d, n, f, L = v.d_model, v.num_heads, v.ffw_hidden, v.num_layers
  h = d // n
  p = v.patch_size ** 2 * 3

  def lin(shape, fan_axes):
    out = {'w': ParamSpec((L,) + shape, 'normal', tuple(a + 1 for a in fan_axes))}
    if v.use_clipped_linears:
      for k in ('clip_input_min', 'clip_input_max', 'clip_output_min', 'clip_output_max'):
        out[k] = ParamSpec((L,), 'clip_' + k.split('_')[-1])
    return out

  def norm(dim):
    return {'scale': ParamSpec((L, dim), 'ones')}

  block = {
      'pre_attention_norm': norm(d), 'post_attention_norm': norm(d),
      'pre_ffw_norm': norm(d), 'post_ffw_norm': norm(d),
      'attn': {'q_einsum': lin((n, d, h), (1,)), 'kv_einsum': lin((2, n, d, h), (2,)),
               'attn_vec_einsum': lin((n, h, d), (0, 1)),
               'query_norm': norm(h), 'key_norm': norm(h)},
      'mlp': {'gating_einsum': lin((2, f, d), (2,)), 'linear': lin((f, d), (0,))},
  }
  tree = {'entry': {'input_projection': {'w': ParamSpec((p, d), 'normal', (0,))},
                    'pos_emb': ParamSpec((v.pos_emb_shape_yx[0], 2, d), 'embed')},
          'transformer': {'stacked_layers': {'block': block}}}
  if v.standardize_embeddings:
    tree['standardize'] = {'bias': ParamSpec((d,), 'zeros'), 'scale': ParamSpec((d,), 'ones')}
  return tree


def projection_spec(v: VisionConfig, text_width: int) -> dict:
  """`embedder/mm_input_projection`: encoder width -> text width."""
  return {'w': ParamSpec((v.d_model, text_width), 'normal', (0,))}


def _rope_2d(x, positions):
  """The first 2 * (H // 4) channels rotate with the column, the rest with the row."""
  per = 2 * (x.shape[-1] // 4)
  return jnp.concatenate([rope(x[..., :per], positions[..., 0], ROPE_BASE),
                          rope(x[..., per:], positions[..., 1], ROPE_BASE)], axis=-1)


def _linear(p, eqn, x):
  if 'clip_input_min' in p:  # E2B/E4B: learned clip bounds around each projection
    x = jnp.clip(x, p['clip_input_min'], p['clip_input_max'])
    return jnp.clip(jnp.einsum(eqn, x, p['w']), p['clip_output_min'], p['clip_output_max'])
  return jnp.einsum(eqn, x, p['w'])


QUERY_CHUNK = 1024  # queries per attention step: bounds the logits to chunk x L per head


def _attend(q, k, v, valid, chunk: int = QUERY_CHUNK):
  """Bidirectional attention among valid patches, unscaled (QK norm instead):
  [B, L, N, H] each, valid [B, L] -> [B, L, N, H]. Queries go `chunk` at a time, so a
  budget of 1120 (10080 patches) holds 12 x 1024 x 10080 logits, not 12 x 10080 x 10080
  (4.9 GB); each row's sums are the same either way."""
  def rows(qc):
    logits = jnp.einsum('BTNH,BSNH->BNTS', qc, k)
    logits = jnp.where(valid[:, None, None, :], logits, -1e30)
    return jnp.einsum('BNTS,BSNH->BTNH', jax.nn.softmax(logits, axis=-1), v)
  b, length, n, h = q.shape
  if length <= chunk:
    return rows(q)
  pad = -length % chunk
  qc = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0)))
  qc = qc.reshape(b, -1, chunk, n, h).transpose(1, 0, 2, 3, 4)
  out = jax.lax.map(rows, qc)  # [C, B, chunk, N, H]
  return out.transpose(1, 0, 2, 3, 4).reshape(b, -1, n, h)[:, :length]


def _block(x, p, positions, valid):
  h = rms_norm(x, p['pre_attention_norm']['scale'])
  a = p['attn']
  q = _linear(a['q_einsum'], 'BLD,NDH->BLNH', h)
  k, v = _linear(a['kv_einsum'], 'BLD,CNDH->CBLNH', h)
  q = _rope_2d(rms_norm(q, a['query_norm']['scale']), positions)
  k = _rope_2d(rms_norm(k, a['key_norm']['scale']), positions)
  v = rms_norm(v)
  out = _attend(q, k, v, valid)
  out = _linear(a['attn_vec_einsum'], 'BTNH,NHD->BTD', out)
  x = x + rms_norm(out, p['post_attention_norm']['scale'])
  h = rms_norm(x, p['pre_ffw_norm']['scale'])
  g = _linear(p['mlp']['gating_einsum'], 'BLD,CFD->BLCF', h)
  h = _linear(p['mlp']['linear'], 'BLF,FD->BLD',
              jax.nn.gelu(g[..., 0, :], approximate=True) * g[..., 1, :])
  return x + rms_norm(h, p['post_ffw_norm']['scale'])


def encode(params: dict, v: VisionConfig, patches: jax.Array, positions: jax.Array
           ) -> tuple[jax.Array, jax.Array]:
  """Encoder output before the projection: ([B, L // 9, d_model] float32, valid [B, L // 9]).

  L must be a multiple of 9 (the padded patch count of a budget). Soft tokens come in
  row-major order of the 3 x 3 cells; invalid slots follow the valid ones.
  """
  patches = patches.astype(jnp.float32)
  b, length, _ = patches.shape
  valid = jnp.any(positions != -1, axis=-1)  # [B, L]
  entry = params['entry']
  x = jnp.einsum('BLP,PD->BLD', 2.0 * (patches - 0.5), entry['input_projection']['w'])
  table = entry['pos_emb']
  px = jnp.clip(positions, 0, table.shape[0] - 1)
  pe = table[px[..., 0], 0] + table[px[..., 1], 1]
  x = x + jnp.where(valid[..., None], pe, 0.0).astype(x.dtype)
  blocks = params['transformer']['stacked_layers']['block']
  x, _ = jax.lax.scan(lambda x, p: (_block(x, p, positions, valid), None), x, blocks)

  out_len = length // POOL ** 2
  width = jnp.max(jnp.where(valid, positions[..., 0], -1), axis=-1, keepdims=True) + 1  # [B, 1]
  cell = positions // POOL
  index = jnp.where(valid, cell[..., 0] + (width // POOL) * cell[..., 1], -1)
  weights = jax.nn.one_hot(index, out_len, dtype=jnp.float32) / POOL ** 2  # [B, L, out]
  pooled = jnp.einsum('BLS,BLD->BSD', weights, x, precision=jax.lax.Precision.HIGHEST)
  pooled = pooled * jnp.sqrt(jnp.float32(x.shape[-1]))
  if 'standardize' in params:
    pooled = (pooled - params['standardize']['bias']) * params['standardize']['scale']
  return pooled, jnp.any(weights != 0, axis=1)


def project(pooled: jax.Array, w: jax.Array) -> jax.Array:
  """Soft tokens in the text width: RMS norm without scale, then mm_input_projection."""
  return jnp.einsum('...TM,MD->...TD', rms_norm(pooled.astype(jnp.float32)), w.astype(jnp.float32))
