"""The parameter tree: official names, shapes, dtypes and counts; clear errors on bad trees."""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from gemma4 import params as gparams

REF = pathlib.Path(__file__).parent / 'reference'
PRESETS = {'gemma4_e2b': 'Gemma4_E2B', 'gemma4_e4b': 'Gemma4_E4B',
           'gemma4_26b_a4b': 'Gemma4_26B_A4B', 'gemma4_31b': 'Gemma4_31B'}


def _sig(tree):
  return {k: (tuple(v.shape), jnp.dtype(v.dtype).name)
          for k, v in gparams.flatten(tree).items()}


def test_e2b_tree_equals_every_official_text_tensor():
  """reference/e2b_params.txt lists every official E2B tensor (official eval_shape)."""
  official = {}
  for line in (REF / 'e2b_params.txt').read_text().splitlines():
    name, shape, dtype = line.split('\t')
    if name.startswith(('vision_encoder/', 'audio_encoder/', 'embedder/mm_',
                        'embedder/audio_')):
      continue  # the encoders: text_only=True leaves them out, as the official default
    official[name] = (tuple(json.loads(shape.replace('(', '[').replace(')', ']').replace(',]', ']'))), dtype)
  assert _sig(gemma4.models.Gemma4_E2B().eval_shape()) == official


@pytest.mark.parametrize('preset', PRESETS)
def test_param_count_and_layers_equal_official_facts(preset):
  """Text parameter count, layer pattern and first local/global layer shapes equal the
  official eval_shape facts (reference/param_facts.json)."""
  facts = json.loads((REF / 'param_facts.json').read_text())[PRESETS[preset]]
  tree = gemma4.models.get_model(preset).eval_shape()
  flat = gparams.flatten(tree)
  assert sum(math.prod(v.shape) for v in flat.values()) == facts['text_decoder']
  cfg = gemma4.PRESETS[preset]
  assert ''.join('G' if t == 'global' else 'L' for t in cfg.layer_types) == facts['attention_types']
  for layer_key in ('layer0', 'first_global'):
    for name, shape in facts[layer_key].items():
      assert tuple(flat[name].shape) == tuple(shape), name


def test_kv_sharing_reads_last_unshared_layer_of_same_kind():
  e2b = gemma4.PRESETS['gemma4_e2b']
  assert e2b.kv_source[:15] == tuple(range(15))
  assert all(e2b.kv_source[i] == (14 if e2b.layer_types[i] == 'global' else 13)
             for i in range(15, 35))
  assert [e2b.mlp_hidden(i) for i in (14, 15)] == [6144, 12288]
  e4b = gemma4.PRESETS['gemma4_e4b']
  assert e4b.num_kv_shared_layers == 18 and e4b.kv_source[41] == 23 and e4b.kv_source[40] == 22
  assert e4b.mlp_hidden(41) == e4b.hidden_dim


def test_bad_tree_one_error_names_every_offence():
  m = gemma4.models.tiny('e2b')
  params = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), m.eval_shape())
  del params['layer_1']['attn']['q_einsum']
  params['layer_2']['mlp']['linear'] = np.zeros((3, 3), np.float32)
  params['layer_0']['extra'] = np.zeros(2, np.float32)
  params['final_norm']['scale'] = np.zeros(64, np.int32)
  with pytest.raises(ValueError) as e:
    gemma4.check_params(m.config, params)
  msg = str(e.value)
  assert '4 problems' in msg
  assert 'missing layer_1/attn/q_einsum/w: expected (4, 64, 16)' in msg
  assert 'wrong shape layer_2/mlp/linear: got (3, 3), expected (128, 64)' in msg
  assert 'unexpected layer_0/extra' in msg
  assert 'wrong dtype final_norm/scale: got int32, expected a float dtype' in msg


def test_check_params_dtype_and_wrapped_tree():
  m = gemma4.models.tiny('31b')
  params = m.init(0)
  assert m.check_params({'params': params}) is params
  with pytest.raises(ValueError, match='wrong dtype embedder/input_embedding: got float32, expected bfloat16'):
    gemma4.check_params(m.config, params, dtype=jnp.bfloat16)


def test_unknown_preset_lists_known():
  with pytest.raises(ValueError, match="unknown preset 'gemma4_7b'; known presets: gemma4_e2b, "
                     "gemma4_e4b, gemma4_26b_a4b, gemma4_31b"):
    gemma4.models.get_model('gemma4_7b')
  assert gemma4.models.get_model('E2B').config is gemma4.PRESETS['gemma4_e2b']


def test_init_is_deterministic_numpy_seeded():
  cfg = gemma4.models.tiny_config('e4b')
  a, b = gemma4.init_params(cfg, 3), gemma4.init_params(cfg, 3)
  c = gemma4.init_params(cfg, 4)
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert not np.array_equal(a['final_norm']['scale'], c['final_norm']['scale'])
