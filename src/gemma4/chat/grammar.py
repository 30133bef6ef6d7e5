"""Structured output: a JSON schema, a regular expression or a list of choices, enforced
while decoding by token masks from llguidance (the grammar engine of vLLM, SGLang and
llama.cpp; chosen by measurement, bench/grammar_engines.txt).

`response_format` takes a JSON schema (dict), `{'type': 'json_object'}` (any JSON
object), OpenAI's `{'type': 'json_schema', 'json_schema': {'schema': ...}}`, a compiled
`re.Pattern` or `Regex('...')`, or `Choices([...])`. A `Constraint` is the
`allowed_tokens` hook of one reply: it reads the ids sampled so far and returns the mask
of the next token; once the grammar is complete it allows only the end tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence

import numpy as np

from gemma4.checkpoints.sentencepiece import BYTE, NORMAL, USER_DEFINED, piece_types
from gemma4.tokenizer import Gemma4Tokenizer

_WHITESPACE = '\u2581'


@dataclasses.dataclass(frozen=True)
class Regex:
  """Output that fully matches a regular expression (Rust regex syntax, as llguidance)."""
  pattern: str


@dataclasses.dataclass(frozen=True)
class Choices:
  """Output that is exactly one of these strings."""
  options: tuple[str, ...]

  def __init__(self, options: Sequence[str]):
    if isinstance(options, str) or not isinstance(options, Sequence) or not options:
      raise ValueError(f'Choices takes a non-empty list of str, got {options!r:.80}')
    if not all(isinstance(o, str) and o for o in options):
      raise ValueError(f'Choices takes non-empty str options, got {list(options)!r:.80}')
    object.__setattr__(self, 'options', tuple(options))


@dataclasses.dataclass(frozen=True)
class JsonSchema:
  """Output that is JSON valid under a schema (a dict; {} or {'type': 'object'} for any
  object). Written compactly: no whitespace between tokens, as llguidance's default."""
  schema: Mapping


def as_format(response_format) -> Regex | Choices | JsonSchema:
  """A response_format in any accepted form, checked."""
  f = response_format
  if isinstance(f, (Regex, Choices, JsonSchema)):
    return f
  if isinstance(f, re.Pattern):
    return Regex(f.pattern)
  if isinstance(f, Mapping):
    if f.get('type') == 'json_object' and set(f) == {'type'}:
      return JsonSchema({'type': 'object'})
    if f.get('type') == 'json_schema':
      inner = f.get('json_schema')
      if not isinstance(inner, Mapping) or not isinstance(inner.get('schema'), Mapping):
        raise ValueError("response_format {'type': 'json_schema'} needs 'json_schema': "
                         "{'schema': {...}}")
      return JsonSchema(inner['schema'])
    return JsonSchema(f)
  if isinstance(f, (list, tuple)):
    return Choices(f)
  raise TypeError(f'response_format must be a JSON schema dict, a re.Pattern, Regex, Choices '
                  f'or a list of choices, got {type(f).__name__}')


def _grammar(fmt) -> str:
  import llguidance
  if isinstance(fmt, Regex):
    return llguidance.LLMatcher.grammar_from_regex(fmt.pattern)
  if isinstance(fmt, Choices):
    return llguidance.LLMatcher.grammar_from_regex('|'.join(re.escape(o) for o in fmt.options))
  try:
    text = json.dumps(dict(fmt.schema))
  except (TypeError, ValueError) as e:
    raise ValueError(f'response_format: the JSON schema is not JSON ({e})') from e
  return llguidance.LLMatcher.grammar_from_json_schema(text, defaults=JSON_OPTIONS)


# Compact JSON (llguidance's default lets whitespace run on, and a small model will run it
# on until max_new_tokens); a schema's own "x-guidance" options come on top.
JSON_OPTIONS = {'whitespace_flexible': False}


# A user-defined piece that stands for no text: a tag (<start_of_turn>, <|"|>, <unused0>)
# or [multimodal]. Gemma's other user-defined pieces are runs of spaces and newlines.
_TAG = re.compile(r'<[^<>\s]+>|\[[a-z_]+\]')


def token_bytes(tokenizer: Gemma4Tokenizer) -> tuple[list[bytes], list[int]]:
  """The bytes of every piece, and the ids of the special ones (control pieces and
  tags: they never stand for text)."""
  types = piece_types(tokenizer.model_proto())
  out, special = [], []
  for i, kind in enumerate(types.tolist()):
    piece = tokenizer.piece(i)
    if kind == BYTE:
      out.append(bytes([int(piece[1:-1], 16)]))  # <0xAB>
      continue
    text = piece.replace(_WHITESPACE, ' ')
    if kind == NORMAL or (kind == USER_DEFINED and not _TAG.fullmatch(piece)):
      out.append(text.encode('utf-8'))
    else:
      out.append(b'\xff' + piece.encode('utf-8'))  # llguidance's mark of a special token
      special.append(i)
  return out, special


class _Tokenizer:
  """What llguidance.TokenizerWrapper reads."""

  def __init__(self, tokenizer: Gemma4Tokenizer, end_tokens: Sequence[int]):
    self.tokens, self.special_token_ids = token_bytes(tokenizer)
    self.eos_token_id = int(end_tokens[0])
    self.bos_token_id = int(tokenizer.special_tokens.BOS)
    self._tok = tokenizer

  def __call__(self, text):
    if isinstance(text, bytes):
      text = text.decode('utf-8', errors='replace')
    return self._tok.encode(text)


@functools.lru_cache(maxsize=4)
def ll_tokenizer(tokenizer: Gemma4Tokenizer, end_tokens: tuple[int, ...]):
  """The llguidance tokenizer of a vocabulary (built once per tokenizer: ~2 s for 262144
  pieces)."""
  import llguidance
  wrapper = llguidance.TokenizerWrapper(_Tokenizer(tokenizer, end_tokens))
  return llguidance.LLTokenizer(wrapper, eos_token=list(end_tokens))


class Constraint:
  """The allowed_tokens hook of one reply under a response_format (see the module doc)."""

  def __init__(self, tokenizer: Gemma4Tokenizer, response_format, end_tokens: Sequence[int]):
    import llguidance
    self.format = as_format(response_format)
    self.end_tokens = tuple(int(t) for t in end_tokens)
    ll = ll_tokenizer(tokenizer, self.end_tokens)
    grammar = _grammar(self.format)
    bad, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, ll)
    if bad:
      raise ValueError(f'response_format cannot be enforced: {messages[0]}')
    self.matcher = llguidance.LLMatcher(ll, grammar, log_level=0)
    self.vocab_size = tokenizer.vocab_size
    self._seen = 0

  def __call__(self, ids: Sequence[int]) -> np.ndarray:
    for t in ids[self._seen:]:
      if not self.matcher.consume_token(int(t)):
        raise RuntimeError(f'the grammar refused token {t}: {self.matcher.get_error()}')
    self._seen = len(ids)
    if self.matcher.is_stopped():
      mask = np.zeros(self.vocab_size, bool)
      mask[list(self.end_tokens)] = True
      return mask
    bits = np.frombuffer(self.matcher.compute_bitmask(), np.uint8)
    mask = np.unpackbits(bits, bitorder='little')[:self.vocab_size].astype(bool)
    if self.matcher.is_accepting():
      mask[list(self.end_tokens)] = True
    return mask

  @property
  def complete(self) -> bool:
    """The output so far is a whole sentence of the grammar."""
    return self.matcher.is_accepting()
