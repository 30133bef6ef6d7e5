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


@dataclasses.dataclass(frozen=True)
class Lark:
  """Output in a grammar of llguidance's Lark syntax (special tokens as <[id]>)."""
  grammar: str


def as_format(response_format) -> Regex | Choices | JsonSchema | Lark:
  """A response_format in any accepted form, checked."""
  f = response_format
  if isinstance(f, (Regex, Choices, JsonSchema, Lark)):
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
  if isinstance(fmt, Lark):
    return llguidance.LLMatcher.grammar_from_lark(fmt.grammar)
  try:
    text = json.dumps(dict(fmt.schema))
  except (TypeError, ValueError) as e:
    raise ValueError(f'response_format: the JSON schema is not JSON ({e})') from e
  return llguidance.LLMatcher.grammar_from_json_schema(text, defaults=JSON_OPTIONS)


# Compact JSON: llguidance's default allows any run of whitespace between tokens, which
# a small model can fill until max_new_tokens; a schema's own "x-guidance" options come
# on top.
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
    self.matcher = llguidance.LLMatcher(ll, grammar, log_level=0)
    if self.matcher.is_error():  # llguidance reports a grammar it cannot take this way
      raise ValueError(f'response_format cannot be enforced: {self.matcher.get_error()}')
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


# ------------------------------------------------------------------ tool calls

def tool_call_grammar(tools: Sequence, tokenizer: Gemma4Tokenizer) -> Lark:
  """The grammar of what follows `<|tool_call>`: `call:NAME{...}<tool_call|>` for one of
  the declared tools, its arguments in the native format (strings between `<|"|>`
  tokens) and shaped by the tool's parameters schema: its properties in their declared
  order, the required ones present; enums and consts as listed; integers, numbers,
  booleans, null, arrays of the item schema, anyOf/oneOf and type lists as
  alternatives. What the schema leaves open (no type, $ref, additional properties) is
  any native value. Integers have at most 19 digits, strings keep their maxLength and
  arrays their maxItems (without those, a string or array can run on); numeric bounds
  and minimum lengths are not enforced."""
  from gemma4.chat import tools as _tools
  quote, close = tokenizer.token_id(_tools.QUOTE), tokenizer.token_id(_tools.CALL_CLOSE)
  rules: dict[str, str] = {}

  def lit(text: str) -> str:
    return json.dumps(text)

  def rule(name: str, body: str) -> str:
    rules[name] = body
    return name

  def value(schema, name: str) -> str:
    if not isinstance(schema, Mapping) or not schema:
      return 'any_value'
    if 'const' in schema:
      return rule(name, _written(schema['const'], quote))
    if 'enum' in schema:
      return rule(name, ' | '.join(_written(v, quote) for v in schema['enum']))
    alts = schema.get('anyOf') or schema.get('oneOf')
    if alts:
      return rule(name, ' | '.join(value(a, f'{name}_{i}') for i, a in enumerate(alts)))
    t = schema.get('type')
    if isinstance(t, list):
      return rule(name, ' | '.join(value({**schema, 'type': x}, f'{name}_{x}') for x in t))
    nullable = ' | "null"' if schema.get('nullable') else ''
    if t == 'string':
      if 'maxLength' in schema or 'minLength' in schema:
        n, m = int(schema.get('minLength', 0)), schema.get('maxLength')
        text = rule(name.upper() + '_TEXT', f'/[^\\x00]{{{n},{"" if m is None else int(m)}}}/')
        return rule(name, f'<[{quote}]> {text} <[{quote}]>' + nullable)
      return rule(name, 'string' + nullable)
    if t == 'integer':
      return rule(name, 'INTEGER' + nullable)
    if t == 'number':
      return rule(name, 'NUMBER' + nullable)
    if t == 'boolean':
      return rule(name, '"true" | "false"' + nullable)
    if t == 'null':
      return rule(name, '"null"')
    if t == 'array':
      item = value(schema.get('items', {}), f'{name}_item')
      if 'maxItems' not in schema:
        return rule(name, f'"[" ({item} ("," {item})*)? "]"' + nullable)
      tail = ''  # at most maxItems items: item ("," item ("," ...)?)?
      for k in range(int(schema['maxItems'])):
        tail = rule(f'{name}_up{k + 1}', f'{item} ("," {tail})?' if tail else item)
      return rule(name, f'"[" {tail}? "]"' + nullable if tail else '"[" "]"' + nullable)
    if t == 'object' or 'properties' in schema:
      return rule(name, obj(schema, name) + nullable)
    return 'any_value'

  def obj(schema, name: str) -> str:
    props = list((schema.get('properties') or {}).items())
    required = set(schema.get('required') or ())
    if not props:
      return '"{" (any_member ("," any_member)*)? "}"'
    members = [rule(f'{name}_m{i}', f'{lit(k + ":")} {value(v, f"{name}_p{i}")}')
               for i, (k, v) in enumerate(props)]
    # rest_i: the members from i on, after at least one was written (each needs its
    # comma); start_i: the same before any was. A required member cannot be skipped.
    for i in range(len(props), -1, -1):
      if i == len(props):
        rules[f'{name}_rest{i}'] = '""'
        rules[f'{name}_start{i}'] = '""'
        continue
      key = props[i][0]
      take_rest = f'"," {members[i]} {name}_rest{i + 1}'
      take_start = f'{members[i]} {name}_rest{i + 1}'
      if key in required:
        rules[f'{name}_rest{i}'] = take_rest
        rules[f'{name}_start{i}'] = take_start
      else:
        rules[f'{name}_rest{i}'] = f'{take_rest} | {name}_rest{i + 1}'
        rules[f'{name}_start{i}'] = f'{take_start} | {name}_start{i + 1}'
    return f'"{{" {name}_start0 "}}"'

  calls = []
  for i, tool in enumerate(tools):
    params = tool.parameters or {'type': 'object', 'properties': {}}
    calls.append(f'{lit("call:" + tool.name)} {value(params, f"t{i}")}')
  head = [f'start: ({" | ".join(calls)}) <[{close}]>',
          f'string: <[{quote}]> TEXT <[{quote}]>',
          'any_value: string | NUMBER | "true" | "false" | "null" | "[" (any_value ("," any_value)*)? "]"'
          ' | "{" (any_member ("," any_member)*)? "}"',
          'any_member: KEY ":" any_value',
          'TEXT: /[^\\x00]*/',
          'KEY: /[A-Za-z_][A-Za-z0-9_.\\-]*/',
          'INTEGER: /-?[0-9]{1,19}/',
          'NUMBER: /-?[0-9]{1,19}(\\.[0-9]{1,17})?([eE][+-]?[0-9]{1,3})?/']
  return Lark('\n'.join(head + [f'{k}: {v}' for k, v in rules.items()]) + '\n')


def _written(v, quote: int) -> str:
  """A Lark expression for one JSON value as the native format writes it."""
  from gemma4.chat import tools as _tools
  if isinstance(v, str):
    return f'<[{quote}]> {json.dumps(v)} <[{quote}]>' if v else f'<[{quote}]> <[{quote}]>'
  return json.dumps(_tools.write_value(v))
