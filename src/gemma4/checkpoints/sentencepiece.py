"""Building SentencePiece models from other tokenizer descriptions (loader side).

A GGUF file carries its vocabulary as arrays and a HF directory may carry only
tokenizer.json; both become a serialized SentencePiece ModelProto here, which
`gemma4.Gemma4Tokenizer(proto=...)` loads. The tokenizer itself knows ids and text only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

# SentencePiece piece types; GGUF token types use the same numbers.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    b, n = n & 0x7F, n >> 7
    out.append(b | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
  return _varint(number << 3 | wire) + payload


def _bytes_field(number: int, data: bytes) -> bytes:
  return _field(number, 2, _varint(len(data)) + data)


def _int_field(number: int, value: int) -> bytes:
  return _field(number, 0, _varint(value & 0xFFFFFFFFFFFFFFFF))


def sentencepiece_proto(pieces: Sequence[str], scores: Sequence[float], types: Sequence[int],
                        *, bpe: bool = True, byte_fallback: bool = True, unk_id: int = 3,
                        bos_id: int = 2, eos_id: int = 1, pad_id: int = 0) -> bytes:
  """A serialized SentencePiece ModelProto (protobuf wire format, written directly so
  that protobuf is not a dependency): the pieces with their scores and types, an
  identity normalizer that neither adds a space prefix nor merges spaces (Gemma's)."""
  if not len(pieces) == len(scores) == len(types):
    raise ValueError(f'pieces, scores and types differ in length: '
                     f'{len(pieces)}, {len(scores)}, {len(types)}')
  out = bytearray()
  for piece, score, kind in zip(pieces, scores, types):
    body = (_bytes_field(1, piece.encode('utf-8'))
            + _field(2, 5, np.float32(score).tobytes()) + _int_field(3, int(kind)))
    out += _bytes_field(1, body)
  trainer = (_int_field(3, 2 if bpe else 1) + _int_field(4, len(pieces))
             + _int_field(35, int(byte_fallback)) + _int_field(40, unk_id)
             + _int_field(41, bos_id) + _int_field(42, eos_id) + _int_field(43, pad_id))
  normalizer = (_bytes_field(1, b'identity') + _int_field(3, 0) + _int_field(4, 0)
                + _int_field(5, 1))
  out += _bytes_field(2, trainer) + _bytes_field(3, normalizer)
  return bytes(out)


def sentencepiece_from_tokenizer_json(file: str) -> bytes:
  """The SentencePiece BPE model equal to a HF tokenizer.json of Gemma's kind (BPE with
  byte fallback): pieces in id order; a piece made by merge number r scores -r, so that
  SentencePiece's highest-score merge is transformers' lowest-rank merge; added tokens
  are user-defined pieces (matched in text), ids 0-3 the reserved ones."""
  with open(file, encoding='utf-8') as f:
    j = json.load(f)
  model = j.get('model', {})
  if model.get('type') != 'BPE':
    raise ValueError(f'{file!r}: tokenizer model {model.get("type")!r} is not BPE')
  vocab = model['vocab']
  added = {t['id']: t['content'] for t in j.get('added_tokens', [])}
  n = max(max(vocab.values()), max(added, default=-1)) + 1
  pieces = [''] * n
  for piece, i in vocab.items():
    pieces[i] = piece
  for i, piece in added.items():
    pieces[i] = piece.replace(' ', '\u2581')
  rank = {}
  for r, merge in enumerate(model.get('merges', [])):
    a, b = merge.split(' ', 1) if isinstance(merge, str) else merge
    rank.setdefault(a + b, r)
  scores, types = [], []
  for i, piece in enumerate(pieces):
    if i in added:
      kind = {0: CONTROL, 1: CONTROL, 2: CONTROL, 3: UNKNOWN}.get(i, USER_DEFINED)
      scores.append(0.0)
    elif len(piece) == 6 and piece.startswith('<0x') and piece.endswith('>'):
      kind = BYTE
      scores.append(0.0)
    else:
      kind = NORMAL
      scores.append(-float(rank.get(piece, len(rank) + i)) if len(piece) > 1 else -float(len(rank)))
    types.append(kind)
  return sentencepiece_proto(pieces, scores, types)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
  n = shift = 0
  while True:
    b = data[i]
    n |= (b & 0x7F) << shift
    i += 1
    if not b & 0x80:
      return n, i
    shift += 7


def piece_types(proto: bytes) -> np.ndarray:
  """The type of every piece (NORMAL, CONTROL, USER_DEFINED, ...) of a serialized
  SentencePiece ModelProto, read from the wire format (no protobuf needed)."""
  types, i = [], 0
  while i < len(proto):
    key, i = _read_varint(proto, i)
    field, wire = key >> 3, key & 7
    if wire == 0:
      _, i = _read_varint(proto, i)
      continue
    if wire == 5:
      i += 4
      continue
    if wire == 1:
      i += 8
      continue
    if wire != 2:
      raise ValueError(f'not a SentencePiece model: wire type {wire} at byte {i}')
    size, i = _read_varint(proto, i)
    if field == 1:  # a piece: its type (field 3) defaults to NORMAL
      kind, j, end = NORMAL, i, i + size
      while j < end:
        k, j = _read_varint(proto, j)
        if k & 7 == 0:
          v, j = _read_varint(proto, j)
          if k >> 3 == 3:
            kind = v
        elif k & 7 == 5:
          j += 4
        elif k & 7 == 2:
          n, j = _read_varint(proto, j)
          j += n
        else:
          j += 8
      types.append(kind)
    i += size
  return np.asarray(types, np.int64)
