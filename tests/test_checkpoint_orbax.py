"""Official Orbax checkpoints, written with orbax as the official `save_params` writes them
(StandardCheckpointer), in its three layouts, load to the identical tree (exact)."""

import functools
import os

import jax
import numpy as np
import pytest

ocp = pytest.importorskip('orbax.checkpoint')

import gemma4
from gemma4 import models
from gemma4.params import flatten

# These tests check the file -> official tree mapping, so float weights (quantize=None);
# int8 loads are tested in test_quant.py.
load_float = functools.partial(gemma4.load_checkpoint, quantize=None)


def _save(tree, path):
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(os.path.abspath(path), tree)
  ckpt.wait_until_finished()


def _identical(a, b) -> bool:
  fa, fb = flatten(a), flatten(b)
  return fa.keys() == fb.keys() and all(
      np.asarray(fa[k]).dtype == np.asarray(fb[k]).dtype
      and np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa)


def _flat_layout(params):
  """The official FLAT layout: 'transformer/<module>': {leaf: array}; the dense MLP's
  weights wrapped as {'w': array} under 'transformer/layer_i/mlp/<name>'."""
  out = {}
  for path, x in flatten(params).items():
    module, leaf = path.rsplit('/', 1)
    if module.endswith('/mlp') and leaf in ('gating_einsum', 'linear'):
      out[f'transformer/{path}'] = {'w': x}
    else:
      out.setdefault(f'transformer/{module}', {})[leaf] = x
  return out


def _stacked_layout(params, period):
  """The official STACKED layout: layer j*period + i under attention_type_i, axis 0 = j."""
  layers = [k for k in params if k.startswith('layer_')]
  out = {k: v for k, v in params.items() if not k.startswith('layer_')}
  stacked = {}
  for i in range(period):
    group = [params[f'layer_{j}'] for j in range(i, len(layers), period)]
    stacked[f'attention_type_{i}'] = jax.tree.map(lambda *xs: np.stack(xs), *group)
  out['stacked_layers'] = stacked
  return {'transformer': out}


@pytest.mark.parametrize('layout', ['nested', 'params', 'flat', 'stacked'])
def test_official_layouts_load_to_identical_tree(tmp_path, layout):
  model = models.tiny('31b', dtype=jax.numpy.bfloat16)  # L L G L L G: stackable, period 3
  params = jax.tree.map(np.asarray, model.init(7))
  tree = {'nested': lambda: params, 'params': lambda: {'params': params},
          'flat': lambda: _flat_layout(params),
          'stacked': lambda: _stacked_layout(params, 3)}[layout]()
  _save(tree, tmp_path / 'ckpt')
  ckpt = load_float(tmp_path / 'ckpt', model)
  assert ckpt.tokenizer is None
  assert _identical(ckpt.params, params)


def test_e2b_tree_with_kv_sharing_and_ple(tmp_path):
  model = models.tiny('e2b')
  params = jax.tree.map(np.asarray, model.init(2))
  _save(params, tmp_path / 'ckpt')
  assert _identical(load_float(tmp_path / 'ckpt', model).params, params)


def test_orbax_needs_the_model_and_a_fitting_tree(tmp_path):
  model = models.tiny('31b')
  params = jax.tree.map(np.asarray, model.init(0))
  _save(params, tmp_path / 'ckpt')
  with pytest.raises(ValueError, match='does not record the architecture'):
    load_float(tmp_path / 'ckpt')
  with pytest.raises(gemma4.CheckpointError, match='match no parameter'):
    load_float(tmp_path / 'ckpt', models.tiny('e2b'))


def test_tree_with_vision_and_audio_encoders_loads_with_a_multimodal_model(tmp_path):
  model = models.tiny('e2b', text_only=False)
  params = jax.tree.map(np.asarray, model.init(4))
  assert 'vision_encoder' in params and 'mm_input_projection' in params['embedder']
  assert 'audio_encoder' in params and 'audio_input_projection' in params['embedder']
  _save(params, tmp_path / 'ckpt')
  assert _identical(load_float(tmp_path / 'ckpt', model).params, params)
