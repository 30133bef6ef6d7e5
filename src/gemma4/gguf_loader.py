"""GGUF files (llama.cpp's format): config, dequantized weights and the tokenizer.

Architectures `gemma3` and `gemma4`. Every quantization type the `gguf` package knows is
dequantized with it (NumPy), row block by row block. A GGUF file does not record some
Gemma constants (REFERENCE section 6): the local RoPE base, the layer pattern, the
attention scale and, for Gemma 3, the global RoPE scale; they come from the preset whose
shape matches the file, or from the Gemma defaults when none does.
"""

from __future__ import annotations

import dataclasses
import mmap
import os

import numpy as np

from gemma4 import config as _config
from gemma4 import loading
from gemma4.config import GLOBAL, LOCAL, TransformerConfig
from gemma4.loading import CheckpointError, Piece
from gemma4.tokenizer import (CONTROL, USER_DEFINED, Gemma3Tokenizer, Gemma4Tokenizer,
                              sentencepiece_proto)

ARCHITECTURES = ('gemma3', 'gemma4')


def _gguf():
  try:
    import gguf
  except ImportError as e:  # a dependency; only a broken install gets here
    raise ImportError('reading GGUF files needs the `gguf` package: pip install gguf') from e
  return gguf


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  name: str
  shape: tuple[int, ...]  # torch order ([out, in]): GGUF lists dims fastest-first
  ggml_type: int
  offset: int  # from the start of the file
  nbytes: int


class GGUFFile:
  """The metadata and tensor table of a GGUF file (format version 2 or 3).

  Parsed here rather than with gguf.GGUFReader, which builds one NumPy view per
  vocabulary entry (685 MiB resident for the default model's file, against 33 MiB here:
  bench/gguf_reader_memory.txt); the data stays on disk
  behind a read-only memory map. Quantized blocks are decoded by the gguf package.
  """

  _SCALARS = {0: '<u1', 1: '<i1', 2: '<u2', 3: '<i2', 4: '<u4', 5: '<i4', 6: '<f4', 7: '?',
              10: '<u8', 11: '<i8', 12: '<f8'}

  def __init__(self, path: str):
    self.path = path
    self.data = np.memmap(path, np.uint8, 'r')
    if bytes(self.data[:4]) != b'GGUF':
      raise ValueError(f'{path!r} is not a GGUF file (it does not start with b"GGUF")')
    self._pos = 4
    version = int(self._scalar(4))
    if version not in (2, 3):
      raise ValueError(f'{path!r}: GGUF version {version} is not supported (expected 2 or 3)')
    n_tensors, n_kv = int(self._scalar(10)), int(self._scalar(10))
    self.fields: dict = {}
    for _ in range(n_kv):
      key = self._string()
      self.fields[key] = self._value(int(self._scalar(4)))
    infos = []
    for _ in range(n_tensors):
      name = self._string()
      dims = [int(self._scalar(10)) for _ in range(int(self._scalar(4)))]
      infos.append((name, tuple(reversed(dims)), int(self._scalar(4)), int(self._scalar(10))))
    align = int(self.fields.get('general.alignment', 32))
    start = self._pos + (-self._pos) % align
    gguf = _gguf()
    self.tensors = []
    for name, shape, kind, offset in infos:
      block, size = gguf.constants.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
      n = int(np.prod(shape))
      self.tensors.append(TensorInfo(name, shape, kind, start + offset, n // block * size))

  def _scalar(self, kind: int):
    dt = np.dtype(self._SCALARS[kind])
    value = self.data[self._pos:self._pos + dt.itemsize].view(dt)[0]
    self._pos += dt.itemsize
    return value

  def _string(self) -> str:
    n = int(self._scalar(10))
    text = bytes(self.data[self._pos:self._pos + n]).decode('utf-8', errors='replace')
    self._pos += n
    return text

  def _value(self, kind: int):
    if kind == 8:
      return self._string()
    if kind == 9:
      item, n = int(self._scalar(4)), int(self._scalar(10))
      if item == 8:
        return [self._string() for _ in range(n)]
      if item == 9:
        return [self._value(9) for _ in range(n)]
      dt = np.dtype(self._SCALARS[item])
      arr = np.array(self.data[self._pos:self._pos + n * dt.itemsize].view(dt))
      self._pos += n * dt.itemsize
      return arr
    value = self._scalar(kind)
    return bool(value) if kind == 7 else value.item()

  def release(self) -> None:
    """Drops the pages read so far (file-backed; they are read again if needed)."""
    mm = getattr(self.data, '_mmap', None)
    if mm is not None:
      mm.madvise(mmap.MADV_DONTNEED)


def open_reader(path: str | os.PathLike) -> GGUFFile:
  """The parsed GGUF file, or a clear error for a missing or non-GGUF file."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'GGUF file not found: {path!r}')
  try:
    return GGUFFile(path)
  except (IndexError, KeyError, UnicodeDecodeError) as e:
    raise ValueError(f'{path!r} is a truncated or corrupt GGUF file ({type(e).__name__}: {e})') from e


def metadata(reader: GGUFFile) -> dict:
  """The key-value metadata, the vocabulary arrays left out."""
  return {k: v for k, v in reader.fields.items()
          if not (k.startswith('tokenizer.ggml.')
                  and k[15:] in ('tokens', 'scores', 'token_type', 'merges'))}


def architecture(meta: dict, path) -> str:
  arch = meta.get('general.architecture')
  if arch not in ARCHITECTURES:
    raise ValueError(f'{os.fspath(path)!r}: GGUF architecture {arch!r} is not supported '
                     f'(expected one of {", ".join(ARCHITECTURES)})')
  return arch


def _gemma3_config(meta: dict) -> TransformerConfig:
  g = lambda k, default=None: meta.get(f'gemma3.{k}', default)
  d, n_layers = int(g('embedding_length')), int(g('block_count'))
  heads, kv = int(g('attention.head_count')), int(g('attention.head_count_kv'))
  head_dim = int(g('attention.key_length', d // heads))
  file_cfg = dict(embed_dim=d, hidden_dim=int(g('feed_forward_length')), num_heads=heads,
                  num_kv_heads=kv, head_dim=head_dim,
                  sliding_window=int(g('attention.sliding_window')),
                  global_rope_base=float(g('rope.freq_base', 1_000_000.0)))
  for preset in _config.PRESETS.values():
    if (preset.family == 'gemma3' and preset.num_layers == n_layers
        and all(getattr(preset, k) == v for k, v in file_cfg.items())):
      return preset
  # Not a published size: the Gemma 3 constants a GGUF file leaves out, as engines do.
  return dataclasses.replace(
      _config._gemma3(d, file_cfg['hidden_dim'], heads, kv, n_layers,
                      file_cfg['sliding_window'], head_dim=head_dim), **file_cfg)


def config_from_reader(reader, meta: dict, path='GGUF file') -> TransformerConfig:
  arch = architecture(meta, path)
  if arch == 'gemma3':
    return _gemma3_config(meta)
  names = {t.name for t in reader.tensors}
  freqs = GGUFTensors(reader).read('rope_freqs.weight') if 'rope_freqs.weight' in names else None
  return _gemma4_config(meta, freqs, names)


def _per_layer(value, n: int) -> list:
  return list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * n


def _gemma4_config(meta: dict, rope_freqs: np.ndarray | None,
                   tensor_names: set[str]) -> TransformerConfig:
  """The config of a llama.cpp `gemma4` file (keys as convert_hf_to_gguf.py writes them).

  rope_freqs: the file's rope_freqs tensor (the global layers' partial rotation), if any.
  tensor_names: the file's tensors; global layers without attn_v use K as V.
  """
  g = lambda k, default=None: meta.get(f'gemma4.{k}', default)
  n = int(g('block_count'))
  pattern = _per_layer(g('attention.sliding_window_pattern', True), n)
  kinds = tuple(LOCAL if bool(s) else GLOBAL for s in pattern)
  first_global = kinds.index(GLOBAL) if GLOBAL in kinds else None
  kv = _per_layer(g('attention.head_count_kv'), n)
  ffw = _per_layer(g('feed_forward_length'), n)
  head_dim = int(g('attention.key_length_swa', g('attention.key_length')))
  global_dim = int(g('attention.key_length'))
  local_kv = int(kv[kinds.index(LOCAL)]) if LOCAL in kinds else int(kv[0])
  global_kv = int(kv[first_global]) if first_global is not None else local_kv
  global_prop = 1.0
  if rope_freqs is not None:  # 1.0 for rotated frequencies, 1e30 for the rest
    global_prop = float(np.sum(rope_freqs < 2.0)) / (global_dim // 2)
  n_shared = int(g('attention.shared_kv_layers', 0))
  k_eq_v = first_global is not None and f'blk.{first_global}.attn_v.weight' not in tensor_names
  experts = int(g('expert_count', 0) or 0)
  cfg = TransformerConfig(
      vocab_size=262144, embed_dim=int(g('embedding_length')), hidden_dim=int(ffw[0]),
      num_heads=int(g('attention.head_count')), num_kv_heads=local_kv, head_dim=head_dim,
      global_head_dim=global_dim, num_global_kv_heads=global_kv if global_kv != local_kv else None,
      k_eq_v_global=k_eq_v, layer_types=kinds,
      sliding_window=int(g('attention.sliding_window')),
      local_rope_base=float(g('rope.freq_base_swa', 10_000.0)),
      global_rope_base=float(g('rope.freq_base', 1_000_000.0)),
      local_rope_proportion=float(g('rope.dimension_count_swa', head_dim)) / head_dim,
      global_rope_proportion=global_prop,
      final_logit_softcap=float(g('final_logit_softcapping', 30.0)),
      per_layer_input_dim=int(g('embedding_length_per_layer_input', 0) or 0),
      num_kv_shared_layers=n_shared,
      kv_shared_hidden_dim=int(ffw[-1]) if n_shared and ffw[-1] != ffw[0] else None,
      num_experts=experts, expert_dim=int(g('expert_feed_forward_length', 0) or 0) if experts else 0,
      top_k_experts=int(g('expert_used_count', 0) or 0) if experts else 0)
  # What a GGUF file does not say (bidirectional vision attention, the encoders) comes
  # from the preset of the same shape.
  found = _config.matching_preset(cfg)
  return found[1] if found else cfg


# --- tensors -------------------------------------------------------------------------

def _minus_one(x):  # Gemma 3 GGUF norms store 1 + w; the official tree stores w
  return x - np.float32(1.0)


def pieces(cfg: TransformerConfig) -> list[Piece]:
  """Where each tensor of a llama.cpp file goes: the HF key map with llama.cpp names.
  The converter writes every text tensor in transformers' own shape; for Gemma 3 it adds
  the 1 of the (1 + w) norm scale to every norm weight, which is taken off here."""
  from gemma4 import hf_loader
  out = [dataclasses.replace(p, source=gguf_name(p.source)) for p in hf_loader.text_pieces(cfg)]
  if cfg.norm_offset:  # every '/scale' of a Gemma 3 tree is a norm (no skip scale)
    out = [dataclasses.replace(p, fn=_minus_one) if p.target.endswith('/scale') else p
           for p in out]
  return out


class GGUFTensors(loading.Reader):
  """Row blocks of the tensors of a GGUF file, dequantized to float32."""

  def __init__(self, reader: GGUFFile):
    self._gguf = _gguf()
    self.reader = reader
    self.tensors = {t.name: t for t in reader.tensors}

  def shapes(self):
    return {name: t.shape for name, t in self.tensors.items()}

  def read(self, name, start=None, stop=None):
    t = self.tensors[name]
    kind = self._gguf.GGMLQuantizationType(t.ggml_type)
    rows = t.shape[0] if len(t.shape) > 1 else 1
    row_bytes = t.nbytes // rows
    start, stop = (0, rows) if start is None else (start, min(stop, rows))
    raw = self.reader.data[t.offset + start * row_bytes:t.offset + stop * row_bytes]
    if kind == self._gguf.GGMLQuantizationType.F32:
      out = np.array(raw.view(np.float32))
    elif kind == self._gguf.GGMLQuantizationType.F16:
      out = raw.view(np.float16).astype(np.float32)
    else:
      out = self._gguf.quants.dequantize(np.asarray(raw).reshape(stop - start, row_bytes), kind)
    return out.reshape(t.shape if len(t.shape) == 1 else (stop - start,) + t.shape[1:])

  def release(self):
    self.reader.release()


# --- tokenizer -----------------------------------------------------------------------

def tokenizer_from_reader(reader, arch: str, path) -> Gemma4Tokenizer:
  fields = reader.fields
  if 'tokenizer.ggml.tokens' not in fields:
    raise ValueError(f'{os.fspath(path)!r} carries no tokenizer (tokenizer.ggml.tokens)')
  model = fields.get('tokenizer.ggml.model')
  if model != 'llama':
    raise ValueError(f'{os.fspath(path)!r}: tokenizer model {model!r} is not SentencePiece '
                     '("llama")')
  tokens = fields['tokenizer.ggml.tokens']
  n = len(tokens)
  scores = fields.get('tokenizer.ggml.scores', np.zeros(n, np.float32))
  types = np.asarray(fields.get('tokenizer.ggml.token_type', np.ones(n)), np.int64)
  ids = {k: int(fields[f'tokenizer.ggml.{k}_token_id'])
         for k in ('unknown', 'bos', 'eos', 'padding') if f'tokenizer.ggml.{k}_token_id' in fields}
  # llama.cpp marks every HF "special" token CONTROL, turn markers included; in Gemma's
  # SentencePiece model they are user-defined pieces, which text like '<start_of_turn>'
  # encodes to. Keep CONTROL only for the ids SentencePiece itself reserves.
  reserved = {ids.get('unknown', 3), ids.get('bos', 2), ids.get('eos', 1), ids.get('padding', 0)}
  types = np.where((types == CONTROL) & ~np.isin(np.arange(len(types)), list(reserved)),
                   USER_DEFINED, types)
  # llama.cpp writes the user-defined whitespace runs ('  ', '   ', ...) with plain
  # spaces; SentencePiece matches pieces against text whose spaces are escaped to U+2581.
  tokens = [t.replace(' ', '\u2581') for t in tokens]
  proto = sentencepiece_proto(tokens, scores, types.tolist(), unk_id=ids.get('unknown', 3),
                              bos_id=ids.get('bos', 2), eos_id=ids.get('eos', 1),
                              pad_id=ids.get('padding', 0))
  cls = Gemma3Tokenizer if arch == 'gemma3' else Gemma4Tokenizer
  return cls(proto=proto)


def load_tokenizer(path) -> Gemma4Tokenizer:
  reader = open_reader(path)
  return tokenizer_from_reader(reader, architecture(metadata(reader), path), path)


def load(path, model=None, dtype=None, progress: bool | None = None):
  """(model, params, tokenizer) from a GGUF file; see `gemma4.load_checkpoint`."""
  reader = open_reader(path)
  meta = metadata(reader)
  arch = architecture(meta, path)
  tokenizer = tokenizer_from_reader(reader, arch, path)
  cfg = config_from_reader(reader, meta, path)
  embed = next((t for t in reader.tensors if t.name == 'token_embd.weight'), None)
  if embed is None:
    raise CheckpointError(f'{os.fspath(path)!r} has no token_embd.weight')
  rows = int(embed.shape[0])
  if rows != cfg.vocab_size:
    cfg = dataclasses.replace(cfg, vocab_size=rows)
  if tokenizer.vocab_size != rows:
    raise CheckpointError(f'{os.fspath(path)!r}: its tokenizer has {tokenizer.vocab_size} '
                          f'pieces but token_embd.weight has {rows} rows')
  model = loading.resolve_model(cfg, model, dtype, np.float32, f'{arch}_gguf', path)
  from gemma4 import hf_loader
  dropped = {'rope_freqs.weight': 'read into the config (partial RoPE)'}
  params = loading.fill(GGUFTensors(reader), pieces(cfg), loading.target_shapes(model.param_specs()),
                        model.dtype, dropped=dropped, unused=hf_loader.unused_params(cfg),
                        what=f'GGUF file {os.path.basename(os.fspath(path))}',
                        progress=progress)
  return model, params, tokenizer


# transformers name (after 'model.') -> llama.cpp name, for the Gemma 3 and 4 text tensors.
_NAMES = {
    'embed_tokens.weight': 'token_embd.weight',
    'norm.weight': 'output_norm.weight',
    'embed_tokens_per_layer.weight': 'per_layer_token_embd.weight',
    'per_layer_model_projection.weight': 'per_layer_model_proj.weight',
    'per_layer_projection_norm.weight': 'per_layer_proj_norm.weight',
}
_LAYER_NAMES = {
    'input_layernorm.weight': 'attn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight',
    'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight',
    'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.q_norm.weight': 'attn_q_norm.weight',
    'self_attn.k_norm.weight': 'attn_k_norm.weight',
    'post_attention_layernorm.weight': 'post_attention_norm.weight',
    'pre_feedforward_layernorm.weight': 'ffn_norm.weight',
    'post_feedforward_layernorm.weight': 'post_ffw_norm.weight',
    'pre_feedforward_layernorm_2.weight': 'pre_ffw_norm_2.weight',
    'post_feedforward_layernorm_1.weight': 'post_ffw_norm_1.weight',
    'post_feedforward_layernorm_2.weight': 'post_ffw_norm_2.weight',
    'mlp.gate_proj.weight': 'ffn_gate.weight',
    'mlp.up_proj.weight': 'ffn_up.weight',
    'mlp.down_proj.weight': 'ffn_down.weight',
    'layer_scalar': 'layer_output_scale.weight',
    'per_layer_input_gate.weight': 'inp_gate.weight',
    'per_layer_projection.weight': 'proj.weight',
    'post_per_layer_input_norm.weight': 'post_norm.weight',
    'router.proj.weight': 'ffn_gate_inp.weight',
    'router.scale': 'ffn_gate_inp.scale',
    'router.per_expert_scale': 'ffn_down_exps.scale',
    'experts.gate_up_proj': 'ffn_gate_up_exps.weight',
    'experts.down_proj': 'ffn_down_exps.weight',
}


def gguf_name(hf_name: str) -> str:
  """The llama.cpp name of a transformers Gemma 3/4 text tensor ('model.layers.3.…')."""
  name = hf_name.removeprefix('model.language_model.').removeprefix('model.')
  if name in _NAMES:
    return _NAMES[name]
  _, layer, rest = name.split('.', 2)
  return f'blk.{layer}.{_LAYER_NAMES[rest]}'
