"""The Gemma 4 text decoder: forward(params, cfg, tokens, ...) -> (logits, cache).

Takes the official parameter tree unchanged. Knows nothing of pixels, audio or
sampling: encoders hand in ready embeddings and a vision mask.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gemma4 import compilation, quant
from gemma4.attention import Keys, attend_parts, make_mask, values_last, vision_blocks
from gemma4.config import LOCAL, TransformerConfig
from gemma4.kv_cache import KVCache, scatter, write_slots
from gemma4.layers import (gated_mlp, head_proj, heads_out, project, rms_norm, rope, rows_dot,
                           softcap)
from gemma4.moe import moe_mlp


def embed(params: dict, tokens: jax.Array) -> jax.Array:
  """Token embeddings scaled by sqrt(D). tokens: [B, T] -> [B, T, D]."""
  table = params['embedder']['input_embedding']
  if quant.is_quantized(table):  # float32 activations
    return quant.take(table, tokens) * jnp.sqrt(jnp.float32(table.shape[1]))
  return table[tokens] * jnp.sqrt(table.shape[1]).astype(table.dtype)


def per_layer_inputs(params: dict, x: jax.Array, tokens: jax.Array) -> jax.Array:
  """Per-layer embeddings (E2B/E4B): [B, T, D], [B, T] -> [B, T, L, P]."""
  p = params['embedder']
  table = p['per_layer_embeddings']  # [V, L, P]
  d, pdim = x.shape[-1], table.shape[-1]
  w = p['per_layer_model_projection']['w']
  if quant.is_quantized(w):
    proj = quant.dot(x, w) * jnp.float32(d ** -0.5)
  else:  # the official order: the weight scaled in its own dtype
    proj = jnp.einsum('BTD,DLP->BTLP', x, w * jnp.asarray(d ** -0.5, table.dtype))
  proj = rms_norm(proj, p['per_layer_projection_norm']['scale'])
  tokens = jnp.where((tokens >= 0) & (tokens < table.shape[0]), tokens, 0)
  if quant.is_quantized(table):
    y = quant.take(table, tokens) * jnp.sqrt(jnp.float32(pdim))
  else:
    y = table[tokens] * jnp.sqrt(pdim).astype(table.dtype)
  return (proj + y) * jax.lax.rsqrt(2.0).astype(x.dtype)


def _project_kv(p: dict, x: jax.Array, cfg: TransformerConfig, kind: str,
                positions: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Normed, rotated keys and normed values of x: [B, T, D] -> 2 x [B, T, K, H]."""
  if cfg.k_eq_v(kind):
    k = v = head_proj(x, p['k_einsum']['w'])
  else:
    w = p['kv_einsum']['w']  # [2, K, D, H]
    if quant.is_quantized(w):
      kv = quant.dot(x, w)  # [B, T, 2, K, H]
      k, v = kv[:, :, 0], kv[:, :, 1]
    else:
      kv = head_proj(x, w.reshape(2 * w.shape[1], *w.shape[2:]))  # [B, T, 2K, H]
      k, v = kv[:, :, :w.shape[1]], kv[:, :, w.shape[1]:]
  k = rms_norm(k, p[cfg.qk_norm_names[1]]['scale'] if cfg.qk_norm_with_scale else None,
               offset=cfg.norm_offset)
  if cfg.value_norm:
    v = rms_norm(v)
  base, proportion, scale = cfg.rope(kind)
  return rope(k, positions, base, proportion, scale), v


def _keys(ctx: dict, kind: str, new_kv: tuple, cached: tuple | None) -> tuple[Keys, ...]:
  """The keys a layer attends over (`attention.Keys` parts): its cache's (keys, values,
  slot positions) if any, then the new tokens' (keys, values)."""
  context = (Keys(new_kv[0], values_last(new_kv[1]), ctx['positions'], ctx['valid'],
                  ctx['blocks']),)
  if cached is not None:  # the cached tokens first, then this chunk
    ck, cv, cpos = cached
    # A linear (global) cache holds positions below the next one at their own slots.
    used = ctx['cache_next'] if kind != LOCAL else None
    context = (Keys(ck, cv, cpos, cpos >= 0, jnp.zeros_like(cpos), used),) + context
  return context


def _attention(p: dict, x: jax.Array, cfg: TransformerConfig, kind: str, ctx: dict,
               cached: tuple | None, shared: tuple | None) -> tuple[jax.Array, tuple | None]:
  """One attention layer. x: [B, T, D] -> [B, T, D].

  cached: (keys, values, slot positions) of this layer's cache, or None.
  shared: for a KV-shared layer, its source layer's new (keys, values) and cached
    (as above), else None.
  An unshared layer projects K/V for the new tokens and attends over its cache slots and
  them, as two parts of one softmax: the cache is read where it lies, neither joined
  with the new tokens nor written before the caller writes them (a slot a new token
  will take holds a position outside its window, or nothing); a global layer reads its
  cache only up to the next position. Returns the output and the new tokens' (keys,
  values) (None for a shared layer).
  """
  base, proportion, scale = cfg.rope(kind)
  q = head_proj(x, p['q_einsum']['w'])
  q = rms_norm(q, p[cfg.qk_norm_names[0]]['scale'] if cfg.qk_norm_with_scale else None,
               offset=cfg.norm_offset)
  q = rope(q, ctx['positions'], base, proportion, scale)
  if cfg.query_scale != 1.0:
    q = q * jnp.asarray(cfg.query_scale, q.dtype)
  new_kv = None
  if shared is not None:
    context = _keys(ctx, kind, *shared)
  else:
    new_kv = _project_kv(p, x, cfg, kind, ctx['positions'])
    context = _keys(ctx, kind, new_kv, cached)
  bidir = kind == LOCAL and cfg.bidirectional_vision

  def mask_of(k_pos, k_valid, k_block):
    return make_mask(ctx['positions'], k_pos, k_valid,
                     cfg.sliding_window if kind == LOCAL else None,
                     ctx['blocks'] if bidir else None, k_block if bidir else None)

  out = attend_parts(q, context, mask_of, cfg.attn_logits_softcap)
  return heads_out(out, p['attn_vec_einsum']['w']), new_kv


def _ffw(p: dict, x: jax.Array, cfg: TransformerConfig) -> jax.Array:
  """The feed-forward part of a block, norms included. x: residual [B, T, D]."""
  def post(name, y):
    return rms_norm(y, p[name]['scale'], offset=cfg.norm_offset) if cfg.use_post_ffw_norm else y
  h = rms_norm(x, p['pre_ffw_norm']['scale'], offset=cfg.norm_offset)
  if not cfg.is_moe:
    return post('post_ffw_norm', gated_mlp(h, p['mlp']['gating_einsum'], p['mlp']['linear']))
  dense = gated_mlp(rms_norm(x, p['pre_ffw2_norm']['scale']),
                    p['mlp2']['gating_einsum'], p['mlp2']['linear'])
  experts = moe_mlp(p['mlp'], h, x, cfg.top_k_experts)
  return post('post_ffw_norm', post('post_ffw2_norm', dense) + post('post_ffw1_norm', experts))


# One program per distinct layer (its kind, whether it shares keys or has a cache, its
# weights' shapes): the decoder's layers are traced and lowered once per kind, not once
# each, and XLA inlines the calls, so the compiled program is that of the unrolled
# stack. (On the 270M, tracing and lowering a stream's programs took 1.66 s per
# process with the layers unrolled, 0.67 s in blocks: bench/compile_cache.txt.)
@compilation.part(static_argnames=('cfg', 'kind'))
def _block(p: dict, x: jax.Array, cfg: TransformerConfig, kind: str, ctx: dict,
           cached: tuple | None, shared: tuple | None, ple: jax.Array | None
           ) -> tuple[jax.Array, tuple | None]:
  """One decoder layer. x: residual [B, T, D]; cached, shared: as `_attention` takes
  them; ple: this layer's per-layer input [B, T, P] or None. Returns the residual after
  it and its new (keys, values), as `_attention` gives them. (Only new arrays come
  out: a program of its own that returned the cache it was given would copy it,
  tests/test_decode.py::test_a_program_returning_an_input_gives_a_new_buffer.)"""
  h = rms_norm(x, p['pre_attention_norm']['scale'], offset=cfg.norm_offset)
  a, kv_new = _attention(p['attn'], h, cfg, kind, ctx, cached, shared)
  if cfg.use_post_attn_norm:
    a = rms_norm(a, p['post_attention_norm']['scale'], offset=cfg.norm_offset)
  x = x + a
  x = x + _ffw(p, x, cfg)
  if ple is not None:
    g = project(x, p['per_layer_input_gate']['w'], 'BTD,DP->BTP')
    g = jax.nn.gelu(g, approximate=True) * ple
    g = project(g, p['per_layer_projection']['w'], 'BTP,PD->BTD')
    x = x + rms_norm(g, p['post_per_layer_input_norm']['scale'])
  if cfg.skip_scale:
    x = x * p['skip_scale'].astype(x.dtype)
  return x, kv_new


def forward(params: dict, cfg: TransformerConfig, tokens: jax.Array | None, *,
            embeds: jax.Array | None = None, valid: jax.Array | None = None,
            positions: jax.Array | None = None, vision_mask: jax.Array | None = None,
            cache: KVCache | None = None, last_only: bool = False,
            donate_cache: bool = False) -> tuple[jax.Array, KVCache | None]:
  """Runs the decoder over a chunk of tokens.

  tokens: [B, T] int ids (needed for per-layer embeddings; optional otherwise).
  embeds: [B, T, D] ready input embeddings (soft tokens merged), instead of looking up
    tokens; already scaled as `embed` scales.
  valid: [B, T] bool, False for padding. Default: tokens != 0, as the official library
    treats id 0 as padding; all True without tokens.
  positions: [B, T] int. Default: each row's valid tokens numbered on from the cache's
    next position (0 without a cache); padding repeats its neighbour's position.
  vision_mask: [B, T] bool, the image soft tokens; one contiguous run (one image) sees
    itself bidirectionally on local layers where the config says so.
  cache: a KVCache to attend over and append to, or None.
  last_only: return the logits of each row's last valid token only.
  donate_cache: called outside jit, the cache's buffers are updated in place (the
    cache passed in is then used up); inside jit, the caller's program decides.
  Returns logits [B, T, V] (or [B, V]), float32, and the updated cache (None without).

  `layers`, then `conclude`. Inside jit they are part of the caller's program. Outside
  jit, a model with `split_layers` runs as `layers` describes, then one program that
  concludes; any other as one program.
  """
  donate = donate_cache and cache is not None
  if not split_layers(cfg):
    whole = _whole_donated if donate else _whole
    return whole(params, cfg, tokens, embeds, valid, positions, vision_mask, cache, last_only)
  x, ctx, written = layers(params, cfg, tokens, embeds=embeds, valid=valid,
                           positions=positions, vision_mask=vision_mask, cache=cache)
  end = _conclude_donated if donate else _conclude
  return end(output_params(params), cfg, x, ctx, cache, written, last_only)


def _forward(params, cfg, tokens, embeds, valid, positions, vision_mask, cache, last_only):
  x, ctx, written = layers(params, cfg, tokens, embeds=embeds, valid=valid,
                           positions=positions, vision_mask=vision_mask, cache=cache)
  return conclude(params, cfg, x, ctx, cache, written, last_only)


_whole = compilation.part(_forward, static_argnames=('cfg', 'last_only'))
_whole_donated = compilation.part(_forward, static_argnames=('cfg', 'last_only'),
                                  donate_argnames='cache')

# Outside jit, a model splits its layers into programs of their own when it has at least
# this many layers per distinct layer program. XLA CPU compiles an unrolled stack at a
# cost per layer and each program of its own at a fixed cost more (jax 0.10.2), so
# splitting pays for deep models: first sample() call, split against one program
# (bench/split_layers.txt): E2B-shaped (10 layers, 2 distinct) 7.19 against 7.74 s,
# full E2B (35 layers, 4) 18.0 against 21.0 s, a tiny test model (6 layers, 4) 5.90
# against 4.88 s.
SPLIT_LAYERS_PER_PROGRAM = 4


def split_layers(cfg: TransformerConfig) -> bool:
  """Whether `forward` and `layers`, called outside jit, run one program per distinct
  layer (its kind, and whether it shares another's keys) rather than one for the stack."""
  distinct = {(kind, src != i) for i, (kind, src) in enumerate(zip(cfg.layer_types, cfg.kv_source))}
  return cfg.num_layers >= SPLIT_LAYERS_PER_PROGRAM * len(distinct)


def layers(params: dict, cfg: TransformerConfig, tokens: jax.Array | None, *,
           embeds: jax.Array | None = None, valid: jax.Array | None = None,
           positions: jax.Array | None = None, vision_mask: jax.Array | None = None,
           cache: KVCache | None = None) -> tuple[jax.Array, dict, dict]:
  """The decoder's layers over a chunk of tokens (arguments as for `forward`): the last
  layer's output [B, T, D], the context the layers read (positions, validity) and each
  unshared layer's new (keys, values) by layer index, which `conclude` takes.

  Two kinds of program make it: the inputs (`_inputs`) and one per distinct layer
  (`_block`). Inside a jitted caller (the decode loop) XLA inlines them into the
  caller's program. Called outside jit (a prefill) each runs as a program of its own,
  so that XLA compiles each distinct layer once rather than the unrolled stack; worth
  it where `split_layers` says so.
  """
  if embeds is None and tokens is None:
    raise ValueError('forward needs tokens or embeds')
  if cfg.per_layer_input_dim and tokens is None:
    raise ValueError('models with per-layer embeddings need tokens alongside embeds')
  x, ctx, ple = _inputs(params['embedder'], cfg, tokens, embeds, valid, positions, vision_mask,
                        cache)
  kv = {}  # each unshared layer's new (keys, values)
  def cached(i):
    return None if cache is None else (cache.k[i], cache.v[i], cache.pos[cfg.layer_types[i]])
  for i, kind in enumerate(cfg.layer_types):
    src = cfg.kv_source[i]
    x, kv[i] = _block(params[f'layer_{i}'], x, cfg, kind, ctx,
                      cached(i) if src == i else None,
                      (kv[src], cached(src)) if src != i else None,
                      None if ple is None else ple[i])
  written = {} if cache is None else {i: kv[i] for i in kv if kv[i] is not None}
  return x, ctx, written


def output_params(params: dict) -> dict:
  """The part of the parameters `conclude` reads (the final norm, the tied embedding)."""
  return {'final_norm': params['final_norm'],
          'embedder': {'input_embedding': params['embedder']['input_embedding']}}


@compilation.part(static_argnames=('cfg',))
def _inputs(embedder: dict, cfg: TransformerConfig, tokens, embeds, valid, positions,
            vision_mask, cache) -> tuple[jax.Array, dict, tuple | None]:
  """The residual stream's start [B, T, D], the context every layer reads (positions,
  validity, vision blocks, the cache's next position) and each layer's per-layer input
  [B, T, P] (a tuple, or None), as `forward` describes its arguments."""
  if embeds is None:
    embeds = embed({'embedder': embedder}, tokens)
  b, t, _ = embeds.shape
  if valid is None:
    valid = tokens != 0 if tokens is not None else jnp.ones((b, t), bool)
  start = cache.next_pos[:, None] if cache is not None else 0
  if positions is None:
    count = jnp.cumsum(valid, axis=-1)
    positions = start + count - (count >= 1)
  blocks = vision_blocks(vision_mask) if vision_mask is not None else jnp.zeros((b, t), jnp.int32)
  ctx = {'positions': positions.astype(jnp.int32), 'valid': valid, 'blocks': blocks}
  if cache is not None:  # every row's cached positions lie below this
    ctx['cache_next'] = jnp.max(cache.next_pos)
  ple = None
  if cfg.per_layer_input_dim:
    ple = per_layer_inputs({'embedder': embedder}, embeds, tokens)
    ple = tuple(ple[:, :, i] for i in range(cfg.num_layers))
  return embeds, ctx, ple


def conclude(params: dict, cfg: TransformerConfig, x: jax.Array, ctx: dict,
             cache: KVCache | None, written: dict, last_only: bool = False
             ) -> tuple[jax.Array, KVCache | None]:
  """After `layers`: the new tokens' keys and values into the cache, and the logits of
  the last layer's output x [B, T, D], as `forward` returns them. params: at least
  `output_params`."""
  valid = ctx['valid']
  b = x.shape[0]
  new_cache = None
  if cache is not None:
    # The new tokens go in once every layer has read the cache, and what is written
    # depends on the last layer's output: XLA then updates each buffer in place
    # (tests/test_decode.py counts the copies). Where the write did not depend on the
    # reads, XLA could not order them and copied every cache buffer twice per step; an
    # optimization_barrier did not order them either (jax 0.10.2). A row whose output
    # is already NaN writes NaN keys and values.
    broken = jnp.isnan(jnp.sum(x[:, :, 0], axis=1))[:, None, None, None]  # [B, 1, 1, 1]
    # per layer kind: the cache slot of each new token [B, T]
    write_idx = {kind: write_slots(ctx['positions'], valid, buf.shape[1], ring=kind == LOCAL)
                 for kind, buf in cache.pos.items()}
    new_pos = {kind: scatter(buf, write_idx[kind], ctx['positions'])
               for kind, buf in cache.pos.items()}
    new_k, new_v = list(cache.k), list(cache.v)
    for i, (k, v) in written.items():
      idx = write_idx[cfg.layer_types[i]]
      k, v = (jnp.where(broken, jnp.nan, a) for a in (k, v))
      new_k[i] = scatter(new_k[i], idx, k)  # [batch, slots, kv_heads, key_size]
      new_v[i] = scatter(new_v[i], idx, v, slots_last=True)  # [batch, kv_heads, key_size, slots]
    next_pos = jnp.maximum(cache.next_pos, jnp.max(jnp.where(valid, ctx['positions'] + 1, 0), -1))
    new_cache = KVCache(tuple(new_k), tuple(new_v), new_pos, next_pos)

  x = rms_norm(x, params['final_norm']['scale'], offset=cfg.norm_offset)
  if last_only:
    last = jnp.maximum(jnp.sum(valid, axis=-1) - 1, 0)
    x = x[jnp.arange(b), last][:, None]
  logits = rows_dot(params['embedder']['input_embedding'], x,
                    preferred_element_type=jnp.float32)  # [B, T, V]
  logits = softcap(logits, cfg.final_logit_softcap)
  if last_only:
    logits = logits[:, 0]
  return logits, new_cache


_conclude_donated = compilation.part(conclude, static_argnames=('cfg', 'last_only'),
                                     donate_argnames='cache')
_conclude = compilation.part(conclude, static_argnames=('cfg', 'last_only'))
