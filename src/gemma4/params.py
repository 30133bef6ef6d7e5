"""Parameter specs: every decoder parameter declared once, in the official tree layout.

From `param_specs` come random init, `jax.eval_shape`-style trees and the check that a
user's tree (official `model.init` output included) has exactly the right entries.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import quant
from gemma4.config import TransformerConfig


@dataclasses.dataclass(frozen=True)
class ParamSpec:
  shape: tuple[int, ...]
  init: str  # 'normal' (std = fan_in ** -0.5 over `fan_in_axes`), 'embed', 'ones', 'zeros'
  fan_in_axes: tuple[int, ...] = ()
  # The logical name of each axis (gemma4.sharding.LOGICAL_AXES; None: never split), or
  # None for a parameter kept whole on every device (the encoders).
  axes: tuple[str | None, ...] | None = None


def _norm(dim: int, cfg: TransformerConfig | None = None) -> dict:
  # Gemma 3 norms store w for a (1 + w) scale: their neutral value is 0, not 1.
  return {'scale': ParamSpec((dim,), 'zeros' if cfg and cfg.norm_offset else 'ones', axes=(None,))}


def _dense_mlp(d: int, f: int) -> dict:
  # The official dense FeedForward shares its scope: no '/w' under these names.
  return {'gating_einsum': ParamSpec((2, f, d), 'normal', (2,), (None, 'mlp', 'embed')),
          'linear': ParamSpec((f, d), 'normal', (0,), ('mlp', 'embed'))}


def _attention(cfg: TransformerConfig, kind: str) -> dict:
  n, d, h, k = cfg.num_heads, cfg.embed_dim, cfg.key_size(kind), cfg.kv_heads(kind)
  p = {'q_einsum': {'w': ParamSpec((n, d, h), 'normal', (1,), ('heads', 'embed', 'head_dim'))},
       'attn_vec_einsum': {'w': ParamSpec((n, h, d), 'normal', (0, 1),
                                          ('heads', 'head_dim', 'embed'))}}
  if cfg.k_eq_v(kind):
    p['k_einsum'] = {'w': ParamSpec((k, d, h), 'normal', (1,), ('kv_heads', 'embed', 'head_dim'))}
  else:
    p['kv_einsum'] = {'w': ParamSpec((2, k, d, h), 'normal', (2,),
                                     (None, 'kv_heads', 'embed', 'head_dim'))}
  if cfg.qk_norm_with_scale:
    q_name, k_name = cfg.qk_norm_names
    p[q_name] = _norm(h, cfg)
    p[k_name] = _norm(h, cfg)
  return p


def _layer(cfg: TransformerConfig, i: int) -> dict:
  d = cfg.embed_dim
  p = {'pre_attention_norm': _norm(d, cfg), 'attn': _attention(cfg, cfg.layer_types[i])}
  if cfg.skip_scale:
    p['skip_scale'] = ParamSpec((1,), 'ones', axes=(None,))
  if cfg.use_post_attn_norm:
    p['post_attention_norm'] = _norm(d, cfg)
  p['pre_ffw_norm'] = _norm(d, cfg)
  if cfg.is_moe:
    e, hx = cfg.num_experts, cfg.expert_dim
    # The router stays whole (every device picks the same experts for a token); the
    # experts split over 'experts', each expert's hidden units over 'mlp'.
    p['mlp'] = {'router_logits': {'w': ParamSpec((d, e), 'normal', (0,), ('embed', None))},
                'gating_einsum': {'w': ParamSpec((e, 2, hx, d), 'normal', (3,),
                                                 ('experts', None, 'mlp', 'embed'))},
                'linear': {'w': ParamSpec((e, hx, d), 'normal', (1,), ('experts', 'mlp', 'embed'))},
                'per_expert_scale': ParamSpec((e,), 'ones', axes=(None,)),
                'router_scale': ParamSpec((d,), 'ones', axes=(None,))}
    p['pre_ffw2_norm'] = _norm(d)
    p['mlp2'] = _dense_mlp(d, cfg.hidden_dim)
    if cfg.use_post_ffw_norm:
      p['post_ffw1_norm'] = _norm(d)
      p['post_ffw2_norm'] = _norm(d)
  else:
    p['mlp'] = _dense_mlp(d, cfg.mlp_hidden(i))
  if cfg.use_post_ffw_norm:
    p['post_ffw_norm'] = _norm(d, cfg)
  if cfg.per_layer_input_dim:
    pd = cfg.per_layer_input_dim
    p['per_layer_input_gate'] = {'w': ParamSpec((d, pd), 'normal', (0,), ('embed', None))}
    p['per_layer_projection'] = {'w': ParamSpec((pd, d), 'normal', (0,), (None, 'embed'))}
    p['post_per_layer_input_norm'] = _norm(d)
  return p


def param_specs(cfg: TransformerConfig) -> dict:
  """The official text-decoder parameter tree of `cfg`, with a ParamSpec per leaf."""
  d, v = cfg.embed_dim, cfg.vocab_size
  embedder = {'input_embedding': ParamSpec((v, d), 'embed', axes=('vocab', 'embed'))}
  if cfg.per_layer_input_dim:
    l, pd = cfg.num_layers, cfg.per_layer_input_dim
    embedder['per_layer_embeddings'] = ParamSpec((v, l, pd), 'embed', axes=('vocab', None, None))
    embedder['per_layer_model_projection'] = {'w': ParamSpec((d, l, pd), 'normal', (0,),
                                                             ('embed', None, None))}
    embedder['per_layer_projection_norm'] = _norm(pd)
  tree = {'embedder': embedder}
  for i in range(cfg.num_layers):
    tree[f'layer_{i}'] = _layer(cfg, i)
  tree['final_norm'] = _norm(d, cfg)
  return tree


def _is_spec(x) -> bool:
  return isinstance(x, ParamSpec)


def is_encoder(path: str) -> bool:
  """Encoder params and their projections stay float32 (as in the official library)."""
  return path.startswith(('vision_encoder/', 'audio_encoder/', 'embedder/mm_', 'embedder/audio_'))


def shape_tree(cfg: TransformerConfig, dtype=jnp.bfloat16, specs: dict | None = None) -> dict:
  """The tree of `jax.ShapeDtypeStruct`s: what `jax.eval_shape(model.init)` gives."""
  flat = flatten(specs if specs is not None else param_specs(cfg))
  return unflatten({k: jax.ShapeDtypeStruct(s.shape, jnp.float32 if is_encoder(k) else jnp.dtype(dtype))
                     for k, s in flat.items()})


def unflatten(flat: Mapping[str, Any]) -> dict:
  """{'a/b/c': x} -> {'a': {'b': {'c': x}}}: the inverse of `flatten`."""
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split('/')
    for k in parents:
      node = node.setdefault(k, {})
    node[leaf] = value
  return tree


def init_params(cfg: TransformerConfig, seed: int = 0, dtype=jnp.float32,
                noise: float = 0.1, specs: dict | None = None) -> dict:
  """Random params, identical for a seed on every platform and jax version (NumPy RNG).

  Projections are normal with std fan_in**-0.5 and the embedding tables std 0.25, so
  that tiny random models give logits of order one rather than saturating the softcap;
  scales are 1 + noise * normal so that a misplaced norm or scale shows in the output.
  """
  rng = np.random.default_rng(seed)
  audio_rng = np.random.default_rng([seed, 1])  # the audio encoder draws on its own, so
  tree = specs if specs is not None else param_specs(cfg)  # the rest is as without it
  with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_spec)
  paths = ['/'.join(str(k.key) for k in kp) for kp, _ in with_paths]
  flat = [s for _, s in with_paths]
  leaves = []
  for path, s in zip(paths, flat):
    r = audio_rng if path.startswith(('audio_encoder/', 'embedder/audio_')) else rng
    if s.init in ('clip_min', 'clip_max'):  # vision clipped linears: no clipping
      x = np.full(s.shape, -np.inf if s.init == 'clip_min' else np.inf)
    elif s.init in ('ones', 'zeros'):
      x = float(s.init == 'ones') + noise * r.standard_normal(s.shape)
    elif s.init == 'embed':
      x = 0.25 * r.standard_normal(s.shape, dtype=np.float32)
    else:
      fan_in = int(np.prod([s.shape[a] for a in s.fan_in_axes]))
      x = r.standard_normal(s.shape, dtype=np.float32) * fan_in ** -0.5
    leaves.append(x)
  leaves = [jnp.asarray(x, jnp.float32 if is_encoder(p) else dtype) for p, x in zip(paths, leaves)]
  return jax.tree.unflatten(treedef, leaves)


def flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  """A nested mapping as {'a/b/c': leaf}, in the tree's own order."""
  out = {}
  if isinstance(tree, Mapping):
    for k, v in tree.items():
      out.update(flatten(v, f'{prefix}/{k}' if prefix else str(k)))
  else:
    out[prefix] = tree
  return out


def unwrap(params: Mapping[str, Any]) -> Mapping[str, Any]:
  """Accepts both `model.init(...)` output ({'params': tree}) and the bare tree. The
  official audio encoder names its layers with one key 'conformer/stacked_layers_i';
  such keys are nested here ('conformer' -> 'stacked_layers_i')."""
  if isinstance(params, Mapping) and set(params) == {'params'}:
    params = params['params']
  audio = params.get('audio_encoder') if isinstance(params, Mapping) else None
  if isinstance(audio, Mapping) and any('/' in k for k in audio):
    params = dict(params, audio_encoder=unflatten(audio))  # values may be subtrees
  return params


def check_params(cfg: TransformerConfig, params: Mapping[str, Any],
                 dtype=None, specs: dict | None = None) -> None:
  """Raises one ValueError naming every missing, extra or misshaped entry.

  `dtype`: the expected dtype of every leaf, or None to accept any float dtype.
  """
  expected = flatten(specs if specs is not None else param_specs(cfg))
  got = flatten(unwrap(params))
  problems = []
  for path in sorted(set(expected) - set(got)):
    want = f'{expected[path].shape} {jnp.dtype(dtype).name if dtype else ""}'.strip()
    problems.append(f'missing {path}: expected {want}')
  for path in sorted(set(got) - set(expected)):
    problems.append(f'unexpected {path}: shape {tuple(np.shape(got[path]))}')
  for path in sorted(set(got) & set(expected)):
    shape, want = tuple(np.shape(got[path])), expected[path].shape
    leaf = got[path]  # an array, a ShapeDtypeStruct or a tracer (under a caller's jit)
    if quant.is_quantized(leaf):  # its shape is the official one
      if shape != want:
        problems.append(f'wrong shape {path}: got {shape}, expected {want}')
      if leaf.layout != quant.layout_for(path):
        problems.append(f'wrong layout {path}: an int8 weight with layout {leaf.layout}, '
                        f'expected {quant.layout_for(path)}')
      continue
    got_dtype = jnp.dtype(leaf.dtype if hasattr(leaf, 'dtype') else np.asarray(leaf).dtype)
    if shape != want:
      problems.append(f'wrong shape {path}: got {shape}, expected {want}')
    if dtype is not None and got_dtype != jnp.dtype(dtype):
      problems.append(f'wrong dtype {path}: got {got_dtype.name}, expected {jnp.dtype(dtype).name}')
    elif not jnp.issubdtype(got_dtype, jnp.floating):
      problems.append(f'wrong dtype {path}: got {got_dtype.name}, expected a float dtype')
  if problems:
    raise ValueError(f'params do not match the model ({len(problems)} problems):\n  '
                     + '\n  '.join(problems))
