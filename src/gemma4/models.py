"""Models: a preset config with a parameter dtype, and the bridge from the official library.

`Gemma4_E2B()` and friends mirror `gm.nn.Gemma4_E2B()`; `from_reference` converts an
official model (or its TransformerConfig) into the equivalent gemma4 model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import config as _config
from gemma4 import params as _params
from gemma4.config import TransformerConfig
from gemma4.kv_cache import KVCache, init_cache
from gemma4.transformer import forward


@dataclasses.dataclass(frozen=True)
class Model:
  """A decoder config plus the dtype its parameters are kept in.

  text_only: as in the official library, True (the default) leaves the vision and
    audio encoders out of the model; their configs stay in `config`. With False the
    parameter tree also holds `vision_encoder` and `embedder/mm_input_projection`, and
    for E2B/E4B `audio_encoder` and `embedder/audio_input_projection` (float32, as the
    official library keeps them).
  """

  config: TransformerConfig
  dtype: Any = jnp.bfloat16
  text_only: bool = True
  name: str = 'custom'

  def __post_init__(self):
    if not isinstance(self.config, TransformerConfig):
      raise TypeError(f'config must be a gemma4 TransformerConfig, got {type(self.config).__name__}')
    _float_dtype(self.dtype, 'dtype')

  @property
  def has_vision(self) -> bool:
    return not self.text_only and self.config.vision is not None

  @property
  def has_audio(self) -> bool:
    return not self.text_only and self.config.audio is not None

  def param_specs(self) -> dict:
    specs = _params.param_specs(self.config)
    if self.has_vision:
      from gemma4 import vision
      specs['vision_encoder'] = vision.param_specs(self.config.vision)
      specs['embedder']['mm_input_projection'] = vision.projection_spec(
          self.config.vision, self.config.embed_dim)
    if self.has_audio:
      from gemma4 import conformer
      specs['audio_encoder'] = conformer.param_specs(self.config.audio)
      specs['embedder']['audio_input_projection'] = conformer.projection_spec(
          self.config.audio, self.config.embed_dim)
    return specs

  def eval_shape(self) -> dict:
    """The parameter tree as ShapeDtypeStructs, allocating nothing."""
    return _params.shape_tree(self.config, self.dtype, self.param_specs())

  def init(self, seed: int = 0) -> dict:
    """Random parameters (see `gemma4.params.init_params`), in `self.dtype`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
      raise ValueError(f'seed must be an int >= 0, got {seed!r}')
    return _params.init_params(self.config, int(seed), self.dtype, specs=self.param_specs())

  def check_params(self, params) -> dict:
    """The bare parameter tree, after checking every name, shape and float dtype."""
    _params.check_params(self.config, params, specs=self.param_specs())
    return _params.unwrap(params)

  def init_cache(self, batch_size: int, length: int, dtype=None) -> KVCache:
    return init_cache(self.config, batch_size, length,
                      self.dtype if dtype is None else _float_dtype(dtype, 'dtype'))

  def apply(self, params, tokens, **kwargs):
    """Jitted `gemma4.transformer.forward` with this model's config -> (logits, cache).

    Checks first what `forward` (a pure function, traced) cannot: the parameter tree,
    and tokens [B, T] of an integer dtype with ids in the vocabulary (negative soft-token
    slot ids too when `embeds` are given).
    """
    params = self.check_params(params)
    if tokens is not None:
      _check_tokens(tokens, self.config.vocab_size, kwargs.get('embeds') is not None)
    return _forward_jit(params, self.config, tokens, **kwargs)


def _float_dtype(dtype, name: str):
  try:
    d = jnp.dtype(dtype)
  except TypeError as e:
    raise TypeError(f'{name} {dtype!r} is not a dtype (expected a float dtype such as '
                    'jnp.bfloat16 or jnp.float32)') from e
  if not jnp.issubdtype(d, jnp.floating):
    raise ValueError(f'{name} {dtype!r} is not a float dtype (expected e.g. jnp.bfloat16 or '
                     'jnp.float32)')
  return dtype


def _check_tokens(tokens, vocab_size: int, slots_ok: bool) -> None:
  """tokens: [B, T] integer ids in [0, vocab_size) (or negative slot ids with embeds)."""
  if not hasattr(tokens, 'dtype'):
    tokens = np.asarray(tokens)
  shape, dtype = np.shape(tokens), tokens.dtype
  if len(shape) != 2:
    raise ValueError(f'tokens must be [batch, length], got shape {tuple(shape)} (add a batch '
                     'axis: tokens[None])')
  if not jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(f'tokens must hold integer ids, got dtype {jnp.dtype(dtype).name}')
  if 0 in shape:
    raise ValueError(f'tokens is empty: shape {tuple(shape)}')
  if isinstance(tokens, jax.core.Tracer):  # under a caller's jit: no values to check
    return
  ids = np.asarray(tokens)
  low, high = int(ids.min()), int(ids.max())
  if high >= vocab_size or (low < 0 and not slots_ok):
    raise ValueError(f'tokens must be ids in [0, {vocab_size}), got ids from {low} to {high}'
                     + ('' if slots_ok else ' (negative soft-token slots need embeds=)'))


_forward_jit = jax.jit(forward, static_argnums=1, static_argnames='last_only')


def _preset(key: str, official_name: str):
  def make(*, dtype=jnp.bfloat16, text_only: bool = True) -> Model:
    return Model(_config.PRESETS[key], dtype=dtype, text_only=text_only, name=key)
  make.__name__ = make.__qualname__ = official_name
  make.__doc__ = f'The {key} preset (official `gm.nn.{official_name}()`).'
  return make


Gemma4_E2B = _preset('gemma4_e2b', 'Gemma4_E2B')
Gemma4_E4B = _preset('gemma4_e4b', 'Gemma4_E4B')
Gemma4_26B_A4B = _preset('gemma4_26b_a4b', 'Gemma4_26B_A4B')
Gemma4_31B = _preset('gemma4_31b', 'Gemma4_31B')
Gemma3_270M = _preset('gemma3_270m', 'Gemma3_270M')
Gemma3_1B = _preset('gemma3_1b', 'Gemma3_1B')
Gemma3_4B = _preset('gemma3_4b', 'Gemma3_4B')
Gemma3_12B = _preset('gemma3_12b', 'Gemma3_12B')
Gemma3_27B = _preset('gemma3_27b', 'Gemma3_27B')


def get_model(name: str, **kwargs) -> Model:
  """The preset model called `name` ('gemma4_e2b', 'E2B', '26b-a4b', ...)."""
  key = _config.get_preset_key(name)
  return Model(_config.PRESETS[key], name=key, **kwargs)


def tiny_config(preset: str) -> TransformerConfig:
  """A few-layer config with every feature of `preset`, for tests and the demo.

  Width 64, 4 query heads of 16 (32 on global layers), window 8, the real vocabulary;
  layers L L G L L G so that KV sharing (last 3 layers) has a source of each kind.
  """
  base = _config.get_preset(preset)
  kinds = (_config.LOCAL, _config.LOCAL, _config.GLOBAL) * 2
  tiny = dict(embed_dim=64, hidden_dim=128, num_heads=4, head_dim=16, global_head_dim=32,
              sliding_window=8, layer_types=kinds)
  if base.per_layer_input_dim:
    tiny.update(per_layer_input_dim=16, num_kv_shared_layers=3,
                kv_shared_hidden_dim=256 if base.kv_shared_hidden_dim else None)
  if base.num_global_kv_heads:
    tiny.update(num_global_kv_heads=1)
  if base.is_moe:
    tiny.update(hidden_dim=48, num_experts=4, expert_dim=24, top_k_experts=2)
  tiny['num_kv_heads'] = min(base.num_kv_heads, 2)
  return dataclasses.replace(base, **tiny)


TINY_VISION = dict(d_model=64, num_layers=2, num_heads=4, ffw_hidden=96, pos_emb_shape_yx=(256, 2))
TINY_AUDIO = dict(num_layers=2, model_dims=64, lm_model_dims=48, atten_num_heads=4)


def tiny(preset: str, dtype=jnp.float32, text_only: bool = True) -> Model:
  """The tiny model derived from `preset` (see `tiny_config`). With text_only=False it
  carries a tiny vision encoder of the preset's variant (2 layers of width 64) and, for
  E2B/E4B, a tiny audio encoder (2 conformer layers of width 64, output width 48)."""
  cfg = tiny_config(preset)
  if not text_only and cfg.vision is not None:
    cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, **TINY_VISION))
  if not text_only and cfg.audio is not None:
    cfg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, **TINY_AUDIO))
  return Model(cfg, dtype=dtype, text_only=text_only, name='tiny_' + _config.get_preset_key(preset))


def _attn_kind(t) -> str:
  name = getattr(t, 'name', str(t))
  if name == 'GLOBAL':
    return _config.GLOBAL
  if name == 'LOCAL_SLIDING':
    return _config.LOCAL
  raise ValueError(f'unknown official attention type {t!r}')


def _vision(v) -> _config.VisionConfig | None:
  if v is None:
    return None
  out = v.output_length if isinstance(v.output_length, int) else max(v.output_length)
  return _config.VisionConfig(
      d_model=v.d_model, num_layers=v.num_layers, num_heads=v.num_heads,
      ffw_hidden=v.ffw_hidden, patch_size=v.patch_size, output_length=out,
      pos_emb_shape_yx=tuple(v.pos_emb_shape_yx), pooling_kernel_size=v.pooling_kernel_size,
      use_clipped_linears=v.use_clipped_linears,
      standardize_embeddings=v.standardize_embeddings)


def _audio(a) -> _config.AudioConfig | None:
  if a is None:
    return None
  return _config.AudioConfig(**{f.name: getattr(a, f.name)
                                for f in dataclasses.fields(_config.AudioConfig)})


def config_from_reference(c) -> TransformerConfig:
  """The gemma4 config equal to an official gemma4 `TransformerConfig`."""
  kinds = tuple(_attn_kind(t) for t in c.attention_types)
  sharing = c.kv_cache_sharing_config
  n_shared = 0
  if sharing is not None and sharing.frac_shared_layers > 0:
    if not (sharing.share_global and sharing.share_local):
      raise ValueError('only KV sharing of both local and global layers is supported')
    n_shared = _config.kv_shared_count(sharing.frac_shared_layers, len(kinds))
  if c.use_bidirectional_attention not in (None, 'vision'):
    raise ValueError(f'unsupported use_bidirectional_attention={c.use_bidirectional_attention!r}')
  cfg = TransformerConfig(
      vocab_size=c.num_embed, embed_dim=c.embed_dim,
      hidden_dim=c.moe_dense_hidden_dim if c.enable_moe else c.hidden_dim,
      num_heads=c.num_heads, head_dim=c.head_dim, num_kv_heads=c.num_kv_heads,
      layer_types=kinds, sliding_window=c.sliding_window_size,
      num_global_kv_heads=c.num_global_kv_heads, global_head_dim=c.global_key_size,
      k_eq_v_global=c.k_eq_v_global,
      local_rope_base=c.local_base_frequency, global_rope_base=c.global_base_frequency,
      local_rope_proportion=c.local_rope_proportion if c.local_rope_proportion is not None else 1.0,
      global_rope_proportion=c.global_rope_proportion if c.global_rope_proportion is not None else 1.0,
      local_rope_scale=c.local_scale_factor, global_rope_scale=c.global_scale_factor,
      final_logit_softcap=c.final_logit_softcap, attn_logits_softcap=c.attn_logits_soft_cap,
      use_post_attn_norm=c.use_post_attn_norm, use_post_ffw_norm=c.use_post_ffw_norm,
      qk_norm_with_scale=c.qk_norm_with_scale, per_layer_input_dim=c.per_layer_input_dim,
      num_kv_shared_layers=n_shared, kv_shared_hidden_dim=c.override_kv_shared_ffw_hidden,
      num_experts=c.num_experts if c.enable_moe else 0,
      expert_dim=c.expert_dim if c.enable_moe else 0,
      top_k_experts=c.top_k_experts if c.enable_moe else 0,
      bidirectional_vision=c.use_bidirectional_attention == 'vision',
      vision=_vision(c.vision_encoder), audio=_audio(c.audio_encoder))
  if n_shared:  # the official code reads fixed layers; check they are ours
    first = len(kinds) - n_shared
    for i in range(first, len(kinds)):
      official = first - 1 if kinds[i] == _config.GLOBAL else first - 2
      if cfg.kv_source[i] != official:
        raise ValueError(
            f'KV-shared layer {i} reads layer {official} in the official code, which is not'
            f' the last unshared {kinds[i]} layer ({cfg.kv_source[i]})')
  return cfg


def from_reference(ref) -> Model:
  """The gemma4 model equal to an official `gm.nn.Gemma4_*` instance or its config.

  An official model built with `text_only=False` keeps its vision and audio encoders
  here too (a gemma4 model with text_only=False); one built text_only (the official
  default) drops them, and their settings are recovered from the preset of the same
  name where there is one, so that a later `text_only=False` model has them.
  """
  c = getattr(ref, 'config', ref)
  cfg = config_from_reference(c)
  name = type(ref).__name__.lower() if hasattr(ref, 'config') else 'custom'
  with_encoders = cfg.vision is not None or cfg.audio is not None
  text_only = bool(getattr(ref, 'text_only', not with_encoders)) or not with_encoders
  preset = _config.PRESETS.get(name)
  if preset is not None and not with_encoders:
    cfg = dataclasses.replace(cfg, vision=preset.vision, audio=preset.audio)
  dtype = getattr(ref, 'dtype', jnp.bfloat16)
  return Model(cfg, dtype=jnp.dtype(dtype), text_only=text_only, name=name)


__all__ = ['Model', 'Gemma4_E2B', 'Gemma4_E4B', 'Gemma4_26B_A4B', 'Gemma4_31B',
           'Gemma3_270M', 'Gemma3_1B', 'Gemma3_4B', 'Gemma3_12B', 'Gemma3_27B',
           'get_model', 'from_reference', 'config_from_reference', 'tiny', 'tiny_config']
