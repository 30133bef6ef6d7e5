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


def open_reader(path: str | os.PathLike):
  """A gguf.GGUFReader, or a clear error for a missing or non-GGUF file."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'GGUF file not found: {path!r}')
  with open(path, 'rb') as f:
    if f.read(4) != b'GGUF':
      raise ValueError(f'{path!r} is not a GGUF file (it does not start with b"GGUF")')
  return _gguf().GGUFReader(path, 'r')


def metadata(reader) -> dict:
  """The key-value metadata, token arrays left out, as Python values."""
  out = {}
  for key, field in reader.fields.items():
    if key.startswith('tokenizer.ggml.') and key[15:] in ('tokens', 'scores', 'token_type',
                                                          'merges'):
      continue
    out[key] = field.contents()
  return out


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
                  global_rope_base=float(g('rope.freq_base', 1_000_000.0)),
                  vocab_size=len(meta.get('_tokens', ())) or 262144)
  for key, preset in _config.PRESETS.items():
    if (preset.family == 'gemma3' and preset.num_layers == n_layers
        and all(getattr(preset, k) == v for k, v in file_cfg.items() if k != 'vocab_size')):
      return preset
  # Not a published size: the Gemma 3 constants a GGUF file leaves out, as engines do.
  return dataclasses.replace(
      _config._gemma3(d, file_cfg['hidden_dim'], heads, kv, n_layers,
                      file_cfg['sliding_window'], head_dim=head_dim), **file_cfg)


def config_from_metadata(meta: dict, path='GGUF file') -> TransformerConfig:
  arch = architecture(meta, path)
  if arch == 'gemma3':
    return _gemma3_config(meta)
  return _gemma4_config(meta)


def _gemma4_config(meta: dict) -> TransformerConfig:
  raise NotImplementedError('gemma4 GGUF files are not supported yet')


# --- tensors -------------------------------------------------------------------------

def _minus_one(x):  # Gemma 3 GGUF norms store 1 + w; the official tree stores w
  return x - np.float32(1.0)


def _q(n, h, d):  # [N*H, D] -> [N, D, H]
  return lambda x: x.reshape(n, h, d).transpose(0, 2, 1)


def _kv(k, h, d):  # [K*H, D] -> [K, D, H]
  return lambda x: x.reshape(k, h, d).transpose(0, 2, 1)


def _out(n, h, d):  # [D, N*H] -> [N, H, D]
  return lambda x: x.reshape(d, n, h).transpose(1, 2, 0)


def _t(x):
  return x.T


def gemma3_pieces(cfg: TransformerConfig) -> list[Piece]:
  """Where each tensor of a llama.cpp `gemma3` file goes in the official Gemma 3 tree.

  llama.cpp stores a torch weight [out, in] as [out, in] rows; norms include the +1.
  """
  d, n, k, h, f = cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.hidden_dim
  q_norm, k_norm = cfg.qk_norm_names
  pieces = [Piece('token_embd.weight', (cfg.vocab_size, d), 'embedder/input_embedding',
                  rows=True),
            Piece('output_norm.weight', (d,), 'final_norm/scale', fn=_minus_one)]
  for i in range(cfg.num_layers):
    b, t = f'blk.{i}.', f'layer_{i}/'
    pieces += [
        Piece(b + 'attn_norm.weight', (d,), t + 'pre_attention_norm/scale', fn=_minus_one),
        Piece(b + 'attn_q.weight', (n * h, d), t + 'attn/q_einsum/w', fn=_q(n, h, d)),
        Piece(b + 'attn_k.weight', (k * h, d), t + 'attn/kv_einsum/w', (0,), _kv(k, h, d)),
        Piece(b + 'attn_v.weight', (k * h, d), t + 'attn/kv_einsum/w', (1,), _kv(k, h, d)),
        Piece(b + 'attn_output.weight', (d, n * h), t + 'attn/attn_vec_einsum/w',
              fn=_out(n, h, d)),
        Piece(b + 'attn_q_norm.weight', (h,), t + f'attn/{q_norm}/scale', fn=_minus_one),
        Piece(b + 'attn_k_norm.weight', (h,), t + f'attn/{k_norm}/scale', fn=_minus_one),
        Piece(b + 'post_attention_norm.weight', (d,), t + 'post_attention_norm/scale',
              fn=_minus_one),
        Piece(b + 'ffn_norm.weight', (d,), t + 'pre_ffw_norm/scale', fn=_minus_one),
        Piece(b + 'ffn_gate.weight', (f, d), t + 'mlp/gating_einsum', (0,)),
        Piece(b + 'ffn_up.weight', (f, d), t + 'mlp/gating_einsum', (1,)),
        Piece(b + 'ffn_down.weight', (d, f), t + 'mlp/linear', fn=_t),
        Piece(b + 'post_ffw_norm.weight', (d,), t + 'post_ffw_norm/scale', fn=_minus_one),
    ]
  return pieces


class GGUFTensors(loading.Reader):
  """Row blocks of the tensors of a GGUF file, dequantized to float32."""

  def __init__(self, reader):
    self._gguf = _gguf()
    self.reader = reader
    self.tensors = {t.name: t for t in reader.tensors}

  def shapes(self):
    # GGUF lists dims fastest-first; the arrays are laid out as torch's [out, in].
    return {name: tuple(int(s) for s in reversed(t.shape)) for name, t in self.tensors.items()}

  def read(self, name, start=None, stop=None):
    t = self.tensors[name]
    shape = tuple(int(s) for s in reversed(t.shape))
    data = t.data
    if start is not None:
      data = data[start:stop]
    kind = self._gguf.GGMLQuantizationType
    if t.tensor_type in (kind.F32, kind.F16):
      out = np.asarray(data, np.float32)
    else:
      out = self._gguf.quants.dequantize(np.asarray(data), t.tensor_type)
    rows = out.shape[0] if start is not None else shape[0]
    return out.reshape((rows,) + shape[1:])

  def release(self):
    mm = getattr(self.reader.data, '_mmap', None)
    if mm is not None and hasattr(mm, 'madvise'):
      mm.madvise(mmap.MADV_DONTNEED)


# --- tokenizer -----------------------------------------------------------------------

def tokenizer_from_reader(reader, arch: str, path) -> Gemma4Tokenizer:
  fields = reader.fields
  if 'tokenizer.ggml.tokens' not in fields:
    raise ValueError(f'{os.fspath(path)!r} carries no tokenizer (tokenizer.ggml.tokens)')
  model = fields['tokenizer.ggml.model'].contents() if 'tokenizer.ggml.model' in fields else None
  if model != 'llama':
    raise ValueError(f'{os.fspath(path)!r}: tokenizer model {model!r} is not SentencePiece '
                     '("llama")')
  tokens = fields['tokenizer.ggml.tokens'].contents()
  scores = fields['tokenizer.ggml.scores'].contents()
  types = np.asarray(fields['tokenizer.ggml.token_type'].contents(), np.int64)
  ids = {k: int(fields[f'tokenizer.ggml.{k}_token_id'].contents())
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
  from gemma4 import models
  reader = open_reader(path)
  meta = metadata(reader)
  arch = architecture(meta, path)
  tokenizer = tokenizer_from_reader(reader, arch, path)
  cfg = config_from_metadata(meta, path)
  if tokenizer.vocab_size != cfg.vocab_size:
    cfg = dataclasses.replace(cfg, vocab_size=tokenizer.vocab_size)
  if model is not None:
    if model.config != cfg:
      raise CheckpointError(f'{os.fspath(path)!r} holds a different model than {model.name}: '
                            + loading.config_diff(model.config, cfg))
  else:
    name = next((k for k, v in _config.PRESETS.items() if v == cfg), f'{arch}_gguf')
    model = models.Model(cfg, dtype=np.float32 if dtype is None else dtype, name=name)
  dtype = model.dtype if dtype is None else dtype
  if model.dtype != dtype:
    model = dataclasses.replace(model, dtype=dtype)
  pieces = gemma3_pieces(cfg) if arch == 'gemma3' else _gemma4_pieces(cfg)
  params = loading.fill(GGUFTensors(reader), pieces, loading.target_shapes(model.param_specs()),
                        dtype, what=f'GGUF file {os.path.basename(os.fspath(path))}',
                        progress=progress)
  return model, params, tokenizer


def _gemma4_pieces(cfg):
  raise NotImplementedError
