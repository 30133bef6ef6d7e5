"""GGUF files: placement (arange tensors), norm offsets, quantized types, the embedded
tokenizer, and a gemma4 file converted from a tiny transformers model, whose logits
match transformers' within 1e-4 (float32)."""

import functools
import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip('gguf')

import gemma4
from gemma4.checkpoints import gguf as gguf_ckpt
from gemma4.checkpoints import keymap, plan
from gemma4.params import flatten
from gemma4.transformer import forward

# These tests check the file -> official tree mapping, so float weights (quantize=None);
# int8 loads are tested in test_quant.py.
load_float = functools.partial(gemma4.load_checkpoint, quantize=None)


def _vocab(n):
  """A small SentencePiece-style vocabulary: specials, 256 byte pieces, letters, fillers."""
  tokens = ['<pad>', '<eos>', '<bos>', '<unk>', '<mask>']
  types = [3, 3, 3, 2, 3]
  tokens += [f'<0x{i:02X}>' for i in range(256)]
  types += [6] * 256
  letters = ['\u2581' + c for c in 'abcdefghij'] + list('abcdefghij') + ['  ']
  tokens += letters
  types += [1] * (len(letters) - 1) + [4]
  tokens += [f'<f{i}>' for i in range(n - len(tokens))]
  types += [4] * (n - len(types))
  scores = [-float(i) for i in range(n)]
  return tokens, scores, types


def _write(path, arch, meta, tensors, vocab=None, quant=None):
  w = gguf.GGUFWriter(str(path), arch)
  for key, value in meta.items():
    if isinstance(value, bool):
      w.add_bool(f'{arch}.{key}', value)
    elif isinstance(value, int):
      w.add_uint32(f'{arch}.{key}', value)
    elif isinstance(value, float):
      w.add_float32(f'{arch}.{key}', value)
    else:
      w.add_array(f'{arch}.{key}', value)
  tokens, scores, types = vocab or _vocab(next(iter(tensors.values())).shape[0])
  w.add_tokenizer_model('llama')
  w.add_token_list(tokens)
  w.add_token_scores(scores)
  w.add_token_types(types)
  w.add_bos_token_id(2)
  w.add_eos_token_id(1)
  w.add_unk_token_id(3)
  w.add_pad_token_id(0)
  for name, x in tensors.items():
    if quant and name in quant:
      q = gguf.quants.quantize(x, quant[name])
      w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=quant[name])
    else:
      w.add_tensor(name, x)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()


GEMMA3_META = {'embedding_length': 64, 'block_count': 6, 'feed_forward_length': 128,
               'attention.head_count': 4, 'attention.head_count_kv': 1,
               'attention.key_length': 16, 'attention.value_length': 16,
               'attention.sliding_window': 8, 'rope.freq_base': 1_000_000.0,
               'attention.layer_norm_rms_epsilon': 1e-6, 'context_length': 512}


def _gemma3_tensors(cfg, vocab):
  tensors, offset = {}, 0
  for p in keymap.gguf_text_pieces(cfg):
    n = int(np.prod(p.shape))
    tensors[p.source] = (offset + np.arange(n, dtype=np.float32)).reshape(p.shape) / 7.0
    offset += n
  return tensors


@pytest.fixture
def gemma3_file(tmp_path):
  cfg = gguf_ckpt._gemma3_config({f'gemma3.{k}': v for k, v in GEMMA3_META.items()})
  import dataclasses
  cfg = dataclasses.replace(cfg, vocab_size=320)
  tensors = _gemma3_tensors(cfg, 320)
  path = tmp_path / 'tiny-gemma3.gguf'
  _write(path, 'gemma3', GEMMA3_META, tensors,
         quant={'blk.1.ffn_up.weight': gguf.GGMLQuantizationType.Q8_0,
                'blk.2.attn_q.weight': gguf.GGMLQuantizationType.Q4_0})
  return path, tensors


def test_gemma3_config_has_the_constants_gguf_leaves_out(gemma3_file):
  path, _ = gemma3_file
  ckpt = load_float(path)
  c = ckpt.model.config
  assert c.family == 'gemma3' and c.vocab_size == 320
  assert c.layer_types == ('local',) * 5 + ('global',)
  assert (c.local_rope_base, c.global_rope_base, c.query_scale) == (10_000, 1_000_000, 0.25)
  assert c.final_logit_softcap is None and c.global_head_dim is None


def test_gemma3_arange_placement_and_norm_offset_exact(gemma3_file, monkeypatch):
  monkeypatch.setattr(plan, '_BLOCK_BYTES', 4096)  # place the embedding in row blocks
  path, src = gemma3_file
  p = {k: np.asarray(v) for k, v in flatten(load_float(path).params).items()}
  assert np.array_equal(p['embedder/input_embedding'], src['token_embd.weight'])
  # GGUF Gemma 3 norms hold 1 + w; the official tree holds w (float32: exact)
  assert np.array_equal(p['final_norm/scale'], src['output_norm.weight'] - 1)
  assert np.array_equal(p['layer_3/attn/_query_norm/scale'], src['blk.3.attn_q_norm.weight'] - 1)
  q = src['blk.0.attn_q.weight']  # [N*H, D]
  assert np.array_equal(p['layer_0/attn/q_einsum/w'][2, 5, 7], q[2 * 16 + 7, 5])
  assert np.array_equal(p['layer_4/attn/kv_einsum/w'][0, 0, 9, 3], src['blk.4.attn_k.weight'][3, 9])
  assert np.array_equal(p['layer_4/attn/kv_einsum/w'][1, 0, 9, 3], src['blk.4.attn_v.weight'][3, 9])
  o = src['blk.5.attn_output.weight']  # [D, N*H]
  assert np.array_equal(p['layer_5/attn/attn_vec_einsum/w'][3, 2, 11], o[11, 3 * 16 + 2])
  assert np.array_equal(p['layer_0/mlp/gating_einsum'][0], src['blk.0.ffn_gate.weight'])
  assert np.array_equal(p['layer_0/mlp/linear'], src['blk.0.ffn_down.weight'].T)
  assert np.array_equal(p['layer_0/pre_ffw_norm/scale'], src['blk.0.ffn_norm.weight'] - 1)


def test_quantized_tensors_dequantize_as_gguf_does(gemma3_file):
  path, src = gemma3_file
  p = flatten(load_float(path).params)
  for name, kind, target, index in [
      ('blk.1.ffn_up.weight', gguf.GGMLQuantizationType.Q8_0, 'layer_1/mlp/gating_einsum', 1),
      ('blk.2.attn_q.weight', gguf.GGMLQuantizationType.Q4_0, 'layer_2/attn/q_einsum/w', None)]:
    want = gguf.quants.dequantize(gguf.quants.quantize(src[name], kind), kind)
    got = np.asarray(p[target])
    if index is None:
      got = got.transpose(0, 2, 1).reshape(want.shape)
    else:
      got = got[index]
    assert np.array_equal(got, want)
    assert not np.array_equal(want, src[name])  # the quantization did change values


def test_embedded_tokenizer_encodes_user_defined_whitespace(gemma3_file):
  path, _ = gemma3_file
  tok = load_float(path).tokenizer
  assert isinstance(tok, gemma4.tokenizer.Gemma3Tokenizer) and tok.vocab_size == 320
  ids = tok.encode('ab  a', add_bos=True)
  assert ids[0] == 2 and tok.decode(ids[1:]) == 'ab  a'
  assert tok.encode('  ') == [281]  # llama.cpp writes '  ' with plain spaces (id 281 here)


def test_bad_gguf_files(tmp_path, gemma3_file):
  path, src = gemma3_file
  bad = dict(src)
  bad['blk.0.ffn_up.weight'] = np.zeros((5, 5), np.float32)
  del bad['blk.3.attn_v.weight']
  _write(tmp_path / 'bad.gguf', 'gemma3', GEMMA3_META, bad)
  with pytest.raises(gemma4.CheckpointError) as e:
    load_float(tmp_path / 'bad.gguf')
  assert 'missing tensor blk.3.attn_v.weight' in str(e.value)
  assert 'wrong shape blk.0.ffn_up.weight' in str(e.value)
  _write(tmp_path / 'vocab.gguf', 'gemma3', GEMMA3_META, src, vocab=_vocab(300))
  with pytest.raises(gemma4.CheckpointError, match='tokenizer has 300 pieces but token_embd'):
    load_float(tmp_path / 'vocab.gguf')
  w = gguf.GGUFWriter(str(tmp_path / 'llama.gguf'), 'llama')
  w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
  with pytest.raises(ValueError, match="architecture 'llama' is not supported"):
    load_float(tmp_path / 'llama.gguf')


def _hf_to_gguf(hf_model, kw, path):
  """A gemma4 GGUF file written the way llama.cpp's converter writes one (names from the
  gguf package's own TensorNameMap; metadata keys and tensor handling as
  conversion/gemma.py Gemma4Model does: torch shapes, no norm offset, rope_freqs)."""
  c = hf_model.config
  n = kw['num_hidden_layers']
  names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA4, n)
  tensors = {}
  for hf_name, t in list(hf_model.state_dict().items()):
    if hf_name == 'lm_head.weight':
      continue
    if hf_name.endswith('router.scale'):
      name = f'blk.{hf_name.split(".")[2]}.ffn_gate_inp.scale'
    elif hf_name.endswith('router.per_expert_scale'):
      name = f'blk.{hf_name.split(".")[2]}.ffn_down_exps.scale'
    else:
      base = hf_name.removesuffix('.weight')
      name = names.get_name(base) + '.weight'
    tensors[name] = t.detach().numpy().astype(np.float32)
  shared = kw.get('num_kv_shared_layers', 0)
  kinds = kw['layer_types']
  gd = kw['global_head_dim']
  prf = c.rope_parameters['full_attention']['partial_rotary_factor']
  rot = int(gd * prf / 2)
  tensors['rope_freqs.weight'] = np.array([1.0] * rot + [1e30] * (gd // 2 - rot), np.float32)
  kv_local = kw['num_key_value_heads']
  kv_global = kw['num_global_key_value_heads'] if kw.get('attention_k_eq_v') else kv_local
  ffw = [kw['intermediate_size'] * (2 if kw.get('use_double_wide_mlp') and i >= n - shared else 1)
         for i in range(n)]
  meta = {'embedding_length': kw['hidden_size'], 'block_count': n,
          'feed_forward_length': ffw if len(set(ffw)) > 1 else ffw[0],
          'attention.head_count': kw['num_attention_heads'],
          'attention.head_count_kv': [kv_local if k == 'sliding_attention' else kv_global
                                      for k in kinds],
          'attention.key_length': gd, 'attention.value_length': gd,
          'attention.key_length_swa': kw['head_dim'], 'attention.value_length_swa': kw['head_dim'],
          'attention.sliding_window': kw['sliding_window'],
          'attention.sliding_window_pattern': [k == 'sliding_attention' for k in kinds],
          'attention.shared_kv_layers': shared,
          'embedding_length_per_layer_input': kw.get('hidden_size_per_layer_input') or 0,
          'rope.freq_base': float(c.rope_parameters['full_attention']['rope_theta']),
          'rope.freq_base_swa': float(c.rope_parameters['sliding_attention']['rope_theta']),
          'rope.dimension_count': gd, 'rope.dimension_count_swa': kw['head_dim'],
          'final_logit_softcapping': float(kw['final_logit_softcapping'])}
  if kw.get('enable_moe_block'):
    meta.update({'expert_count': kw['num_experts'], 'expert_used_count': kw['top_k_experts'],
                 'expert_feed_forward_length': kw['moe_intermediate_size']})
  _write(path, 'gemma4', meta, tensors)


@pytest.mark.parametrize('kind', ['dense', 'moe'])
def test_gemma4_gguf_logits_match_transformers_within_1e4(tmp_path, kind):
  """Measured 8.5e-6 (dense), 1.9e-5 (MoE); logits up to 5."""
  torch = pytest.importorskip('torch')
  pytest.importorskip('transformers')
  from tests import test_checkpoint_hf as hf
  kw = hf.DENSE if kind == 'dense' else hf.MOE
  model = hf.random_hf(kw, str(tmp_path / 'hf'), seed=3)
  _hf_to_gguf(model, kw, tmp_path / 'm.gguf')
  ckpt = load_float(tmp_path / 'm.gguf')
  ids = np.random.default_rng(1).integers(5, hf.VOCAB, (1, 32))
  with torch.no_grad():
    ref = model(torch.tensor(ids)).logits.numpy()
  out, _ = forward(ckpt.params, ckpt.model.config, jnp.asarray(ids))
  assert float(np.abs(np.asarray(out) - ref).max()) < 1e-4
  assert ckpt.model.config.global_rope_proportion == 0.25


def test_gemma4_names_agree_with_the_gguf_package():
  """gemma4's own llama.cpp name table equals the gguf package's TensorNameMap."""
  m = gemma4.models.tiny_config('26b_a4b')
  names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA4, m.num_layers)
  for p in keymap.text_pieces(gemma4.models.tiny_config('e2b')) + keymap.text_pieces(m):
    if p.source.endswith(('router.scale', 'router.per_expert_scale')):
      continue  # renamed by the converter itself, not the map (conversion/gemma.py)
    want = names.get_name(p.source.removesuffix('.weight')) + '.weight'
    assert keymap.gguf_name(p.source) == want, p.source
