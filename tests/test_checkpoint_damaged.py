"""Damaged checkpoint files: truncated or corrupt safetensors and GGUF files, broken
config.json and bad dtypes raise a CheckpointError (or TypeError/ValueError for dtype)
naming the file and what is wrong, at open time, before any weight is read."""

import functools
import json
import os
import re
import struct

import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip('gguf')

import gemma4
from gemma4.checkpoints import gguf as gguf_ckpt
from gemma4.checkpoints import hf, keymap
from gemma4.checkpoints import safetensors as safetensors_ckpt
from gemma4.checkpoints.plan import CheckpointError
from gemma4.params import flatten

# These tests check the file -> official tree mapping, so float weights (quantize=None);
# int8 loads are tested in test_quant.py.
load_float = functools.partial(gemma4.load_checkpoint, quantize=None)
from tests.test_checkpoint_gguf import GEMMA3_META, _gemma3_tensors, _vocab, _write


# --- HF: a tiny hand-written directory ---------------------------------------------------

CONFIG = dict(model_type='gemma4_text', vocab_size=64, hidden_size=16, intermediate_size=32,
              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
              global_head_dim=8, layer_types=['sliding_attention', 'full_attention'],
              sliding_window=4, final_logit_softcapping=30.0)


def _tensors():
  out, offset = {}, 0
  for p in keymap.text_pieces(hf.config_from_hf(CONFIG)):
    n = int(np.prod(p.shape))
    out[p.source] = (offset + np.arange(n, dtype=np.float32)).reshape(p.shape)
    offset += n
  return out


def _header(tensors):
  header, offset = {'__metadata__': {'format': 'pt'}}, 0
  for name, x in tensors.items():
    header[name] = {'dtype': 'F32', 'shape': list(x.shape),
                    'data_offsets': [offset, offset + x.nbytes]}
    offset += x.nbytes
  return header


def _write_safetensors(file, tensors, header=None, length=None):
  """The safetensors format by hand: 8-byte header length, JSON header, raw data; `header`
  and `length` replace the true header and its declared length (to damage them)."""
  text = json.dumps(_header(tensors) if header is None else header).encode()
  with open(file, 'wb') as f:
    f.write((len(text) if length is None else length).to_bytes(8, 'little'))
    f.write(text)
    for x in tensors.values():
      f.write(x.tobytes())


def _hf_dir(path, config=None, **kw):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(config if isinstance(config, str) else json.dumps(CONFIG if config is None else config))
  tensors = _tensors()
  file = os.path.join(path, 'model.safetensors')
  _write_safetensors(file, tensors, **kw)
  return file, tensors


def _damaged(file, *parts):
  """A match pattern: the file's path, then each literal part, in order."""
  return '.*'.join(re.escape(p) for p in (str(file),) + parts)


def test_good_hand_written_directory_loads(tmp_path):
  file, src = _hf_dir(tmp_path)
  p = {k: np.asarray(v) for k, v in flatten(load_float(tmp_path).params).items()}
  assert np.array_equal(p['embedder/input_embedding'], src['model.embed_tokens.weight'])
  assert np.array_equal(p['layer_1/mlp/linear'], src['model.layers.1.mlp.down_proj.weight'].T)


def test_safetensors_truncated_data_names_tensor_and_extent(tmp_path):
  file, src = _hf_dir(tmp_path)
  size = os.path.getsize(file)
  last = list(src)[-1]
  with open(file, 'r+b') as f:
    f.truncate(size - 10)
  begin = size - src[last].nbytes
  with pytest.raises(CheckpointError, match=_damaged(
      file, f'truncated: tensor {last} needs bytes {begin}..{size}, the file has {size - 10}')):
    load_float(tmp_path)


def test_safetensors_truncated_far_lists_every_tensor_past_the_end(tmp_path):
  file, src = _hf_dir(tmp_path)
  with open(file, 'r+b') as f:
    f.truncate(os.path.getsize(file) // 2)
  with pytest.raises(CheckpointError, match=r'problems\):') as e:
    safetensors_ckpt.SafetensorsFiles([file])
  assert str(file) in str(e.value) and f'truncated: tensor {list(src)[-1]}' in str(e.value)
  assert 'truncated: tensor model.embed_tokens.weight' not in str(e.value)  # it is whole


@pytest.mark.parametrize('field, value, what', [
    ('data_offsets', 'short', 'has 124 bytes'),
    ('data_offsets', [0.5, 8], 'field data_offsets [0.5, 8]'),
    ('data_offsets', [8, 0], 'data_offsets [8, 0]: it ends before it begins'),
    ('data_offsets', [0, 8, 16], 'field data_offsets [0, 8, 16]'),
    ('data_offsets', '0..8', "field data_offsets '0..8'"),
    ('shape', [-1, 16], 'field shape [-1, 16]'),
    ('shape', 16, 'field shape 16'),
    ('shape', [4, True], 'field shape [4, True]'),
    ('dtype', 'F8_FUN', "unsupported dtype 'F8_FUN'"),
    ('dtype', 7, 'unsupported dtype 7'),
])
def test_safetensors_corrupt_entry_names_tensor_and_field(tmp_path, field, value, what):
  tensors = _tensors()
  header = _header(tensors)
  name = 'model.norm.weight'  # 16 float32: 64 bytes
  if value == 'short':  # the length does not match the shape: 124 != 64
    begin = header[name]['data_offsets'][0]
    value = [begin, begin + 124]
  header[name][field] = value
  file, _ = _hf_dir(tmp_path, header=header)
  with pytest.raises(CheckpointError, match=_damaged(file, f'tensor {name}', what)):
    load_float(tmp_path)


@pytest.mark.parametrize('field', ['dtype', 'shape', 'data_offsets'])
def test_safetensors_entry_missing_a_field(tmp_path, field):
  header = _header(_tensors())
  del header['model.norm.weight'][field]
  file, _ = _hf_dir(tmp_path, header=header)
  with pytest.raises(CheckpointError,
                     match=_damaged(file, f'tensor model.norm.weight has no field {field}')):
    safetensors_ckpt.SafetensorsFiles([file])


def test_safetensors_entry_not_an_object(tmp_path):
  header = _header(_tensors())
  header['model.norm.weight'] = [1, 2]
  file, _ = _hf_dir(tmp_path, header=header)
  with pytest.raises(CheckpointError, match=_damaged(file, 'tensor model.norm.weight is [1, 2]')):
    safetensors_ckpt.SafetensorsFiles([file])


@pytest.mark.parametrize('length, what', [
    (1 << 62, 'the header length 4611686018427387904 is absurd'),
    (2**64 - 1, 'is absurd'),
    (50_000_000, 'truncated: the header needs bytes 8..50000008, the file has'),
])
def test_safetensors_header_length_is_checked_before_reading(tmp_path, length, what):
  file, _ = _hf_dir(tmp_path, length=length)
  with pytest.raises(CheckpointError, match=_damaged(file, what)):  # never a MemoryError
    load_float(tmp_path)


@pytest.mark.parametrize('header, what', [
    ('not json', 'the header is not JSON'),
    ([1, 2, 3], 'the header is a JSON list, expected an object'),
    (7, 'the header is a JSON int'),
])
def test_safetensors_header_not_a_json_object(tmp_path, header, what):
  file = tmp_path / 'model.safetensors'
  text = header.encode() if isinstance(header, str) else json.dumps(header).encode()
  file.write_bytes(len(text).to_bytes(8, 'little') + text)
  with pytest.raises(CheckpointError, match=_damaged(file, what)):
    safetensors_ckpt.SafetensorsFiles([str(file)])


def test_safetensors_header_cut_inside_and_short_file(tmp_path):
  file, _ = _hf_dir(tmp_path)
  n = int.from_bytes(open(file, 'rb').read(8), 'little')
  with open(file, 'r+b') as f:
    f.truncate(8 + n // 2)
  with pytest.raises(CheckpointError, match=_damaged(file, f'the header needs bytes 8..{8 + n}')):
    load_float(tmp_path)
  with open(file, 'r+b') as f:
    f.truncate(5)
  with pytest.raises(CheckpointError, match=_damaged(file, 'too short')):
    load_float(tmp_path)


def test_safetensors_every_truncation_is_a_checkpoint_error(tmp_path):
  file, _ = _hf_dir(tmp_path)
  good = open(file, 'rb').read()
  for n in list(range(0, 400, 7)) + list(range(400, len(good), 997)):
    with open(file, 'wb') as f:
      f.write(good[:n])
    with pytest.raises(CheckpointError, match=re.escape(str(file))):
      safetensors_ckpt.SafetensorsFiles([file])


def test_shard_index_without_weight_map(tmp_path):
  _hf_dir(tmp_path)
  index = tmp_path / 'model.safetensors.index.json'
  index.write_text('{"metadata": {}}')
  with pytest.raises(CheckpointError, match=_damaged(index, 'field weight_map')):
    load_float(tmp_path)
  index.write_text('{"weight_map": ')
  with pytest.raises(CheckpointError, match=_damaged(index, 'is not readable JSON')):
    load_float(tmp_path)


def test_safetensors_without_tensors(tmp_path):
  _hf_dir(tmp_path, header={'__metadata__': {}})
  with pytest.raises(CheckpointError, match=_damaged(tmp_path, 'hold no tensors')):
    load_float(tmp_path)


# --- config.json -------------------------------------------------------------------------

@pytest.mark.parametrize('text, what', [
    ('[1, 2]', 'holds a JSON list, expected an object'),
    ('42', 'holds a JSON int'),
    ('"gemma"', 'holds a JSON str'),
    ('{"model_type": ', 'is not readable JSON'),
])
def test_config_not_a_json_object(tmp_path, text, what):
  _hf_dir(tmp_path, config=text)
  with pytest.raises(CheckpointError, match=_damaged(tmp_path / 'config.json', what)):
    load_float(tmp_path)


@pytest.mark.parametrize('field', ['num_hidden_layers', 'hidden_size', 'num_attention_heads',
                                   'num_key_value_heads', 'sliding_window', 'intermediate_size',
                                   'model_type'])
def test_config_missing_field(tmp_path, field):
  config = dict(CONFIG)
  del config[field]
  _hf_dir(tmp_path, config=config)
  with pytest.raises(CheckpointError,
                     match=_damaged(tmp_path / 'config.json', f'field {field} is missing')):
    load_float(tmp_path)


@pytest.mark.parametrize('field, value, what', [
    ('hidden_size', 'big', "field hidden_size is 'big' (str), expected an integer >= 1"),
    ('num_hidden_layers', 2.5, 'field num_hidden_layers is 2.5 (float)'),
    ('num_attention_heads', True, 'field num_attention_heads is True (bool)'),
    ('num_key_value_heads', 0, 'field num_key_value_heads is 0 (int), expected an integer >= 1'),
    ('sliding_window', None, 'field sliding_window is None'),
    ('final_logit_softcapping', 'yes',
     "field final_logit_softcapping is 'yes' (str), expected a number"),
    ('layer_types', 'sliding', "field layer_types is 'sliding' (str), expected a list"),
    ('layer_types', ['sliding_attention', 'bogus'], "layer_types has unknown layer types 'bogus'"),
    ('layer_types', ['full_attention'], 'layer_types has 1 entries but num_hidden_layers is 2'),
    ('rope_parameters', [1], 'field rope_parameters is [1] (list), expected a JSON object'),
    ('enable_moe_block', 'no', "field enable_moe_block is 'no' (str), expected true or false"),
])
def test_config_field_of_the_wrong_type(tmp_path, field, value, what):
  _hf_dir(tmp_path, config=dict(CONFIG, **{field: value}))
  with pytest.raises(CheckpointError, match=_damaged(tmp_path / 'config.json', what)):
    load_float(tmp_path)


def test_config_nested_text_config_names_the_section(tmp_path):
  text = dict(CONFIG)
  del text['hidden_size']
  _hf_dir(tmp_path, config={'model_type': 'gemma4', 'text_config': text})
  with pytest.raises(CheckpointError, match=_damaged(tmp_path / 'config.json',
                                                     'field text_config.hidden_size is missing')):
    load_float(tmp_path)
  _hf_dir(tmp_path, config={'model_type': 'gemma4', 'text_config': 3})
  with pytest.raises(CheckpointError, match=_damaged(tmp_path / 'config.json',
                                                     'field text_config is 3 (int)')):
    load_float(tmp_path)
  _hf_dir(tmp_path, config={'model_type': 'gemma4', 'text_config': CONFIG,
                            'vision_config': {'hidden_size': 'wide'}})
  with pytest.raises(CheckpointError, match=_damaged(tmp_path / 'config.json',
                                                     "vision_config.hidden_size is 'wide'")):
    load_float(tmp_path)


def test_config_from_hf_of_a_good_config_is_unchanged():
  """The typed reads give what the plain ones did (ints, floats, None for null)."""
  cfg = hf.config_from_hf(dict(CONFIG, final_logit_softcapping=None, head_dim=8.0,
                               num_kv_shared_layers=None, hidden_size_per_layer_input=None))
  assert (cfg.embed_dim, cfg.head_dim, cfg.num_layers, cfg.final_logit_softcap) == (16, 8, 2, None)
  assert isinstance(cfg.head_dim, int) and cfg.num_kv_shared_layers == 0
  assert cfg.per_layer_input_dim == 0 and cfg.global_head_dim == 8


# --- dtype -------------------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [jnp.int8, 'int32', np.bool_, 'float64', object(), 3])
def test_bad_dtype_is_refused_before_anything_is_read(tmp_path, dtype):
  with pytest.raises((TypeError, ValueError), match=r'dtype .*float32, bfloat16, float16') as e:
    load_float(tmp_path / 'does-not-exist', dtype=dtype)  # not FileNotFoundError
  assert repr(dtype) in str(e.value)


def test_float_dtypes_are_accepted(tmp_path):
  _hf_dir(tmp_path)
  for dtype in (jnp.float16, 'bfloat16', np.float32):
    ckpt = load_float(tmp_path, dtype=dtype)
    assert ckpt.params['layer_0']['attn']['q_einsum']['w'].dtype == jnp.dtype(dtype)


# --- GGUF --------------------------------------------------------------------------------

@pytest.fixture
def gemma3_gguf(tmp_path):
  import dataclasses
  cfg = dataclasses.replace(
      gguf_ckpt._gemma3_config({f'gemma3.{k}': v for k, v in GEMMA3_META.items()}), vocab_size=320)
  tensors = _gemma3_tensors(cfg, 320)
  path = tmp_path / 'tiny-gemma3.gguf'
  _write(path, 'gemma3', GEMMA3_META, tensors,
         quant={'blk.1.ffn_up.weight': gguf.GGMLQuantizationType.Q8_0})
  return path, tensors


def _entry_at(data: bytes, name: str) -> int:
  """Where tensor `name`'s entry in the tensor table starts (its name's length field)."""
  key = len(name).to_bytes(8, 'little') + name.encode()
  i = data.rfind(key)
  assert i > 0
  return i


def _patch(path, at: int, fmt: str, value):
  with open(path, 'r+b') as f:
    f.seek(at)
    f.write(struct.pack(fmt, value))


def test_gguf_truncated_data_names_the_tensor(gemma3_gguf):
  path, _ = gemma3_gguf
  reader = gguf_ckpt.open_reader(path)
  last = max(reader.tensors, key=lambda t: t.offset)
  size = os.path.getsize(path)
  assert last.offset + last.nbytes == size
  with open(path, 'r+b') as f:
    f.truncate(size - 3)
  with pytest.raises(CheckpointError, match=_damaged(
      path, f'truncated: tensor {last.name} needs bytes {last.offset}..{size}, '
      f'the file has {size - 3}')):
    load_float(path)


def test_gguf_truncated_in_the_metadata_names_the_key(gemma3_gguf):
  path, _ = gemma3_gguf
  good = path.read_bytes()
  key = b'gemma3.context_length'
  at = good.index(key) + len(key) + 4 + 2  # inside its uint32 value
  with open(path, 'r+b') as f:
    f.truncate(at)
  with pytest.raises(CheckpointError, match=_damaged(
      path, "truncated: metadata key 'gemma3.context_length': a uint32 value needs bytes "
      f'{at - 2}..{at + 2}, the file has {at}')):
    load_float(path)
  path.write_bytes(good)
  at = good.index(b'tokenizer.ggml.tokens') + 1000  # inside its array of strings
  with open(path, 'r+b') as f:
    f.truncate(at)
  with pytest.raises(CheckpointError, match=_damaged(
      path, "truncated or corrupt: metadata key 'tokenizer.ggml.tokens': 320 array strings",
      f'the file has {at}')):
    load_float(path)


def test_gguf_truncated_in_the_tensor_table_names_the_tensor(gemma3_gguf):
  path, _ = gemma3_gguf
  good = path.read_bytes()
  name = 'blk.2.attn_k.weight'
  dims_at = _entry_at(good, name) + 8 + len(name) + 4
  with open(path, 'r+b') as f:
    f.truncate(dims_at + 2 * 8 + 2)  # inside the type, after 2 dims
  with pytest.raises(CheckpointError, match=_damaged(
      path, f'truncated: tensor {name} (table entry',
      f'a uint32 value needs bytes {dims_at + 16}')):
    load_float(path)
  path.write_bytes(good[:dims_at + 2])  # inside the dims
  with pytest.raises(CheckpointError, match=_damaged(
      path, f'truncated or corrupt: tensor {name} (table entry', '2 dimensions need at least')):
    load_float(path)


def test_gguf_every_truncation_is_a_checkpoint_error(gemma3_gguf):
  path, _ = gemma3_gguf
  good = path.read_bytes()
  header_end = _entry_at(good, 'output_norm.weight') + 200
  cuts = list(range(4, header_end, 61)) + list(range(header_end, len(good), 4099))
  for n in cuts:
    path.write_bytes(good[:n])
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
      gguf_ckpt.open_reader(path)


def test_gguf_unknown_ggml_type(gemma3_gguf):
  path, _ = gemma3_gguf
  name = 'blk.0.attn_q.weight'
  at = _entry_at(path.read_bytes(), name) + 8 + len(name)
  _patch(path, at + 4 + 2 * 8, '<I', 99)  # 2 dims, then the type
  with pytest.raises(CheckpointError,
                     match=_damaged(path, f'tensor {name} has unknown ggml type id 99')):
    load_float(path)


def test_gguf_tensor_offset_past_the_end(gemma3_gguf):
  path, _ = gemma3_gguf
  name = 'blk.0.attn_q.weight'
  at = _entry_at(path.read_bytes(), name) + 8 + len(name)
  _patch(path, at + 4 + 2 * 8 + 4, '<Q', 1 << 40)
  with pytest.raises(CheckpointError,
                     match=_damaged(path, f'truncated: tensor {name} needs bytes')):
    load_float(path)


@pytest.mark.parametrize('at, what', [(8, 'tensors (n_tensors) need at least'),
                                      (16, 'metadata entries (n_kv) need at least')])
def test_gguf_absurd_counts_are_not_allocated(gemma3_gguf, at, what):
  path, _ = gemma3_gguf
  _patch(path, at, '<Q', 1 << 62)
  with pytest.raises(CheckpointError, match=_damaged(path, what)):
    load_float(path)


def test_gguf_absurd_array_and_string_lengths(gemma3_gguf, tmp_path):
  path, _ = gemma3_gguf
  good = path.read_bytes()
  key = b'tokenizer.ggml.tokens'
  count_at = good.index(key) + len(key) + 4 + 4  # value type 9, item type 8, then the count
  _patch(path, count_at, '<Q', 1 << 61)
  with pytest.raises(CheckpointError, match=_damaged(
      path, "metadata key 'tokenizer.ggml.tokens'", 'array strings need at least')):
    load_float(path)
  path.write_bytes(good)
  _patch(path, count_at + 8, '<Q', 1 << 62)  # the first token's length
  with pytest.raises(CheckpointError, match=_damaged(
      path, "truncated: metadata key 'tokenizer.ggml.tokens'", f'a string of {1 << 62} bytes')):
    load_float(path)
  path.write_bytes(good)
  _patch(path, 24, '<Q', 1 << 62)  # the first key's length
  with pytest.raises(CheckpointError, match=_damaged(path, 'truncated: metadata entry 0')):
    load_float(path)
  path.write_bytes(good)
  key = b'tokenizer.ggml.scores'
  _patch(path, good.index(key) + len(key) + 4 + 4, '<Q', 1 << 60)  # float32 array count
  with pytest.raises(CheckpointError, match=_damaged(path, "metadata key 'tokenizer.ggml.scores'",
                                                     'an array of')):
    load_float(path)


def test_gguf_unknown_value_type(gemma3_gguf):
  path, _ = gemma3_gguf
  key = b'gemma3.block_count'
  _patch(path, path.read_bytes().index(key) + len(key), '<I', 77)
  with pytest.raises(CheckpointError, match=_damaged(
      path, "metadata key 'gemma3.block_count': unknown GGUF value type 77")):
    load_float(path)


@pytest.mark.parametrize('key', ['embedding_length', 'block_count', 'attention.head_count',
                                 'feed_forward_length', 'attention.sliding_window'])
def test_gguf_missing_metadata_key(tmp_path, gemma3_gguf, key):
  _, tensors = gemma3_gguf
  meta = {k: v for k, v in GEMMA3_META.items() if k != key}
  path = tmp_path / 'missing.gguf'
  _write(path, 'gemma3', meta, tensors)
  with pytest.raises(CheckpointError,
                     match=_damaged(path, f'metadata key gemma3.{key} is missing')):
    load_float(path)


def test_gguf_metadata_key_of_the_wrong_type(tmp_path, gemma3_gguf):
  _, tensors = gemma3_gguf
  path = tmp_path / 'typed.gguf'
  _write(path, 'gemma3', dict(GEMMA3_META, embedding_length=[64, 64]), tensors)
  with pytest.raises(CheckpointError, match=_damaged(
      path, 'metadata key gemma3.embedding_length is', 'expected an integer >= 1')):
    load_float(path)


def test_gguf4_per_layer_array_of_the_wrong_length(tmp_path):
  meta = {'gemma4.block_count': 3, 'gemma4.attention.head_count_kv': np.array([1, 1], np.uint32),
          'gemma4.feed_forward_length': 32, 'gemma4.attention.key_length': 16,
          'gemma4.embedding_length': 16, 'gemma4.attention.head_count': 2,
          'gemma4.attention.sliding_window': 4}
  with pytest.raises(CheckpointError, match=_damaged(
      'f.gguf', 'metadata key gemma4.attention.head_count_kv has 2 entries but block_count is 3')):
    gguf_ckpt._gemma4_config(meta, None, set(), 'f.gguf')
  meta['gemma4.attention.head_count_kv'] = 0
  with pytest.raises(CheckpointError, match=_damaged(
      'f.gguf', 'metadata key gemma4.attention.head_count_kv is 0, expected values >= 1')):
    gguf_ckpt._gemma4_config(meta, None, set(), 'f.gguf')
  meta['gemma4.attention.head_count_kv'] = ['a', 'b', 'c']
  with pytest.raises(CheckpointError, match=_damaged(
      'f.gguf', 'head_count_kv is an array of 3, expected a number or an array of 3')):
    gguf_ckpt._gemma4_config(meta, None, set(), 'f.gguf')


def test_good_gguf_still_loads(gemma3_gguf):
  path, src = gemma3_gguf
  p = flatten(load_float(path).params)
  assert np.array_equal(np.asarray(p['embedder/input_embedding']), src['token_embd.weight'])



def test_gguf_tokenizer_arrays_of_the_wrong_length(tmp_path, gemma3_gguf):
  _, tensors = gemma3_gguf
  tokens, scores, types = _vocab(320)
  path = tmp_path / 'vocab.gguf'
  _write(path, 'gemma3', GEMMA3_META, tensors, vocab=(tokens, scores[:10], types))
  with pytest.raises(CheckpointError, match=_damaged(
      path, 'metadata key tokenizer.ggml.scores has 10 entries but tokenizer.ggml.tokens has 320')):
    load_float(path)
