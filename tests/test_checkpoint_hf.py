"""HF checkpoints: tiny random transformers Gemma 4 models, written with save_pretrained,
load through `gemma4.load_checkpoint` and give transformers' logits (float32, 1e-4)."""

import functools
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
safetensors_numpy = pytest.importorskip('safetensors.numpy')

import gemma4
from gemma4.checkpoints import hf, keymap
from gemma4.transformer import forward

# These tests check the file -> official tree mapping, so float weights (quantize=None);
# int8 loads are tested in test_quant.py.
load_float = functools.partial(gemma4.load_checkpoint, quantize=None)

VOCAB = 4096
KINDS = ['sliding_attention', 'sliding_attention', 'full_attention'] * 2
DENSE = dict(  # per-layer embeddings, KV sharing (last 3 layers), double-wide MLP there
    vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=32,
    layer_types=KINDS, sliding_window=8, hidden_size_per_layer_input=16,
    vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=3, use_double_wide_mlp=True,
    final_logit_softcapping=30.0)
MOE = dict(  # 26B-A4B features: MoE beside the dense MLP, K = V and 1 kv head on global
    vocab_size=VOCAB, hidden_size=64, intermediate_size=48, num_hidden_layers=6,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=32,
    num_global_key_value_heads=1, attention_k_eq_v=True, layer_types=KINDS, sliding_window=8,
    hidden_size_per_layer_input=0, enable_moe_block=True, num_experts=4, top_k_experts=2,
    moe_intermediate_size=24, final_logit_softcapping=30.0, use_bidirectional_attention='vision')


def randomize(model, seed=0):
  """Weights of realistic scale in place: the default init (std 0.02, unit norms) would
  make every logit tiny; here projections are normal with std fan_in**-0.5 and norm
  scales 1 + 0.1 * normal, as gemma4's own random init, so a misplaced tensor shows."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    tensors = list(model.named_parameters())
    tensors += [(n, b) for n, b in model.named_buffers() if n.endswith('layer_scalar')]
    for _, p in tensors:
      if p.ndim <= 1:
        p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
      else:
        p.copy_(torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5)
  return g


def random_hf(kwargs, path, seed=0, **save):
  """A random transformers Gemma4ForCausalLM (see `randomize`), saved to `path`."""
  torch.manual_seed(seed)
  model = transformers.Gemma4ForCausalLM(transformers.Gemma4TextConfig(**kwargs)).eval()
  randomize(model, seed)
  model.save_pretrained(path, **save)
  return model


@pytest.fixture(scope='module')
def dense(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('hf') / 'dense')
  return random_hf(DENSE, path), path


@pytest.fixture(scope='module')
def moe(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('hf') / 'moe')
  return random_hf(MOE, path, seed=1, max_shard_size='100KB'), path  # sharded, with index


def _max_diff(hf_model, ckpt, seed=0):
  ids = np.random.default_rng(seed).integers(5, VOCAB, (2, 32))
  with torch.no_grad():
    ref = hf_model(torch.tensor(ids)).logits.numpy()
  out, _ = forward(ckpt.params, ckpt.model.config, jnp.asarray(ids))
  return float(np.abs(np.asarray(out) - ref).max())


def test_dense_ple_kv_sharing_logits_match_transformers_within_1e4(dense):
  """Measured 1.3e-5."""
  hf_model, path = dense
  ckpt = load_float(path)
  cfg = ckpt.model.config
  assert (cfg.per_layer_input_dim, cfg.num_kv_shared_layers, cfg.kv_shared_hidden_dim) == (16, 3, 256)
  assert ckpt.params['layer_0']['attn']['q_einsum']['w'].dtype == jnp.float32
  assert _max_diff(hf_model, ckpt) < 1e-4


def test_moe_sharded_logits_match_transformers_within_1e4(moe):
  """Measured 2.8e-5."""
  hf_model, path = moe
  assert os.path.isfile(os.path.join(path, 'model.safetensors.index.json'))
  ckpt = load_float(path)
  cfg = ckpt.model.config
  assert (cfg.num_experts, cfg.top_k_experts, cfg.expert_dim) == (4, 2, 24)
  assert cfg.k_eq_v_global and cfg.num_global_kv_heads == 1 and cfg.bidirectional_vision
  assert _max_diff(hf_model, ckpt) < 1e-4


def test_bfloat16_load_casts_every_param(dense):
  """Every param is bfloat16 and equals the float32 load cast to bfloat16 (exact)."""
  _, path = dense
  ckpt = load_float(path, dtype=jnp.bfloat16)
  import jax
  assert {x.dtype for x in jax.tree.leaves(ckpt.params)} == {jnp.dtype(jnp.bfloat16)}
  f32 = gemma4.params.flatten(load_float(path).params)
  bf16 = gemma4.params.flatten(ckpt.params)
  assert f32.keys() == bf16.keys()
  for k in f32:
    assert np.array_equal(np.asarray(f32[k].astype(jnp.bfloat16)), np.asarray(bf16[k])), k


def _arange_checkpoint(tmp_path, cfg_kwargs):
  """A HF directory whose every tensor holds distinct values (offset + arange)."""
  cfg = hf.config_from_hf({'model_type': 'gemma4_text', **cfg_kwargs,
                                  'per_layer_config': {'2': {'head_dim': 32}, '5': {'head_dim': 32}}})
  tensors, offset = {}, 0
  for piece in keymap.text_pieces(cfg):
    n = int(np.prod(piece.shape))
    tensors[piece.source] = (offset + np.arange(n, dtype=np.float32)).reshape(piece.shape)
    offset += n
  os.makedirs(tmp_path, exist_ok=True)
  safetensors_numpy.save_file(tensors, os.path.join(tmp_path, 'model.safetensors'))
  raw = dict(cfg_kwargs, model_type='gemma4_text', global_head_dim=32)
  with open(os.path.join(tmp_path, 'config.json'), 'w') as f:
    json.dump(raw, f)
  return tensors


def test_arange_tensors_land_where_the_key_map_says(tmp_path):
  src = _arange_checkpoint(tmp_path, DENSE)
  ckpt = load_float(tmp_path)
  p = {k: np.asarray(v) for k, v in gemma4.params.flatten(ckpt.params).items()}
  n, h, d = 4, 16, 64
  q = src['model.layers.0.self_attn.q_proj.weight']  # [N*H, D]
  assert np.array_equal(p['layer_0/attn/q_einsum/w'], q.reshape(n, h, d).transpose(0, 2, 1))
  o = src['model.layers.2.self_attn.o_proj.weight']  # [D, N*H], global H = 32
  assert np.array_equal(p['layer_2/attn/attn_vec_einsum/w'][1, 3, 5], o[5, 1 * 32 + 3])
  kk = src['model.layers.1.self_attn.k_proj.weight']
  vv = src['model.layers.1.self_attn.v_proj.weight']
  assert np.array_equal(p['layer_1/attn/kv_einsum/w'][0, 1, 7, 2], kk[1 * h + 2, 7])
  assert np.array_equal(p['layer_1/attn/kv_einsum/w'][1, 1, 7, 2], vv[1 * h + 2, 7])
  gate = src['model.layers.4.mlp.gate_proj.weight']  # KV-shared layer: double width
  assert p['layer_4/mlp/gating_einsum'].shape == (2, 256, 64)
  assert np.array_equal(p['layer_4/mlp/gating_einsum'][0], gate)
  assert np.array_equal(p['layer_4/mlp/gating_einsum'][1], src['model.layers.4.mlp.up_proj.weight'])
  assert np.array_equal(p['layer_4/mlp/linear'], src['model.layers.4.mlp.down_proj.weight'].T)
  ple = src['model.embed_tokens_per_layer.weight']  # [V, L*P]
  assert np.array_equal(p['embedder/per_layer_embeddings'][9, 4, 3], ple[9, 4 * 16 + 3])
  proj = src['model.per_layer_model_projection.weight']  # [L*P, D]
  assert np.array_equal(p['embedder/per_layer_model_projection/w'][11, 2, 5], proj[2 * 16 + 5, 11])
  assert np.array_equal(p['layer_3/per_layer_input_gate/w'],
                        src['model.layers.3.per_layer_input_gate.weight'].T)
  assert np.array_equal(p['layer_0/skip_scale'], src['model.layers.0.layer_scalar'])
  # KV-shared layers keep no K/V in transformers: the unused official entries are zeros
  assert not np.any(p['layer_5/attn/kv_einsum/w'])


def test_arange_moe_experts_and_router(tmp_path):
  src = _arange_checkpoint(tmp_path, MOE)
  ckpt = load_float(tmp_path)
  p = {k: np.asarray(v) for k, v in gemma4.params.flatten(ckpt.params).items()}
  gu = src['model.layers.3.experts.gate_up_proj']  # [E, 2X, D], gate rows first
  assert np.array_equal(p['layer_3/mlp/gating_einsum/w'][2, 0, 5, 7], gu[2, 5, 7])
  assert np.array_equal(p['layer_3/mlp/gating_einsum/w'][2, 1, 5, 7], gu[2, 24 + 5, 7])
  down = src['model.layers.3.experts.down_proj']  # [E, D, X]
  assert np.array_equal(p['layer_3/mlp/linear/w'][1, 6, 9], down[1, 9, 6])
  assert np.array_equal(p['layer_3/mlp/router_logits/w'], src['model.layers.3.router.proj.weight'].T)
  assert np.array_equal(p['layer_3/pre_ffw_norm/scale'],  # the experts' pre-norm
                        src['model.layers.3.pre_feedforward_layernorm_2.weight'])
  assert np.array_equal(p['layer_3/pre_ffw2_norm/scale'],  # the dense branch's
                        src['model.layers.3.pre_feedforward_layernorm.weight'])
  assert np.array_equal(p['layer_2/attn/k_einsum/w'],  # global, K = V, one kv head
                        src['model.layers.2.self_attn.k_proj.weight'].reshape(1, 32, 64).transpose(0, 2, 1))


def test_bad_checkpoint_lists_every_problem_before_loading(tmp_path):
  src = _arange_checkpoint(tmp_path, DENSE)
  del src['model.layers.1.self_attn.v_proj.weight']
  src['model.layers.2.mlp.up_proj.weight'] = np.zeros((3, 3), np.float32)
  src['model.extra.weight'] = np.zeros(2, np.float32)
  safetensors_numpy.save_file(src, os.path.join(tmp_path, 'model.safetensors'))
  with pytest.raises(gemma4.CheckpointError) as e:
    load_float(tmp_path)
  msg = str(e.value)
  assert '3 problems' in msg
  assert 'missing tensor model.layers.1.self_attn.v_proj.weight' in msg
  assert 'wrong shape model.layers.2.mlp.up_proj.weight' in msg and '(128, 64)' in msg
  assert 'unused tensor model.extra.weight' in msg


def test_named_model_must_match_config(dense):
  _, path = dense
  with pytest.raises(gemma4.CheckpointError, match='embed_dim is 64 in the file, 1536 in the model'):
    load_float(path, gemma4.models.Gemma4_E2B())


def test_layout_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='checkpoint not found'):
    load_float(tmp_path / 'nope')
  (tmp_path / 'x.bin').write_bytes(b'abcd')
  with pytest.raises(ValueError, match='unknown checkpoint layout.*not GGUF'):
    load_float(tmp_path / 'x.bin')
  with pytest.raises(ValueError, match=r'unknown checkpoint layout.*neither config\.json'):
    load_float(tmp_path)
  (tmp_path / 'config.json').write_text('{"model_type": "llama"}')
  with pytest.raises(ValueError, match="model_type 'llama' is not a Gemma"):
    load_float(tmp_path)


def test_text_only_model_loads_the_decoder_of_a_multimodal_checkpoint(tmp_path, capsys):
  """The published layout: Gemma4ForConditionalGeneration, decoder under
  model.language_model., encoders beside it, config.json with a text_config. A text_only
  model takes the decoder and says which encoder tensors it left."""
  src = _arange_checkpoint(tmp_path / 'text', DENSE)
  text = load_float(tmp_path / 'text')
  mm = {'model.language_model.' + k.removeprefix('model.'): v for k, v in src.items()}
  mm['model.vision_tower.patch_embedder.input_proj.weight'] = np.zeros((4, 4), np.float32)
  mm['model.embed_audio.embedding_projection.weight'] = np.zeros((4, 4), np.float32)
  os.makedirs(tmp_path / 'mm')
  safetensors_numpy.save_file(mm, os.path.join(tmp_path, 'mm', 'model.safetensors'))
  text_config = dict(DENSE, model_type='gemma4_text', global_head_dim=32)
  with open(tmp_path / 'mm' / 'config.json', 'w') as f:
    json.dump({'model_type': 'gemma4', 'text_config': text_config,
               'vision_config': {}, 'audio_config': {}}, f)
  capsys.readouterr()
  ckpt = load_float(tmp_path / 'mm', model=text.model)
  err = capsys.readouterr().err
  assert 'the vision tower (1 tensors) is not loaded: gemma4_hf is text_only' in err
  assert 'the audio tower (1 tensors) is not loaded: gemma4_hf is text_only' in err
  flat_a, flat_b = gemma4.params.flatten(text.params), gemma4.params.flatten(ckpt.params)
  assert flat_a.keys() == flat_b.keys()
  assert all(np.array_equal(np.asarray(flat_a[k]), np.asarray(flat_b[k])) for k in flat_a)
