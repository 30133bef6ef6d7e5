"""GGUF files (llama.cpp's format): config, dequantized weights and the tokenizer.

Architectures `gemma3` and `gemma4`. Every quantization type the `gguf` package knows is
dequantized with it (NumPy), row block by row block. A GGUF file does not record some
Gemma constants (REFERENCE section 6): the local RoPE base, the layer pattern, the
attention scale and, for Gemma 3, the global RoPE scale; they come from the preset whose
shape matches the file, or from the Gemma defaults when none does.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
import struct

import numpy as np

from gemma4 import config as _config
from gemma4.config import GLOBAL, LOCAL, TransformerConfig
from gemma4.checkpoints.plan import CheckpointError
from gemma4.checkpoints import keymap, plan
from gemma4.checkpoints.sentencepiece import CONTROL, USER_DEFINED, sentencepiece_proto
from gemma4.tokenizer import Gemma3Tokenizer, Gemma4Tokenizer

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

  Every length is checked against the file before it is read or allocated, and every
  tensor's type and byte extent when the table is parsed: a truncated or corrupt file
  raises a CheckpointError naming it and the metadata key or tensor where it breaks.
  """

  _SCALARS = {0: '<u1', 1: '<i1', 2: '<u2', 3: '<i2', 4: '<u4', 5: '<i4', 6: '<f4', 7: '?',
              10: '<u8', 11: '<i8', 12: '<f8'}
  # The same as struct formats: one unpack per scalar (a NumPy view each is much slower
  # over a vocabulary of 262144 strings), with the type's name for errors.
  _STRUCTS = {0: (struct.Struct('<B'), 'uint8'), 1: (struct.Struct('<b'), 'int8'),
              2: (struct.Struct('<H'), 'uint16'), 3: (struct.Struct('<h'), 'int16'),
              4: (struct.Struct('<I'), 'uint32'), 5: (struct.Struct('<i'), 'int32'),
              6: (struct.Struct('<f'), 'float32'), 7: (struct.Struct('<?'), 'bool'),
              10: (struct.Struct('<Q'), 'uint64'), 11: (struct.Struct('<q'), 'int64'),
              12: (struct.Struct('<d'), 'float64')}
  # The fewest bytes one metadata entry (key length, type, a 1-byte value), one tensor
  # table entry (name length, n_dims, type, offset), one string and one array take.
  _MIN_KV, _MIN_TENSOR, _MIN_STRING, _MIN_ARRAY = 13, 24, 8, 12

  def __init__(self, path: str):
    self.path = path
    self.size = os.path.getsize(path)
    if self.size < 4:
      raise self._damaged(f'too short for a GGUF file ({self.size} bytes)')
    self.data = np.memmap(path, np.uint8, 'r')
    if bytes(self.data[:4]) != b'GGUF':
      raise ValueError(f'{path!r} is not a GGUF file (it does not start with b"GGUF")')
    self._mv = memoryview(self.data)
    try:
      self._parse()
    finally:
      self._mv.release()  # no buffer export left on the map

  def _parse(self) -> None:
    path = self.path
    self._pos = 4
    self._what = 'the header'
    version = int(self._scalar(4))
    if version not in (2, 3):
      raise CheckpointError(f'{path!r}: GGUF version {version} is not supported (expected 2 '
                            'or 3)')
    n_tensors, n_kv = int(self._scalar(10)), int(self._scalar(10))
    self._count(n_kv, self._MIN_KV, 'metadata entries (n_kv)')
    self.fields: dict = {}
    for i in range(n_kv):
      self._what = f'metadata entry {i}'
      key = self._string()
      self._what = f'metadata key {key!r}'
      self.fields[key] = self._value(int(self._scalar(4)))
    self._what = 'the tensor table'
    self._count(n_tensors, self._MIN_TENSOR, 'tensors (n_tensors)')
    infos = []
    for i in range(n_tensors):
      self._what = f'tensor table entry {i}'
      name = self._string()
      self._what = f'tensor {name} (table entry {i})'
      n_dims = int(self._scalar(4))
      self._count(n_dims, 8, 'dimensions')
      dims = [int(self._scalar(10)) for _ in range(n_dims)]
      infos.append((name, tuple(reversed(dims)), int(self._scalar(4)), int(self._scalar(10))))
    align = self.fields.get('general.alignment', 32)
    if not (isinstance(align, int) and not isinstance(align, bool) and align > 0):
      raise self._damaged(f'corrupt: metadata key general.alignment is {align!r}, expected a '
                          'positive integer')
    start = self._pos + (-self._pos) % align
    gguf = _gguf()
    self.tensors = []
    problems, seen = [], set()
    for name, shape, kind, offset in infos:
      if name in seen:
        problems.append(f'corrupt: tensor {name} is listed twice')
      seen.add(name)
      try:
        block, size = gguf.constants.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
      except (ValueError, KeyError):
        problems.append(f'corrupt: tensor {name} has unknown ggml type id {kind}')
        continue
      n = math.prod(shape)  # Python ints: an absurd shape must not wrap around
      if (shape[-1] if shape else 1) % block:
        problems.append(f'corrupt: tensor {name} has shape {shape}, whose rows are not whole '
                        f'blocks of {block} values ({gguf.GGMLQuantizationType(kind).name})')
        continue
      if offset % align:
        problems.append(f'corrupt: tensor {name} has data offset {offset}, not a multiple of '
                        f'the alignment {align}')
      info = TensorInfo(name, shape, kind, start + offset, n // block * size)
      problem = plan.extent_problem(name, info.offset, info.offset + info.nbytes, self.size)
      if problem:
        problems.append(problem)
      self.tensors.append(info)
    if problems:
      raise plan.damaged(path, 'GGUF', problems)

  def _damaged(self, problem: str) -> CheckpointError:
    return plan.damaged(self.path, 'GGUF', [problem])

  def _need(self, n: int, what: str) -> None:
    """Raises unless `n` more bytes, for `what`, lie in the file."""
    if self._pos + n > self.size:
      raise self._damaged(f'truncated: {self._what}: {what} needs bytes {self._pos}..'
                          f'{self._pos + n}, the file has {self.size}')

  def _count(self, n: int, least: int, what: str) -> None:
    """Raises when `n` items of at least `least` bytes each cannot fit in the rest of the
    file (an absurd count from a corrupt header, never allocated)."""
    if n * least > self.size - self._pos:
      raise self._damaged(f'truncated or corrupt: {self._what}: {n} {what} need at least '
                          f'{n * least} bytes from byte {self._pos}, the file has {self.size}')

  def _scalar(self, kind: int):
    """One scalar of GGUF value type `kind`, as a Python int, float or bool."""
    if kind not in self._STRUCTS:
      raise self._damaged(f'corrupt: {self._what}: unknown GGUF value type {kind}')
    fmt, name = self._STRUCTS[kind]
    if self._pos + fmt.size > self.size:
      self._need(fmt.size, f'a {name} value')
    (value,) = fmt.unpack_from(self._mv, self._pos)
    self._pos += fmt.size
    return value

  def _string(self) -> str:
    n = self._scalar(10)
    if self._pos + n > self.size:
      self._need(n, f'a string of {n} bytes')
    text = str(self._mv[self._pos:self._pos + n], 'utf-8', 'replace')
    self._pos += n
    return text

  def _value(self, kind: int):
    if kind == 8:
      return self._string()
    if kind == 9:
      item, n = int(self._scalar(4)), int(self._scalar(10))
      if item == 8:
        self._count(n, self._MIN_STRING, 'array strings')
        return [self._string() for _ in range(n)]
      if item == 9:
        self._count(n, self._MIN_ARRAY, 'nested arrays')
        return [self._value(9) for _ in range(n)]
      if item not in self._SCALARS:
        raise self._damaged(f'corrupt: {self._what}: unknown GGUF array item type {item}')
      dt = np.dtype(self._SCALARS[item])
      self._need(n * dt.itemsize, f'an array of {n} {dt.name} values')
      arr = np.array(self.data[self._pos:self._pos + n * dt.itemsize].view(dt))
      self._pos += n * dt.itemsize
      return arr
    return self._scalar(kind)

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
  except (IndexError, KeyError, UnicodeDecodeError, RecursionError) as e:  # GGUFFile checks reads
    raise CheckpointError(f'{path!r} is a truncated or corrupt GGUF file '
                          f'({type(e).__name__}: {e})') from e


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



class _Meta:
  """Typed reads of an architecture's metadata keys ('gemma3.embedding_length'): a
  missing or mistyped key raises a CheckpointError naming the file and the key."""

  def __init__(self, meta: dict, arch: str, path):
    self.meta, self.arch, self.path = meta, arch, os.fspath(path)

  def error(self, key: str, what: str) -> CheckpointError:
    return CheckpointError(f'{self.path!r}: metadata key {self.arch}.{key} {what}')

  def _read(self, key, default, ok, expected):
    value = self.meta.get(f'{self.arch}.{key}', plan.MISSING)
    if value is plan.MISSING:
      if default is plan.MISSING:
        raise self.error(key, f'is missing (a required key: {expected})')
      return plan.MISSING, default
    if not ok(value):
      shown = (f'an array of {len(value)}' if isinstance(value, (list, np.ndarray))
               else f'{value!r} ({type(value).__name__})')
      raise self.error(key, f'is {shown}, expected {expected}')
    return value, None

  def integer(self, key: str, default=plan.MISSING, lo: int = 0):
    """An integer >= lo; a default is returned as it is."""
    value, other = self._read(key, default, lambda v: plan.is_integer(v) and v >= lo,
                              f'an integer >= {lo}')
    return other if value is plan.MISSING else int(value)

  def number(self, key: str, default=plan.MISSING):
    value, other = self._read(key, default, plan.is_number, 'a number')
    return other if value is plan.MISSING else float(value)

  def per_layer(self, key: str, n: int, default=plan.MISSING, lo: int = 0) -> list:
    """One value per layer: an array of n numbers (or bools), or one number for all."""
    def ok(v):
      if isinstance(v, np.ndarray):
        return v.ndim == 1 and v.dtype.kind in 'biuf'
      return isinstance(v, bool) or plan.is_number(v)
    value, other = self._read(key, default, ok, f'a number or an array of {n}')
    if value is plan.MISSING:
      return [other] * n
    values = value.tolist() if isinstance(value, np.ndarray) else [value] * n
    if len(values) != n:
      raise self.error(key, f'has {len(values)} entries but block_count is {n}')
    if any(v < lo for v in values if not isinstance(v, bool)):
      raise self.error(key, f'is {value!r}, expected values >= {lo}')
    return values


def _gemma3_config(meta: dict, path='GGUF file') -> TransformerConfig:
  g = _Meta(meta, 'gemma3', path)
  d, n_layers = g.integer('embedding_length', lo=1), g.integer('block_count', lo=1)
  heads, kv = g.integer('attention.head_count', lo=1), g.integer('attention.head_count_kv', lo=1)
  head_dim = g.integer('attention.key_length', d // heads, lo=1)
  file_cfg = dict(embed_dim=d, hidden_dim=g.integer('feed_forward_length', lo=1),
                  num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
                  sliding_window=g.integer('attention.sliding_window', lo=1),
                  global_rope_base=g.number('rope.freq_base', 1_000_000.0))
  for preset in _config.PRESETS.values():
    if (preset.family == 'gemma3' and preset.num_layers == n_layers
        and all(getattr(preset, k) == v for k, v in file_cfg.items())):
      return preset
  # Not a published size: the Gemma 3 constants a GGUF file leaves out, as engines do.
  return dataclasses.replace(
      _config.gemma3_config(d, file_cfg['hidden_dim'], heads, kv, n_layers,
                      file_cfg['sliding_window'], head_dim=head_dim), **file_cfg)


def config_from_reader(reader, meta: dict, path='GGUF file') -> TransformerConfig:
  arch = architecture(meta, path)
  if arch == 'gemma3':
    return _gemma3_config(meta, path)
  names = {t.name for t in reader.tensors}
  freqs = GGUFTensors(reader).read('rope_freqs.weight') if 'rope_freqs.weight' in names else None
  return _gemma4_config(meta, freqs, names, path)


def _gemma4_config(meta: dict, rope_freqs: np.ndarray | None,
                   tensor_names: set[str], path='GGUF file') -> TransformerConfig:
  """The config of a llama.cpp `gemma4` file (keys as convert_hf_to_gguf.py writes them).

  rope_freqs: the file's rope_freqs tensor (the global layers' partial rotation), if any.
  tensor_names: the file's tensors; global layers without attn_v use K as V.
  """
  g = _Meta(meta, 'gemma4', path)
  n = g.integer('block_count', lo=1)
  pattern = g.per_layer('attention.sliding_window_pattern', n, True)
  kinds = tuple(LOCAL if bool(s) else GLOBAL for s in pattern)
  first_global = kinds.index(GLOBAL) if GLOBAL in kinds else None
  kv = g.per_layer('attention.head_count_kv', n, lo=1)
  ffw = g.per_layer('feed_forward_length', n, lo=1)
  global_dim = g.integer('attention.key_length', lo=2)
  head_dim = g.integer('attention.key_length_swa', global_dim, lo=1)
  local_kv = int(kv[kinds.index(LOCAL)]) if LOCAL in kinds else int(kv[0])
  global_kv = int(kv[first_global]) if first_global is not None else local_kv
  global_prop = 1.0
  if rope_freqs is not None:  # 1.0 for rotated frequencies, 1e30 for the rest
    global_prop = float(np.sum(rope_freqs < 2.0)) / (global_dim // 2)
  n_shared = g.integer('attention.shared_kv_layers', 0)
  k_eq_v = first_global is not None and f'blk.{first_global}.attn_v.weight' not in tensor_names
  experts = g.integer('expert_count', 0)
  cfg = TransformerConfig(
      vocab_size=262144, embed_dim=g.integer('embedding_length', lo=1), hidden_dim=int(ffw[0]),
      num_heads=g.integer('attention.head_count', lo=1), num_kv_heads=local_kv,
      head_dim=head_dim, global_head_dim=global_dim,
      num_global_kv_heads=global_kv if global_kv != local_kv else None,
      k_eq_v_global=k_eq_v, layer_types=kinds,
      sliding_window=g.integer('attention.sliding_window', lo=1),
      local_rope_base=g.number('rope.freq_base_swa', 10_000.0),
      global_rope_base=g.number('rope.freq_base', 1_000_000.0),
      local_rope_proportion=g.number('rope.dimension_count_swa', head_dim) / head_dim,
      global_rope_proportion=global_prop,
      final_logit_softcap=g.number('final_logit_softcapping', 30.0),
      per_layer_input_dim=g.integer('embedding_length_per_layer_input', 0),
      num_kv_shared_layers=n_shared,
      kv_shared_hidden_dim=int(ffw[-1]) if n_shared and ffw[-1] != ffw[0] else None,
      num_experts=experts, expert_dim=g.integer('expert_feed_forward_length', 0) if experts else 0,
      top_k_experts=g.integer('expert_used_count', 0) if experts else 0)
  # What a GGUF file does not say (bidirectional vision attention, the encoders) comes
  # from the preset of the same shape.
  found = _config.matching_preset(cfg)
  return found[1] if found else cfg


# --- tensors -------------------------------------------------------------------------

class GGUFTensors(plan.Reader):
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
  def bad(key, what):
    return CheckpointError(f'{os.fspath(path)!r}: metadata key tokenizer.ggml.{key} {what}')
  tokens = fields['tokenizer.ggml.tokens']
  if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
    raise bad('tokens', f'is a {type(tokens).__name__}, expected an array of strings')
  n = len(tokens)
  scores = fields.get('tokenizer.ggml.scores', np.zeros(n, np.float32))
  types = fields.get('tokenizer.ggml.token_type', np.ones(n, np.int64))
  for key, value, kinds in (('scores', scores, 'iuf'), ('token_type', types, 'iu')):
    if not (isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in kinds):
      raise bad(key, f'is a {type(value).__name__}, expected an array of numbers')
    if len(value) != n:
      raise bad(key, f'has {len(value)} entries but tokenizer.ggml.tokens has {n}')
  types = np.asarray(types, np.int64)
  ids = {}
  for k in ('unknown', 'bos', 'eos', 'padding'):
    value = fields.get(f'tokenizer.ggml.{k}_token_id')
    if value is None:
      continue
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n):
      raise bad(f'{k}_token_id', f'is {value!r}, expected a token id in [0, {n})')
    ids[k] = value
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


def load(path, model=None, dtype=None, progress: bool | None = None,
         quantize: str | None = None, sharder=None):
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
  model = plan.resolve_model(cfg, model, dtype, np.float32, f'{arch}_gguf', path)
  dropped = {'rope_freqs.weight': 'read into the config (partial RoPE)'}
  params = plan.fill(GGUFTensors(reader), keymap.gguf_text_pieces(cfg), plan.target_shapes(model.param_specs()),
                        model.dtype, dropped=dropped, unused=keymap.unused_params(cfg),
                        what=f'GGUF file {os.path.basename(os.fspath(path))}',
                        progress=progress, quantize=quantize,
                        sharder=sharder, specs=model.param_specs())
  return model, params, tokenizer
