"""SentencePiece tokenizer with the Gemma 4 special tokens; knows ids and text only."""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
from collections.abc import Sequence

import numpy as np
import sentencepiece as spm

_WHITESPACE = '\u2581'  # SentencePiece's visible space


class SpecialTokens(enum.IntEnum):
  """Gemma 4 special token ids (the official `_Gemma4SpecialTokens`)."""

  PAD = 0
  EOS = 1
  BOS = 2
  UNK = 3
  MASK = 4
  BEGIN_OF_TOOL_RESPONSE = 50  # <|tool_response>
  START_OF_TURN = 105  # <|turn>
  END_OF_TURN = 106  # <turn|>
  START_OF_IMAGE = 255999  # <|image>
  START_OF_AUDIO = 256000  # <|audio>
  IMAGE_PLACEHOLDER = 258880  # <|image|>
  AUDIO_PLACEHOLDER = 258881  # <|audio|>
  END_OF_IMAGE = 258882  # <image|>
  END_OF_AUDIO = 258883  # <audio|>


class Gemma3SpecialTokens(enum.IntEnum):
  """Gemma 3 special token ids (the official `_Gemma3SpecialTokens`)."""

  PAD = 0
  EOS = 1
  BOS = 2
  UNK = 3
  MASK = 4
  START_OF_TURN = 105  # <start_of_turn>
  END_OF_TURN = 106  # <end_of_turn>
  START_OF_IMAGE = 255999  # <start_of_image>
  END_OF_IMAGE = 256000  # <end_of_image>


@dataclasses.dataclass(frozen=True)
class Gemma4Tokenizer:
  """The Gemma 4 tokenizer over a SentencePiece model.

  path: the `.model` file (the official `tokenizer_gemma4.model`, or any SentencePiece
    model with the Gemma 4 special ids).
  proto: instead of `path`, the serialized SentencePiece model (what
    `gemma4.checkpoints.gguf.load_tokenizer` builds from a GGUF file's vocabulary).
  """

  path: str | os.PathLike | None = None
  proto: bytes | None = dataclasses.field(default=None, repr=False)

  special_tokens = SpecialTokens
  FORBIDDEN_TOKENS: tuple[int, ...] = ()  # the official Gemma 4 default: none
  END_TOKENS = (SpecialTokens.EOS, SpecialTokens.END_OF_TURN,
                SpecialTokens.BEGIN_OF_TOOL_RESPONSE)
  TURN_TOKENS = ('<|turn>', '<turn|>')  # how the chat format opens and closes a turn

  def __post_init__(self):
    if (self.path is None) == (self.proto is None):
      raise ValueError('give exactly one of path= (a SentencePiece .model file) or proto=')
    if self.path is not None and not os.path.isfile(self.path):
      raise FileNotFoundError(f'tokenizer file not found: {os.fspath(self.path)!r} '
                              '(expected a SentencePiece .model file)')
    self._sp  # load now: a bad file fails here, not at the first sample

  @functools.cached_property
  def _sp(self) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    where = repr(os.fspath(self.path)) if self.path is not None else 'proto'
    try:
      data = self.proto if self.proto is not None else open(self.path, 'rb').read()
      sp.LoadFromSerializedProto(data)
    except Exception as e:  # sentencepiece raises bare RuntimeError/OSError
      raise ValueError(f'not a SentencePiece model: {where} ({e})') from e
    return sp

  @property
  def vocab_size(self) -> int:
    return self._sp.GetPieceSize()

  def encode(self, text: str | Sequence[str], *, add_bos: bool = False,
             add_eos: bool = False) -> list[int]:
    """Token ids of `text`, or of a list of pieces (each must be one known token)."""
    if isinstance(text, str):
      ids = list(self._sp.EncodeAsIds(text))
    else:
      pieces = [t.replace(' ', _WHITESPACE) for t in text]
      ids = [self._sp.PieceToId(t) for t in pieces]
      if SpecialTokens.UNK in ids:
        bad = pieces[ids.index(SpecialTokens.UNK)]
        raise ValueError(f'cannot tokenize {list(text)!r}: piece {bad!r} is not in the vocabulary')
    if add_bos:
      ids.insert(0, int(SpecialTokens.BOS))
    if add_eos:
      ids.append(int(SpecialTokens.EOS))
    return ids

  def decode(self, ids) -> str:
    """Text of token ids (an int, a list, or a 0-d/1-d array)."""
    if isinstance(ids, (int, np.integer)):
      ids = [int(ids)]
    elif hasattr(ids, 'ndim'):
      arr = np.asarray(ids)
      if arr.ndim > 1:
        raise ValueError(f'decode takes 0-d or 1-d ids, got shape {arr.shape}')
      ids = arr.reshape(-1).tolist()
    return self._sp.DecodeIds([int(i) for i in ids])

  def model_proto(self) -> bytes:
    """The serialized SentencePiece ModelProto."""
    return self._sp.serialized_model_proto()

  def piece(self, token: int) -> str:
    """The piece of an id as the vocabulary holds it (SentencePiece's visible space kept)."""
    return self._sp.IdToPiece(int(token))

  def token_bytes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The UTF-8 bytes of every token's text as `decode` writes it, (data [N] uint8,
    start [V] int32, length [V] int32): token t's bytes are data[start[t]:][:length[t]]
    and the text of ids is their bytes joined (a control token has none, a byte token
    its byte). Computed once per tokenizer."""
    return self._token_bytes

  @functools.cached_property
  def _token_bytes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sp = self._sp
    spaced = next((i for i in range(sp.GetPieceSize()) if sp.IdToPiece(i).startswith(_WHITESPACE)
                   and not (sp.IsControl(i) or sp.IsUnknown(i) or sp.IsByte(i))), None)
    if spaced is not None and sp.DecodeIds([spaced]) != sp.IdToPiece(spaced).replace(_WHITESPACE, ' '):
      raise ValueError('this tokenizer drops the first space of a text when it decodes '
                       '(SentencePiece add_dummy_prefix): a token\'s text depends on its place')
    chunks = []
    for i, piece in enumerate(sp.IdToPiece(list(range(sp.GetPieceSize())))):
      if sp.IsByte(i):  # <0xNN>
        chunks.append(bytes([int(piece[3:5], 16)]))
      elif sp.IsControl(i) or sp.IsUnknown(i) or sp.IsUnused(i):
        chunks.append(sp.DecodeIds([i]).encode('utf-8'))
      else:
        chunks.append(piece.replace(_WHITESPACE, ' ').encode('utf-8'))
    length = np.fromiter(map(len, chunks), np.int32, len(chunks))
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int32)
    data = np.frombuffer(b''.join(chunks), np.uint8)
    return data, start, length

  def split(self, text: str) -> list[str]:
    return [p.replace(_WHITESPACE, ' ') for p in self._sp.EncodeAsPieces(text)]

  def token_id(self, token: str | int) -> int:
    """The id of a single token given as id or text; an error unless it is exactly one."""
    if isinstance(token, (int, np.integer)):
      if not 0 <= int(token) < self.vocab_size:
        raise ValueError(f'token id {int(token)} is outside the vocabulary [0, {self.vocab_size})')
      return int(token)
    if not isinstance(token, str):
      raise TypeError(f'a token must be a str or an int id, got {type(token).__name__} {token!r}')
    ids = self.encode(token)
    if len(ids) != 1:
      raise ValueError(f'{token!r} must be exactly one token, but encodes to {len(ids)}: {ids}')
    if ids[0] == self.special_tokens.UNK and self._sp.IdToPiece(ids[0]) != token:
      raise ValueError(f'{token!r} is not in the vocabulary (it encodes to <unk>)')
    return ids[0]


class IncrementalDecoder:
  """The text of a growing list of token ids, piece by piece, in time independent of
  the length so far: each new token's text is what decoding a short window of the last
  ids adds (a piece that ends in a split UTF-8 character waits for the next token)."""

  def __init__(self, tokenizer: Gemma4Tokenizer):
    self.tokenizer, self.ids, self.start, self.read = tokenizer, [], 0, 0
    self.done = ''  # the text of ids[start:read]: the last piece returned, kept as context

  def add(self, token: int) -> str:
    self.ids.append(token)
    text = self.tokenizer.decode(self.ids[self.start:])
    if len(text) <= len(self.done) or text.endswith('\ufffd'):
      return ''
    piece = text[len(self.done):]
    self.start, self.read, self.done = self.read, len(self.ids), piece
    return piece

  def rest(self) -> str:
    """What the last tokens add that has not been returned (an unfinished character)."""
    return self.tokenizer.decode(self.ids[self.start:])[len(self.done):]


@dataclasses.dataclass(frozen=True)
class Gemma3Tokenizer(Gemma4Tokenizer):
  """The Gemma 3 tokenizer: same vocabulary size and ids 0-4, Gemma 3 turn tokens."""

  special_tokens = Gemma3SpecialTokens
  END_TOKENS = (Gemma3SpecialTokens.EOS, Gemma3SpecialTokens.END_OF_TURN)
  TURN_TOKENS = ('<start_of_turn>', '<end_of_turn>')
