"""Tools in Gemma 4's native format: declarations, calls and responses, written and read.

The text, as the official `dialog` package writes it:
  `<|tool>declaration:NAME{description:<|"|>...<|"|>,parameters:{...}}<tool|>`
  `<|tool_call>call:NAME{city:<|"|>Paris<|"|>,days:3}<tool_call|>`
  `<|tool_response>response:NAME{temperature:21}<tool_response|>`
Values: strings between `<|"|>` quotes, keys bare, numbers, true/false/null, {...}, [...].
A declaration's JSON schema has its `type`s upper-cased and every key sorted.

`parse_value` reads what a model writes more loosely than dialog's grammar does: spaces
between items, numbers with exponents, keys that are not identifiers (quoted or bare)
and bare words as strings; `write_value` refuses what could not be read back.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

QUOTE = '<|"|>'
DECLARATION_OPEN, DECLARATION_CLOSE = '<|tool>', '<tool|>'
CALL_OPEN, CALL_CLOSE = '<|tool_call>', '<tool_call|>'
RESPONSE_OPEN, RESPONSE_CLOSE = '<|tool_response>', '<tool_response|>'
_KIND_TAGS = {'declaration': (DECLARATION_OPEN, DECLARATION_CLOSE),
              'call': (CALL_OPEN, CALL_CLOSE), 'response': (RESPONSE_OPEN, RESPONSE_CLOSE)}
_STRUCTURE = set('{}[],:')


class ToolFormatError(ValueError):
  """Text that is not a tool call (or declaration, or response) in the native format."""


# ---------------------------------------------------------------------------- writing

def write_value(value: Any, where: str = 'value') -> str:
  """The native text of a JSON-like value (str, int, float, bool, None, dict, list)."""
  if isinstance(value, str):
    if QUOTE in value:
      raise ValueError(f'{where}: a string cannot hold the quote token {QUOTE!r} (the format '
                       f'has no escape for it): {value!r:.80}')
    return f'{QUOTE}{value}{QUOTE}'
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, int):
    return str(value)
  if isinstance(value, float):
    if not math.isfinite(value):
      raise ValueError(f'{where}: {value} is not a JSON number')
    return str(int(value)) if value.is_integer() else str(value)  # 1.0 is written 1
  if value is None:
    return 'null'
  if isinstance(value, Mapping):
    items = []
    for k, v in value.items():
      _check_key(k, where)
      items.append(f'{k}:{write_value(v, f"{where}.{k}")}')
    return '{' + ','.join(items) + '}'
  if isinstance(value, (list, tuple)):
    return '[' + ','.join(write_value(v, f'{where}[{i}]') for i, v in enumerate(value)) + ']'
  raise TypeError(f'{where}: {type(value).__name__} is not a JSON value (str, int, float, '
                  f'bool, None, dict or list): {value!r:.80}')


def _check_key(key, where: str) -> None:
  if not isinstance(key, str):
    raise TypeError(f'{where}: keys must be str, got {type(key).__name__} {key!r}')
  if not key or key != key.strip() or _STRUCTURE & set(key) or '<|' in key or '|>' in key:
    raise ValueError(f'{where}: key {key!r} cannot be written in the native format (no '
                     'spaces at its ends, none of {}[],: and no tags)')


def _write(kind: str, name: str, content: Mapping) -> str:
  if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", name):
    raise ValueError(f'a tool name must be an identifier (letters, digits, _ . -), got {name!r}')
  open_, close = _KIND_TAGS[kind]
  return f'{open_}{kind}:{name}{write_value(dict(content), name)}{close}'


# ----------------------------------------------------------------------------- values

@dataclasses.dataclass(frozen=True)
class ToolCall:
  """A call the model makes: a tool's name and its arguments."""
  name: str
  arguments: dict = dataclasses.field(default_factory=dict)

  def as_text(self) -> str:
    return _write('call', self.name, self.arguments)


@dataclasses.dataclass(frozen=True)
class ToolResponse:
  """What a tool answered, fed back to the model (a dict; a bare value is `{result: v}`)."""
  name: str
  response: Any = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not isinstance(self.response, Mapping):
      object.__setattr__(self, 'response', {'result': self.response})

  def as_text(self) -> str:
    return _write('response', self.name, self.response)


@dataclasses.dataclass(frozen=True)
class Tool:
  """A tool the model may call: its name, what it does, and its parameters' JSON schema.

  `Tool.from_function(fn)` reads them from a Python function's signature and docstring;
  `Tool.from_schema(d)` from an OpenAI-style `{name, description, parameters}` dict (also
  wrapped as `{type: 'function', function: {...}}`) or an MCP one (`inputSchema`).
  """
  name: str
  description: str | None = None
  parameters: dict | None = None  # a JSON schema of type object
  response: dict | None = None  # a JSON schema of what it returns, if declared
  function: Callable | None = dataclasses.field(default=None, compare=False, repr=False)

  def __post_init__(self):
    _write('declaration', self.name, {})  # checks the name
    for field in ('parameters', 'response'):
      v = getattr(self, field)
      if v is not None and not isinstance(v, Mapping):
        raise TypeError(f'Tool {self.name!r}: {field} must be a JSON schema dict, got '
                        f'{type(v).__name__}')

  def declaration(self) -> dict:
    """What the declaration text holds (dialog's `def_json`): schema types upper-cased,
    keys sorted at every level."""
    out = {}
    if self.description is not None:
      out['description'] = self.description
    if self.parameters is not None:
      out['parameters'] = _normalize_schema(self.parameters)
    if self.response is not None:
      out['response'] = _normalize_schema(self.response)
    return _sorted(out)

  def as_text(self) -> str:
    return _write('declaration', self.name, self.declaration())

  @classmethod
  def from_schema(cls, schema: Mapping) -> Tool:
    if not isinstance(schema, Mapping):
      raise TypeError(f'a tool schema must be a dict, got {type(schema).__name__}')
    if schema.get('type') == 'function' and isinstance(schema.get('function'), Mapping):
      schema = schema['function']
    if 'name' not in schema:
      raise ValueError(f'a tool schema needs a name, got keys {sorted(schema)}')
    known = {'name', 'description', 'parameters', 'inputSchema', 'outputSchema', 'response',
             'title', 'strict'}
    if unknown := set(schema) - known:
      raise ValueError(f'tool {schema["name"]!r}: unknown schema keys {sorted(unknown)} '
                       f'(expected some of {sorted(known)})')
    return cls(name=schema['name'], description=schema.get('description'),
               parameters=schema.get('parameters', schema.get('inputSchema')),
               response=schema.get('response', schema.get('outputSchema')))

  @classmethod
  def from_function(cls, fn: Callable) -> Tool:
    """The declaration of a Python function: its name, the docstring's first paragraph,
    and a parameter per argument (types from the annotations, descriptions from the
    docstring's `Args:` section; arguments without a default are required)."""
    if not callable(fn):
      raise TypeError(f'Tool.from_function takes a function, got {type(fn).__name__}')
    doc = inspect.getdoc(fn) or ''
    description, arg_docs = _parse_docstring(doc)
    hints = typing.get_type_hints(fn)
    props, required = {}, []
    for p in inspect.signature(fn).parameters.values():
      if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        raise ValueError(f'tool {fn.__name__}: *args and **kwargs cannot be declared')
      if p.name not in hints:
        raise ValueError(f'tool {fn.__name__}: argument {p.name!r} has no type annotation '
                         '(the declaration needs its type)')
      schema = _type_schema(hints[p.name], f'{fn.__name__}({p.name})')
      if p.name in arg_docs:
        schema['description'] = arg_docs[p.name]
      props[p.name] = schema
      if p.default is p.empty:
        required.append(p.name)
    params = {'type': 'object', 'properties': props}
    if required:
      params['required'] = required
    return cls(name=fn.__name__, description=description or None, parameters=params,
               function=fn)


def as_tool(t) -> Tool:
  """A Tool from a Tool, a Python function or a schema dict."""
  if isinstance(t, Tool):
    return t
  if isinstance(t, Mapping):
    return Tool.from_schema(t)
  if callable(t):
    return Tool.from_function(t)
  raise TypeError(f'a tool is a gemma4.chat.Tool, a Python function or a JSON schema dict, '
                  f'got {type(t).__name__}')


def _normalize_schema(schema: Mapping) -> dict:
  """dialog's schema normalization: `$schema` dropped, `type` upper-cased, recursively
  in properties, items, allOf/anyOf/oneOf and not."""
  if not isinstance(schema, Mapping):
    raise ValueError(f'a JSON schema must be a dict, got {schema!r:.80}')
  out = {k: v for k, v in schema.items() if k != '$schema'}
  if 'type' in out:
    t = out['type']
    out['type'] = [x.upper() for x in t] if isinstance(t, list) else t.upper()
  if 'properties' in out:
    out['properties'] = {k: _normalize_schema(v) for k, v in out['properties'].items()}
  for key in ('items', 'not'):
    if key in out:
      out[key] = _normalize_schema(out[key])
  for key in ('allOf', 'anyOf', 'oneOf'):
    if key in out:
      out[key] = [_normalize_schema(v) for v in out[key]]
  return out


def _sorted(v):
  if isinstance(v, Mapping):
    return {k: _sorted(x) for k, x in sorted(v.items())}
  if isinstance(v, list):
    return [_sorted(x) for x in v]
  return v


_JSON_TYPES = {str: 'string', int: 'integer', float: 'number', bool: 'boolean',
               type(None): 'null', dict: 'object', list: 'array'}


def _type_schema(hint, where: str) -> dict:
  """The JSON schema of a type annotation (as transformers' get_json_schema writes it)."""
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if hint in _JSON_TYPES:
    return {'type': _JSON_TYPES[hint]}
  if hint is Any:
    return {}
  if isinstance(hint, type) and issubclass(hint, enum.Enum):
    values = [m.value for m in hint]
    return {'type': _JSON_TYPES.get(type(values[0]), 'string'), 'enum': values}
  if origin is typing.Literal:
    return {'type': _JSON_TYPES.get(type(args[0]), 'string'), 'enum': list(args)}
  if origin in (typing.Union, types.UnionType):
    parts = [a for a in args if a is not type(None)]
    out = (_type_schema(parts[0], where) if len(parts) == 1 else
           {'type': sorted({_type_schema(a, where).get('type') for a in parts})})
    if len(parts) < len(args):
      out['nullable'] = True
    return out
  if origin in (list, tuple, set, frozenset) or hint in (tuple, set):
    out = {'type': 'array'}
    if origin is tuple and args and args[-1] is not Ellipsis:  # one schema per position
      out['prefixItems'] = [_type_schema(a, where) for a in args]
    elif args:
      out['items'] = _type_schema(args[0], where)
    return out
  if origin is dict:
    out = {'type': 'object'}
    if len(args) == 2:
      out['additionalProperties'] = _type_schema(args[1], where)
    return out
  raise TypeError(f'{where}: cannot declare the type {hint!r} (use str, int, float, bool, '
                  'list[...], dict[str, ...], Literal[...], an Enum or X | None)')


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
  """The description (the text before the sections) and each argument's text from a
  Google-style docstring's `Args:` section."""
  sections = re.split(r'\n\s*(?=(?:Args|Arguments|Returns|Raises|Yields|Examples?):\s*\n)', doc)
  description = sections[0].strip()
  args: dict[str, str] = {}
  for section in sections[1:]:
    head, _, body = section.strip().partition('\n')
    if head.rstrip(':') not in ('Args', 'Arguments'):
      continue
    name = None
    for line in body.splitlines():
      m = re.match(r'\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)', line)
      if m and (name is None or len(line) - len(line.lstrip()) <= _indent):
        name, _indent = m.group(1), len(line) - len(line.lstrip())
        args[name] = m.group(2).strip()
      elif name is not None and line.strip():
        args[name] = (args[name] + ' ' + line.strip()).strip()
  return description, args


# ---------------------------------------------------------------------------- reading

class _Reader:
  """A recursive-descent reader of one value of the native format."""

  def __init__(self, text: str):
    self.s, self.i = text, 0

  def fail(self, what: str):
    near = self.s[max(0, self.i - 20):self.i + 20]
    raise ToolFormatError(f'{what} at character {self.i} (near {near!r}) of {self.s!r:.200}')

  def ws(self):
    while self.i < len(self.s) and self.s[self.i].isspace():
      self.i += 1

  def peek(self, text: str) -> bool:
    return self.s.startswith(text, self.i)

  def value(self):
    self.ws()
    if self.peek('{'):
      return self.mapping()
    if self.peek('['):
      return self.sequence()
    if self.peek(QUOTE):
      return self.string()
    m = re.compile(r'-?\d+(\.\d+)?([eE][+-]?\d+)?(?=\s*([,}\]]|$))').match(self.s, self.i)
    if m:
      self.i = m.end()
      return float(m.group()) if (m.group(1) or m.group(2)) else int(m.group())
    for word, v in (('true', True), ('false', False), ('null', None)):
      if re.compile(re.escape(word) + r'(?=\s*([,}\]]|$))').match(self.s, self.i):
        self.i += len(word)
        return v
    return self.bare()

  def string(self) -> str:
    start = self.i + len(QUOTE)
    end = self.s.find(QUOTE, start)
    if end < 0:
      self.fail('an unclosed string')  # at its opening quote
    out, self.i = self.s[start:end], end + len(QUOTE)
    return out

  def bare(self) -> str:
    """A value written without quotes: the text up to the next , } or ] (a string)."""
    m = re.compile(r'[^,}\]{\[]*').match(self.s, self.i)
    text = m.group().strip()
    if not text or '<|' in text:
      self.fail('a value was expected')
    self.i = m.end()
    return text

  def key(self) -> str:
    self.ws()
    if self.peek(QUOTE):
      k = self.string()
    else:
      m = re.compile(r'[^:{}\[\],]*').match(self.s, self.i)
      k, self.i = m.group().strip(), m.end()
      if not k:
        self.fail('a key was expected')
    self.ws()
    if not self.peek(':'):
      self.fail(f'":" was expected after the key {k!r}')
    self.i += 1
    return k

  def mapping(self) -> dict:
    self.i += 1
    out = {}
    self.ws()
    if self.peek('}'):
      self.i += 1
      return out
    while True:
      k = self.key()
      out[k] = self.value()
      self.ws()
      if self.peek(','):
        self.i += 1
        continue
      if self.peek('}'):
        self.i += 1
        return out
      self.fail('"," or "}" was expected')

  def sequence(self) -> list:
    self.i += 1
    out = []
    self.ws()
    if self.peek(']'):
      self.i += 1
      return out
    while True:
      out.append(self.value())
      self.ws()
      if self.peek(','):
        self.i += 1
        continue
      if self.peek(']'):
        self.i += 1
        return out
      self.fail('"," or "]" was expected')


def parse_value(text: str) -> Any:
  """The value a whole text holds, in the native format."""
  r = _Reader(text)
  v = r.value()
  r.ws()
  if r.i != len(text):
    r.fail('text after the value')
  return v


def _read_body(r: _Reader, kind: str) -> tuple[str, dict]:
  r.ws()
  if not r.peek(f'{kind}:'):
    r.fail(f'"{kind}:" was expected')
  r.i += len(kind) + 1
  m = re.compile(r'[^{}<>]*').match(r.s, r.i)
  name, r.i = m.group().strip(), m.end()
  if not name:
    r.fail('a tool name was expected')
  if not r.peek('{'):
    r.fail('"{" was expected after the tool name')
  return name, r.mapping()


def parse_body(text: str, kind: str = 'call') -> tuple[str, dict]:
  """(name, content) of what lies between a tool tag's open and close tokens, such as
  `call:get_weather{city:<|"|>Paris<|"|>}`."""
  r = _Reader(text)
  out = _read_body(r, kind)
  r.ws()
  if r.i != len(text):
    r.fail('text after the closing "}"')
  return out


def parse_call(text: str) -> ToolCall:
  """A ToolCall from `call:NAME{...}` (with or without its `<|tool_call>` tags)."""
  text = text.strip()
  if text.startswith(CALL_OPEN):
    return parse_calls(text)[0]
  return ToolCall(*parse_body(text, 'call'))


def parse_calls(text: str) -> list[ToolCall]:
  """Every `<|tool_call>...<tool_call|>` in a text, in order (a close tag inside a quoted
  string does not end a call)."""
  out, i = [], 0
  while (a := text.find(CALL_OPEN, i)) >= 0:
    r = _Reader(text)
    r.i = a + len(CALL_OPEN)
    out.append(ToolCall(*_read_body(r, 'call')))
    r.ws()
    if not r.peek(CALL_CLOSE):
      r.fail(f'{CALL_CLOSE!r} was expected after the arguments')
    i = r.i + len(CALL_CLOSE)
  return out
