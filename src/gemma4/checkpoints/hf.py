"""HF checkpoints (the layout of the published google/gemma-4-* repositories).

A directory with config.json, safetensors weights (one file, or shards listed in
model.safetensors.index.json) and tokenizer.model beside them. config.json gives the
model (each field read with its type checked); `keymap.text_pieces` is the explicit key
map from transformers' names to the official tree, with the shape each tensor must have;
the weights are read by `gemma4.checkpoints.safetensors`.
"""

from __future__ import annotations

import json
import os
import sys

import ml_dtypes
import numpy as np

from gemma4.checkpoints import keymap, plan
from gemma4.checkpoints.safetensors import SafetensorsFiles, weight_files
from gemma4.checkpoints.sentencepiece import sentencepiece_from_tokenizer_json
from gemma4.config import GLOBAL, LOCAL, AudioConfig, TransformerConfig, VisionConfig
from gemma4.tokenizer import Gemma3Tokenizer, Gemma4Tokenizer

# --- config --------------------------------------------------------------------------

def read_config(path: str) -> dict:
  file = os.path.join(path, 'config.json')
  if not os.path.isfile(file):
    raise FileNotFoundError(f'{path!r} has no config.json (expected a HF checkpoint directory)')
  try:
    with open(file) as f:
      raw = json.load(f)
  except OSError as e:
    raise OSError(f'cannot read {file!r}: {e.strerror}') from e
  except ValueError as e:
    raise plan.CheckpointError(f'{file!r} is not readable JSON: {e}') from e
  if not isinstance(raw, dict):
    raise plan.CheckpointError(f'{file!r} holds a JSON {type(raw).__name__}, expected an '
                               'object of config fields')
  return raw



class _Fields:
  """Typed reads of one section of a config.json: a missing or mistyped field raises a
  CheckpointError naming the file and the field ('text_config.hidden_size')."""

  def __init__(self, d, file: str, section: str = ''):
    self.file, self.section = file, section
    if not isinstance(d, dict):
      raise plan.CheckpointError(f'{file!r}: field {section} is {d!r} ({type(d).__name__}), '
                                 'expected a JSON object')
    self.d = d

  def error(self, key: str, what: str) -> plan.CheckpointError:
    name = f'{self.section}.{key}' if self.section else key
    return plan.CheckpointError(f'{self.file!r}: field {name} {what}')

  def get(self, key: str, default=None):
    return self.d.get(key, default)

  def _read(self, key, default, null, ok, expected):
    value = self.d.get(key, plan.MISSING)
    if value is plan.MISSING:
      if default is plan.MISSING:
        raise self.error(key, f'is missing (a required field: {expected})')
      return plan.MISSING, default
    if value is None and null:
      return plan.MISSING, None
    if not ok(value):
      raise self.error(key, f'is {value!r} ({type(value).__name__}), expected {expected}')
    return value, None

  def integer(self, key: str, default=plan.MISSING, *, null: bool = False, lo: int = 0):
    """An integer >= lo (a float of integral value passes); null: None reads as None."""
    expected = f'an integer >= {lo}'
    value, other = self._read(key, default, null, lambda v: plan.is_integer(v) and v >= lo, expected)
    return other if value is plan.MISSING else int(value)

  def number(self, key: str, default=plan.MISSING, *, null: bool = False):
    value, other = self._read(key, default, null, plan.is_number, 'a number')
    return other if value is plan.MISSING else float(value)

  def flag(self, key: str, default=False):
    """true/false (or 0/1); null reads as false."""
    value, other = self._read(key, default, True,
                              lambda v: isinstance(v, bool) or plan.is_integer(v), 'true or false')
    return bool(other) if value is plan.MISSING else bool(value)

  def sub(self, key: str) -> '_Fields':
    """The nested object `key` (empty when absent or null)."""
    value = self.d.get(key)
    name = f'{self.section}.{key}' if self.section else key
    return _Fields({} if value is None else value, self.file, name)


_MODEL_TYPES = 'expected gemma4, gemma4_text, gemma3 or gemma3_text'


def text_config(raw: dict, file: str = 'config.json') -> tuple[dict, str]:
  """The text model's config and its family ('gemma3' or 'gemma4')."""
  if not isinstance(raw, dict):
    raise plan.CheckpointError(f'{file!r} holds a JSON {type(raw).__name__}, expected an '
                               'object of config fields')
  if 'model_type' not in raw:
    raise plan.CheckpointError(f'{file!r}: field model_type is missing ({_MODEL_TYPES})')
  kind = raw['model_type']
  if kind in ('gemma4', 'gemma3'):
    return _Fields(raw, file).sub('text_config').d, kind
  if kind in ('gemma4_text', 'gemma3_text'):
    return raw, kind[:6]
  raise plan.CheckpointError(f'{file!r}: config.json model_type {kind!r} is not a Gemma 3 or '
                             f'Gemma 4 model ({_MODEL_TYPES})')


def _layer_kinds(c: _Fields, n: int, pattern_default: int = 6) -> tuple[str, ...]:
  types = c.get('layer_types')
  if types is None:
    step = c.integer('sliding_window_pattern', pattern_default, lo=1)
    types = ['sliding_attention' if (i + 1) % step else 'full_attention' for i in range(n)]
  if not isinstance(types, list):
    raise c.error('layer_types', f'is {types!r} ({type(types).__name__}), expected a list')
  kinds = {'sliding_attention': LOCAL, 'full_attention': GLOBAL}
  bad = sorted({repr(t) for t in types if not isinstance(t, str) or t not in kinds})
  if bad:
    raise c.error('layer_types', f'has unknown layer types {", ".join(bad)} (expected '
                  'sliding_attention or full_attention)')
  if len(types) != n:
    raise c.error('layer_types', f'has {len(types)} entries but num_hidden_layers is {n}')
  return tuple(kinds[t] for t in types)


def _rope(c: _Fields, kind: str) -> _Fields:
  return c.sub('rope_parameters').sub('full_attention' if kind == GLOBAL else 'sliding_attention')


def config_from_hf(raw: dict, file: str = 'config.json') -> TransformerConfig:
  """The gemma4 TransformerConfig of a HF config.json (Gemma 4 or Gemma 3 text).

  file: the config's path, for errors: a missing or mistyped field raises a
  CheckpointError naming it."""
  d, family = text_config(raw, file)
  c = _Fields(d, file, 'text_config' if d is not raw else '')
  n = c.integer('num_hidden_layers', lo=1)
  kinds = _layer_kinds(c, n)
  heads, head_dim = c.integer('num_attention_heads', lo=1), c.integer('head_dim', 256, lo=1)
  common = dict(vocab_size=c.integer('vocab_size', 262144, lo=1),
                embed_dim=c.integer('hidden_size', lo=1), num_heads=heads,
                num_kv_heads=c.integer('num_key_value_heads', lo=1), head_dim=head_dim,
                layer_types=kinds, sliding_window=c.integer('sliding_window', lo=1),
                final_logit_softcap=c.number('final_logit_softcapping', None, null=True))
  if family == 'gemma3':
    glob, loc = _rope(c, GLOBAL), _rope(c, LOCAL)
    scaling = c.sub('rope_scaling') if c.get('rope_scaling') else glob
    factor = scaling.number('factor', 1.0) if scaling.get('rope_type') == 'linear' else 1.0
    return TransformerConfig(
        family='gemma3', hidden_dim=c.integer('intermediate_size', lo=1), global_head_dim=None,
        local_rope_base=loc.number('rope_theta', c.number('rope_local_base_freq', 10_000)),
        global_rope_base=glob.number('rope_theta', c.number('rope_theta', 1_000_000)),
        global_rope_proportion=1.0, global_rope_scale=factor,
        query_scale=c.number('query_pre_attn_scalar', head_dim) ** -0.5,
        attn_logits_softcap=c.number('attn_logit_softcapping', None, null=True), **common)
  per_layer_section = c.sub('per_layer_config')
  per_layer = {}
  for k in per_layer_section.d:
    if not (isinstance(k, str) and k.strip().isdigit()):
      raise c.error('per_layer_config', f'has key {k!r}, expected layer numbers')
    per_layer[int(k)] = per_layer_section.sub(k)
  global_over = next((per_layer[i] for i, k in enumerate(kinds) if k == GLOBAL and i in per_layer),
                     _Fields({}, file, 'per_layer_config'))
  global_head_dim = c.integer('global_head_dim', global_over.integer('head_dim', None, null=True),
                              null=True)
  global_kv = c.integer('num_global_key_value_heads',
                        global_over.integer('num_key_value_heads', None, null=True), null=True)
  k_eq_v = c.flag('attention_k_eq_v', False)
  if not k_eq_v:
    global_kv = None  # transformers applies the global kv-head count only with K = V
  glob, loc = _rope(c, GLOBAL), _rope(c, LOCAL)
  moe = c.flag('enable_moe_block', False)
  ffw = c.integer('intermediate_size', lo=1)
  n_shared = c.integer('num_kv_shared_layers', 0, null=True) or 0
  return TransformerConfig(
      hidden_dim=ffw, global_head_dim=global_head_dim or None,
      num_global_kv_heads=global_kv or None, k_eq_v_global=k_eq_v,
      local_rope_base=loc.number('rope_theta', 10_000),
      global_rope_base=glob.number('rope_theta', 1_000_000),
      local_rope_proportion=loc.number('partial_rotary_factor', 1.0),
      global_rope_proportion=glob.number('partial_rotary_factor', 1.0),
      per_layer_input_dim=c.integer('hidden_size_per_layer_input', 0, null=True) or 0,
      num_kv_shared_layers=n_shared,
      kv_shared_hidden_dim=2 * ffw if c.flag('use_double_wide_mlp') and n_shared else None,
      num_experts=c.integer('num_experts', lo=1) if moe else 0,
      expert_dim=(c.integer('moe_intermediate_size', None, null=True)
                  or c.integer('expert_intermediate_size', None, null=True) or 0) if moe else 0,
      top_k_experts=c.integer('top_k_experts', lo=1) if moe else 0,
      bidirectional_vision=c.get('use_bidirectional_attention') == 'vision',
      vision=vision_config(raw, file), audio=audio_config(raw, file), **common)


def _encoder_section(raw: dict, key: str, file: str) -> _Fields | None:
  if raw.get('model_type') != 'gemma4' or not raw.get(key):
    return None
  return _Fields(raw, file).sub(key)


def audio_config(raw: dict, file: str = 'config.json') -> AudioConfig | None:
  """The AudioConfig of a Gemma 4 config.json's `audio_config` (None without one)."""
  a = _encoder_section(raw, 'audio_config', file)
  if a is None:
    return None
  expected = dict(attention_chunk_size=12, attention_logit_cap=50.0, residual_weight=0.5,
                  subsampling_conv_channels=[128, 32], hidden_act='silu',
                  use_clipped_linears=True)
  problems = [f'{k} {a.d[k]!r} (expected {v!r})' for k, v in expected.items()
              if k in a.d and a.d[k] != v
              and not (isinstance(v, list) and isinstance(a.d[k], (list, tuple))
                       and list(a.d[k]) == v)]
  d, n = a.integer('hidden_size', 1024, lo=1), a.integer('num_attention_heads', 8, lo=1)
  if d % n:
    problems.append(f'hidden_size {d} is not a multiple of num_attention_heads {n}')
  if a.integer('attention_context_right', 0) != 0:
    problems.append(f'attention_context_right {a.d["attention_context_right"]} (expected 0)')
  if problems:
    raise ValueError('config.json audio_config is not a Gemma 4 audio encoder: '
                     + '; '.join(problems))
  return AudioConfig(num_layers=a.integer('num_hidden_layers', 12, lo=1), model_dims=d,
                     lm_model_dims=a.integer('output_proj_dims', 1536, lo=1), atten_num_heads=n,
                     atten_left_context=a.integer('attention_context_left', 13),
                     atten_right_context=0, conv_kernel_size=a.integer('conv_kernel_size', 5, lo=1),
                     gradient_clipping=a.number('gradient_clipping', 1e10))


def vision_config(raw: dict, file: str = 'config.json') -> VisionConfig | None:
  """The VisionConfig of a Gemma 4 config.json's `vision_config` (None without one)."""
  v = _encoder_section(raw, 'vision_config', file)
  if v is None:
    return None
  d, n = v.integer('hidden_size', 768, lo=1), v.integer('num_attention_heads', 12, lo=1)
  problems = []
  if v.integer('num_key_value_heads', n) != n:
    problems.append(f'num_key_value_heads {v.d["num_key_value_heads"]} (expected {n}, as many as '
                    'the query heads)')
  if v.integer('head_dim', d // n) * n != d:
    problems.append(f'head_dim {v.d["head_dim"]} (expected hidden_size / num_attention_heads '
                    f'= {d // n})')
  rope = v.sub('rope_parameters')
  if rope.number('rope_theta', 100.0) != 100.0:
    problems.append(f'rope_theta {rope.d["rope_theta"]} (expected 100)')
  if v.integer('pooling_kernel_size', 3) != 3:
    problems.append(f'pooling_kernel_size {v.d["pooling_kernel_size"]} (expected 3)')
  if v.get('hidden_activation', 'gelu_pytorch_tanh') != 'gelu_pytorch_tanh':
    problems.append(f'hidden_activation {v.d["hidden_activation"]!r} (expected gelu_pytorch_tanh)')
  if problems:
    raise ValueError('config.json vision_config is not a Gemma 4 vision encoder: '
                     + '; '.join(problems))
  return VisionConfig(d_model=d, num_layers=v.integer('num_hidden_layers', 16, lo=1), num_heads=n,
                      ffw_hidden=v.integer('intermediate_size', 3072, lo=1),
                      patch_size=v.integer('patch_size', 16, lo=1),
                      pos_emb_shape_yx=(v.integer('position_embedding_size', 10240, lo=1), 2),
                      use_clipped_linears=v.flag('use_clipped_linears', False),
                      standardize_embeddings=v.flag('standardize', False))


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
    raise plan.CheckpointError(
        f'checkpoint {path}: the official vision tree has one set of clip bounds for K and V '
        f'and one for the gate and up projections, but these differ ({len(bad)}):\n  '
        + '\n  '.join(bad))


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


def load(path, model=None, dtype=None, progress: bool | None = None,
         quantize: str | None = None, sharder=None):
  """(model, params, tokenizer) from a HF directory; see `gemma4.load_checkpoint`."""
  path = os.fspath(path)
  cfg = config_from_hf(read_config(path), os.path.join(path, 'config.json'))
  files = weight_files(path)
  reader = SafetensorsFiles(files)
  names = reader.shapes()
  if not names:
    raise plan.CheckpointError(f'{path!r}: its safetensors files hold no tensors '
                               f'({", ".join(map(os.path.basename, files))})')
  prefix = 'model.language_model.' if any(k.startswith('model.language_model.') for k in names) \
      else 'model.'
  embedding = prefix + 'embed_tokens.weight'
  file_dtype = (reader.entries.get(embedding) or next(iter(reader.entries.values())))[1]
  vision = [k for k in names if k.startswith(keymap.VISION_PREFIXES)]
  audio = [k for k in names if k.startswith(keymap.AUDIO_PREFIXES)]
  model = plan.resolve_model(cfg, model, dtype, np.float32 if file_dtype == 'F32'
                                else ml_dtypes.bfloat16, f'{cfg.family}_hf', path,
                                text_only=not (vision or audio))
  pieces = keymap.text_pieces(cfg, prefix)
  dropped = {}
  if model.has_vision:
    pieces += keymap.vision_pieces(model.config.vision, cfg.embed_dim)
    copies = keymap.shared_clip_copies(model.config.vision)
    check_shared_clips(reader, copies, path)
    dropped.update({k: 'a copy of another clip bound (checked equal)' for k in copies})
  elif vision:
    why = f'{model.name} is text_only' if model.text_only else 'config.json has no vision_config'
    print(f'gemma4: {path}: the vision tower ({len(vision)} tensors) is not loaded: {why}',
          file=sys.stderr)
    dropped.update({k: 'vision tower of a text_only model' for k in vision})
  if model.has_audio:
    pieces += keymap.audio_pieces(model.config.audio, cfg.embed_dim)
  elif audio:
    why = f'{model.name} is text_only' if model.text_only else 'config.json has no audio_config'
    print(f'gemma4: {path}: the audio tower ({len(audio)} tensors) is not loaded: {why}',
          file=sys.stderr)
    dropped.update({k: 'audio tower of a text_only model' for k in audio})
  if 'lm_head.weight' in names:
    dropped['lm_head.weight'] = 'tied to the embedding'
  params = plan.fill(reader, pieces, plan.target_shapes(model.param_specs()),
                        model.dtype, dropped=dropped, unused=keymap.unused_params(cfg),
                        what=f'checkpoint {path}', progress=progress, quantize=quantize,
                        sharder=sharder, specs=model.param_specs())
  return model, params, load_tokenizer(path, cfg.family)
