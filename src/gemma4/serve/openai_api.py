"""The OpenAI API's requests and responses: bodies checked field by field into a `Job`,
and the engine's tokens written back as the API's objects (non-streamed and chunks).

Every field the API defines is either honoured or refused with a 400 naming it; fields
it does not define are refused too (`APIError`, OpenAI's error body). Nothing is
silently ignored but `user` and `metadata`-like tags that change no output.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import math
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

from gemma4 import audio as _audio
from gemma4.chat import turns as _turns
from gemma4.chat.tools import Tool, ToolCall, ToolResponse
from gemma4.serve.engine import MAX_TOP_LOGPROBS


class APIError(Exception):
  """An error the client gets as OpenAI's body: {"error": {message, type, param, code}}."""

  def __init__(self, message: str, *, status: int = 400, param: str | None = None,
               type: str = 'invalid_request_error', code: str | None = None, headers=None):
    super().__init__(message)
    self.message, self.status, self.param, self.type, self.code = message, status, param, type, code
    self.headers = headers or {}

  def body(self) -> dict:
    return {'error': {'message': self.message, 'type': self.type, 'param': self.param,
                      'code': self.code}}


@dataclasses.dataclass(frozen=True)
class ServedModel:
  """What the request parser needs to know of the served model."""

  name: str
  family: str  # 'gemma4' or 'gemma3'
  has_vision: bool
  has_audio: bool
  cache_length: int
  media_dirs: tuple[str, ...] = ()  # where image/audio file paths may point


@dataclasses.dataclass
class Job:
  """One checked request, ready for the engine."""

  kind: str  # 'chat' or 'completion'
  prompt: str
  add_bos: bool
  images: list | None
  audio: list | None
  max_tokens: int | None
  sampling: dict  # Settings fields but max_new_tokens and allowed
  stop: tuple[str, ...]
  stream: bool
  include_usage: bool
  logprobs: bool
  top_logprobs: int
  response_format: Any = None
  tools: tuple[Tool, ...] = ()
  tool_choice: Any = 'auto'
  think: bool = False


# ----------------------------------------------------------------------------- checks

def _type_name(v) -> str:
  return 'null' if v is None else {bool: 'boolean', int: 'integer', float: 'number', str: 'string',
                                   list: 'array', dict: 'object'}.get(type(v), type(v).__name__)


def _number(body, name, low, high, *, integer=False, low_open=False):
  v = body.get(name)
  if v is None:
    return None
  ok = isinstance(v, int) if integer else isinstance(v, (int, float))
  if isinstance(v, bool) or not ok:
    raise APIError(f"'{name}' must be {'an integer' if integer else 'a number'}, got "
                   f'{_type_name(v)} {json.dumps(v)[:40]}', param=name)
  if not math.isfinite(v) or v < low or (low_open and v == low) or v > high:
    raise APIError(f"'{name}' must be in {'(' if low_open else '['}{low}, {high}], got {v}",
                   param=name)
  return v


def _bool(body, name, default=False) -> bool:
  v = body.get(name, default)
  if v is None:
    return default
  if not isinstance(v, bool):
    raise APIError(f"'{name}' must be a boolean, got {_type_name(v)}", param=name)
  return v


def _check_fields(body: Mapping, known: set[str], refused: Mapping[str, str], where: str = ''):
  for name in body:
    if name in refused:
      raise APIError(f"'{where}{name}' is not supported by this server: {refused[name]}",
                     param=f'{where}{name}')
    if name not in known:
      raise APIError(f"Unrecognized request argument supplied: '{where}{name}'",
                     param=f'{where}{name}')


def _stop(body) -> tuple[str, ...]:
  v = body.get('stop')
  if v is None:
    return ()
  if isinstance(v, str):
    v = [v]
  if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v) or len(v) > 16:
    raise APIError("'stop' must be a non-empty string or a list of at most 16 non-empty "
                   f'strings, got {json.dumps(v)[:60]}', param='stop')
  return tuple(v)


def _logit_bias(body) -> dict | None:
  v = body.get('logit_bias')
  if v is None:
    return None
  if not isinstance(v, dict):
    raise APIError(f"'logit_bias' must be an object of token id to bias, got {_type_name(v)}",
                   param='logit_bias')
  out = {}
  for k, b in v.items():
    try:
      i = int(k)
    except ValueError:
      raise APIError(f"'logit_bias' keys must be token ids, got {k!r}", param='logit_bias') from None
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not -100 <= b <= 100:
      raise APIError(f"'logit_bias[{k}]' must be a number in [-100, 100], got {b!r}",
                     param='logit_bias')
    out[i] = float(b)
  return out


def _sampling(body) -> dict:
  """The sampling fields both endpoints share (OpenAI's and vLLM's names)."""
  t = _number(body, 'temperature', 0, 2)
  top_p = _number(body, 'top_p', 0, 1, low_open=True)
  top_k = _number(body, 'top_k', -1, 1 << 30, integer=True)
  min_p = _number(body, 'min_p', 0, 1)
  rep = _number(body, 'repetition_penalty', 0, 100, low_open=True)
  seed = _number(body, 'seed', -(1 << 63), (1 << 64) - 1, integer=True)
  return dict(temperature=1.0 if t is None else float(t),
              top_p=1.0 if top_p is None else float(top_p),
              top_k=None if top_k in (None, 0, -1) else top_k,
              min_p=0.0 if min_p is None else float(min_p),
              repetition_penalty=rep,
              presence_penalty=_number(body, 'presence_penalty', -2, 2),
              frequency_penalty=_number(body, 'frequency_penalty', -2, 2),
              logit_bias=_logit_bias(body),
              seed=None if seed is None else seed % (1 << 64))


def _n(body):
  n = _number(body, 'n', 1, 128, integer=True)
  if n not in (None, 1):
    raise APIError(f"'n' must be 1 on this server (one choice per request; send {n} "
                   'requests instead)', param='n')


def _stream_options(body, stream: bool) -> bool:
  opts = body.get('stream_options')
  if opts is None:
    return False
  if not stream:
    raise APIError("'stream_options' is only allowed when 'stream' is true",
                   param='stream_options')
  if not isinstance(opts, dict):
    raise APIError(f"'stream_options' must be an object, got {_type_name(opts)}",
                   param='stream_options')
  _check_fields(opts, {'include_usage', 'include_obfuscation'}, {}, 'stream_options.')
  return _bool(opts, 'include_usage')


_COMMON = {'model', 'max_tokens', 'temperature', 'top_p', 'top_k', 'min_p', 'n', 'stream',
           'stream_options', 'stop', 'seed', 'presence_penalty', 'frequency_penalty',
           'repetition_penalty', 'logit_bias', 'user'}

_CHAT_FIELDS = _COMMON | {'messages', 'max_completion_tokens', 'logprobs', 'top_logprobs',
                          'response_format', 'tools', 'tool_choice', 'parallel_tool_calls',
                          'reasoning_effort', 'chat_template_kwargs'}
_CHAT_REFUSED = {
    'audio': 'audio output is not produced (Gemma 4 writes text)',
    'modalities': 'only text output is produced',
    'prediction': 'predicted outputs are not supported',
    'web_search_options': 'there is no web search',
    'functions': "the deprecated 'functions' is not supported; use 'tools'",
    'function_call': "the deprecated 'function_call' is not supported; use 'tool_choice'",
    'store': 'completions are not stored',
    'service_tier': 'there is one service tier',
    'metadata': 'completions are not stored, so there is nothing to tag',
}
_COMPLETION_FIELDS = _COMMON | {'prompt', 'logprobs', 'echo', 'suffix', 'best_of'}


def _model(body, served: ServedModel):
  name = body.get('model')
  if not isinstance(name, str):
    raise APIError(f"'model' is required and must be a string, got {_type_name(name)}",
                   param='model')
  if name != served.name:
    raise APIError(f'The model {name!r} does not exist; this server serves {served.name!r}',
                   status=404, param='model', code='model_not_found')


def _max_tokens(body, *names) -> int | None:
  got = None
  for name in names:
    v = _number(body, name, 1, 1 << 31, integer=True)
    if v is not None:
      got = v
  return got


# ----------------------------------------------------------------------------- media

def _data_url(url: str, param: str) -> bytes:
  head, _, data = url.partition(',')
  if ';base64' not in head:
    raise APIError(f'{param}: a data URL must be base64 encoded (data:<type>;base64,...)',
                   param=param)
  try:
    return base64.b64decode(data, validate=True)
  except (binascii.Error, ValueError) as e:
    raise APIError(f'{param}: invalid base64 data ({e})', param=param) from None


def _allowed_path(path: str, served: ServedModel, param: str) -> str:
  if not served.media_dirs:
    raise APIError(f'{param}: file paths are not allowed on this server (start it with '
                   '--media-dir DIR to allow files under DIR); send a data URL instead',
                   param=param)
  real = os.path.realpath(path)
  if not any(os.path.commonpath([real, d]) == d for d in served.media_dirs):
    raise APIError(f'{param}: {path!r} is outside the allowed media directories', param=param)
  if not os.path.isfile(real):
    raise APIError(f'{param}: no such file {path!r}', param=param)
  return real


def _image(part: Mapping, served: ServedModel, param: str):
  from PIL import Image, UnidentifiedImageError
  if not served.has_vision:
    raise APIError(f'{param}: model {served.name!r} takes no images', param=param)
  spec = part.get('image_url')
  if isinstance(spec, str):
    spec = {'url': spec}
  if not isinstance(spec, dict) or not isinstance(spec.get('url'), str):
    raise APIError(f"{param}.image_url must be an object with a string 'url'", param=param)
  _check_fields(spec, {'url', 'detail'}, {}, f'{param}.image_url.')
  url = spec['url']
  if url.startswith('data:'):
    source = io.BytesIO(_data_url(url, param))
  elif url.startswith(('http://', 'https://')):
    raise APIError(f'{param}: this server does not fetch URLs; send the image as a data URL',
                   param=param)
  else:
    source = _allowed_path(url.removeprefix('file://'), served, param)
  try:
    with Image.open(source) as im:
      im.load()
      return im.copy()
  except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
    raise APIError(f'{param}: cannot read the image: {e}', param=param) from None


def _audio_part(part: Mapping, served: ServedModel, param: str):
  if not served.has_audio:
    raise APIError(f'{param}: model {served.name!r} takes no audio', param=param)
  spec = part.get('input_audio')
  if not isinstance(spec, dict) or not isinstance(spec.get('data'), str):
    raise APIError(f"{param}.input_audio must be an object with base64 'data' and 'format'",
                   param=param)
  _check_fields(spec, {'data', 'format'}, {}, f'{param}.input_audio.')
  if spec.get('format', 'wav') not in ('wav', 'flac'):
    raise APIError(f"{param}.input_audio.format must be 'wav' or 'flac', got "
                   f'{spec.get("format")!r}', param=param)
  try:
    raw = base64.b64decode(spec['data'], validate=True)
  except (binascii.Error, ValueError) as e:
    raise APIError(f'{param}: invalid base64 data ({e})', param=param) from None
  try:
    return _audio.decode(raw, name=f'{param}.input_audio')
  except ValueError as e:
    raise APIError(f'{param}: {e}', param=param) from None


def _content(content, served: ServedModel, param: str, media: bool) -> list:
  """A message's content as turn chunks (text, Image, Audio)."""
  if content is None:
    return []
  if isinstance(content, str):
    return [content]
  if not isinstance(content, list):
    raise APIError(f'{param} must be a string or an array of content parts, got '
                   f'{_type_name(content)}', param=param)
  out = []
  for j, part in enumerate(content):
    where = f'{param}[{j}]'
    if not isinstance(part, dict) or not isinstance(part.get('type'), str):
      raise APIError(f"{where} must be an object with a 'type'", param=where)
    kind = part['type']
    if kind == 'text':
      _check_fields(part, {'type', 'text'}, {}, f'{where}.')
      if not isinstance(part.get('text'), str):
        raise APIError(f"{where}.text must be a string", param=where)
      out.append(part['text'])
    elif kind in ('image_url', 'input_audio') and media:
      _check_fields(part, {'type', kind}, {}, f'{where}.')
      out.append(_turns.Image(_image(part, served, where)) if kind == 'image_url' else
                 _turns.Audio(_audio_part(part, served, where)))
    else:
      allowed = "'text', 'image_url' or 'input_audio'" if media else "'text'"
      raise APIError(f'{where}.type must be {allowed} here, got {kind!r}', param=where)
  return out


# ----------------------------------------------------------------------------- chat

def _tools(body) -> tuple[Tool, ...]:
  tools = body.get('tools')
  if tools is None:
    return ()
  if not isinstance(tools, list):
    raise APIError(f"'tools' must be an array, got {_type_name(tools)}", param='tools')
  out = []
  for i, t in enumerate(tools):
    where = f'tools[{i}]'
    if not isinstance(t, dict) or t.get('type') != 'function' or not isinstance(t.get('function'), dict):
      raise APIError(f"{where} must be {{'type': 'function', 'function': {{...}}}}", param=where)
    _check_fields(t, {'type', 'function'}, {}, f'{where}.')
    fn = t['function']
    _check_fields(fn, {'name', 'description', 'parameters', 'strict'}, {}, f'{where}.function.')
    if not isinstance(fn.get('name'), str):
      raise APIError(f'{where}.function.name must be a string', param=where)
    try:
      out.append(Tool.from_schema(fn))
    except (TypeError, ValueError) as e:
      raise APIError(f'{where}: {e}', param=where) from None
  names = [t.name for t in out]
  if len(set(names)) != len(names):
    raise APIError(f"'tools' must have distinct names, got {names}", param='tools')
  return tuple(out)


def _tool_choice(body, tools) -> Any:
  v = body.get('tool_choice')
  if v is None:
    return 'auto'
  if v in ('none', 'auto', 'required'):
    if v != 'none' and not tools:
      raise APIError(f"'tool_choice' {v!r} needs 'tools'", param='tool_choice')
    return v
  if isinstance(v, dict) and v.get('type') == 'function' and isinstance(v.get('function'), dict) \
      and isinstance(v['function'].get('name'), str):
    name = v['function']['name']
    if name not in [t.name for t in tools]:
      raise APIError(f"'tool_choice' names {name!r}, which is not in 'tools'",
                     param='tool_choice')
    return name
  raise APIError("'tool_choice' must be 'none', 'auto', 'required' or {'type': 'function', "
                 f"'function': {{'name': ...}}}}, got {json.dumps(v)[:60]}", param='tool_choice')


def _arguments(text, where: str) -> dict:
  try:
    args = json.loads(text) if isinstance(text, str) else text
  except json.JSONDecodeError as e:
    raise APIError(f'{where}: arguments must be a JSON object: {e}', param=where) from None
  if not isinstance(args, dict):
    raise APIError(f'{where}: arguments must be a JSON object, got {_type_name(args)}',
                   param=where)
  return args


def _response_value(content: str):
  try:
    value = json.loads(content)
  except json.JSONDecodeError:
    return content
  return value


def _messages(body, served: ServedModel) -> tuple[list[str], list[_turns.Turn]]:
  """The system texts and the other turns of `messages`."""
  messages = body.get('messages')
  if not isinstance(messages, list) or not messages:
    raise APIError("'messages' must be a non-empty array", param='messages')
  system, turns, calls = [], [], {}  # calls: tool_call id -> function name
  for i, m in enumerate(messages):
    where = f'messages[{i}]'
    if not isinstance(m, dict):
      raise APIError(f'{where} must be an object, got {_type_name(m)}', param=where)
    role = m.get('role')
    if role in ('system', 'developer'):
      _check_fields(m, {'role', 'content', 'name'}, {}, f'{where}.')
      text = ''.join(_content(m.get('content'), served, f'{where}.content', media=False))
      system.append(text)
    elif role == 'user':
      _check_fields(m, {'role', 'content', 'name'}, {}, f'{where}.')
      if m.get('content') is None:
        raise APIError(f'{where}.content is required', param=f'{where}.content')
      turns.append(_turns.User(*_content(m['content'], served, f'{where}.content', media=True)))
    elif role == 'assistant':
      _check_fields(m, {'role', 'content', 'name', 'tool_calls', 'reasoning_content',
                        'refusal'}, {}, f'{where}.')
      chunks = _content(m.get('content'), served, f'{where}.content', media=False)
      for j, call in enumerate(m.get('tool_calls') or []):
        cw = f'{where}.tool_calls[{j}]'
        if not isinstance(call, dict) or not isinstance(call.get('function'), dict) \
            or not isinstance(call['function'].get('name'), str):
          raise APIError(f"{cw} must be {{'id', 'type': 'function', 'function': {{'name', "
                         f"'arguments'}}}}", param=cw)
        fn = call['function']
        chunks.append(ToolCall(fn['name'], _arguments(fn.get('arguments', '{}'), cw)))
        if isinstance(call.get('id'), str):
          calls[call['id']] = fn['name']
      turns.append(_turns.Model(*chunks))  # an earlier reasoning_content stays out, as
      # the template leaves earlier thoughts out
    elif role == 'tool':
      _check_fields(m, {'role', 'content', 'tool_call_id', 'name'}, {}, f'{where}.')
      call_id = m.get('tool_call_id')
      name = calls.get(call_id) or m.get('name')
      if not isinstance(name, str):
        raise APIError(f'{where}.tool_call_id {call_id!r} names no earlier tool call',
                       param=f'{where}.tool_call_id')
      text = ''.join(_content(m.get('content'), served, f'{where}.content', media=False))
      turns.append(_turns.Model(ToolResponse(name, _response_value(text))))
    else:
      raise APIError(f"{where}.role must be 'system', 'developer', 'user', 'assistant' or "
                     f"'tool', got {role!r}", param=f'{where}.role')
  return system, turns


def _think(body, served: ServedModel) -> bool:
  effort = body.get('reasoning_effort')
  if effort is not None and effort not in ('none', 'minimal', 'low', 'medium', 'high'):
    raise APIError("'reasoning_effort' must be 'none', 'minimal', 'low', 'medium' or 'high', "
                   f'got {effort!r}', param='reasoning_effort')
  think = effort in ('low', 'medium', 'high')
  kwargs = body.get('chat_template_kwargs')
  if kwargs is not None:
    if not isinstance(kwargs, dict):
      raise APIError("'chat_template_kwargs' must be an object", param='chat_template_kwargs')
    _check_fields(kwargs, {'enable_thinking'}, {}, 'chat_template_kwargs.')
    think = _bool(kwargs, 'enable_thinking', think)
  if think and served.family == 'gemma3':
    raise APIError(f'model {served.name!r} is a Gemma 3 model: it has no thinking',
                   param='reasoning_effort' if effort else 'chat_template_kwargs')
  return think


def parse_chat(body: Any, served: ServedModel) -> Job:
  """A /v1/chat/completions body, checked, as a Job (APIError otherwise)."""
  if not isinstance(body, dict):
    raise APIError(f'the request body must be a JSON object, got {_type_name(body)}')
  _check_fields(body, _CHAT_FIELDS, _CHAT_REFUSED)
  _model(body, served)
  _n(body)
  stream = _bool(body, 'stream')
  include_usage = _stream_options(body, stream)
  sampling = _sampling(body)
  logprobs = _bool(body, 'logprobs')
  top = _number(body, 'top_logprobs', 0, MAX_TOP_LOGPROBS, integer=True)
  if top and not logprobs:
    raise APIError("'top_logprobs' needs 'logprobs': true", param='top_logprobs')
  tools = _tools(body)
  if tools and served.family == 'gemma3':
    raise APIError(f'model {served.name!r} is a Gemma 3 model: it has no native tool calls',
                   param='tools')
  choice = _tool_choice(body, tools)
  if body.get('parallel_tool_calls') is False:
    raise APIError("'parallel_tool_calls': false is not supported (the model may make several "
                   'calls in one reply)', param='parallel_tool_calls')
  _bool(body, 'parallel_tool_calls', True)
  think = _think(body, served)
  fmt = body.get('response_format')
  if fmt is not None:
    if not isinstance(fmt, dict) or fmt.get('type') not in ('text', 'json_object', 'json_schema'):
      raise APIError("'response_format' must be {'type': 'text'}, {'type': 'json_object'} or "
                     "{'type': 'json_schema', 'json_schema': {...}}", param='response_format')
    _check_fields(fmt, {'type', 'json_schema'}, {}, 'response_format.')
    if fmt['type'] == 'json_schema':
      inner = fmt.get('json_schema')
      if not isinstance(inner, dict) or not isinstance(inner.get('schema', {}), dict):
        raise APIError("'response_format.json_schema' must be an object with a 'schema' object",
                       param='response_format')
      _check_fields(inner, {'name', 'description', 'schema', 'strict'}, {}, 'response_format.json_schema.')
      fmt = {'type': 'json_schema', 'json_schema': {'schema': inner.get('schema', {})}}
    fmt = None if fmt['type'] == 'text' else fmt
  system, turns = _messages(body, served)
  chunks = ([_turns.THINK] if think else []) + ['\n\n'.join(system)] * bool(system)
  chunks += list(tools)
  conversation = ([_turns.System(*chunks)] if chunks else []) + turns
  conversation = _turns.as_turns(conversation)
  if conversation[-1].role == 'model' and not any(
      isinstance(c, ToolResponse) for c in conversation[-1].chunks):
    raise APIError("the last message must be from the user or a tool (a reply to an "
                   "assistant message is not continued)", param='messages')
  images, clips = _turns.media(conversation)
  prompt = _turns.render(conversation, family=served.family, generate=True)
  return Job('chat', prompt, True, images or None, clips or None,
             _max_tokens(body, 'max_tokens', 'max_completion_tokens'), sampling, _stop(body),
             stream, include_usage, logprobs, top or 0, fmt, tools, choice, think)


def parse_completion(body: Any, served: ServedModel) -> Job:
  """A /v1/completions body, checked, as a Job (APIError otherwise)."""
  if not isinstance(body, dict):
    raise APIError(f'the request body must be a JSON object, got {_type_name(body)}')
  _check_fields(body, _COMPLETION_FIELDS, {})
  _model(body, served)
  _n(body)
  prompt = body.get('prompt')
  if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
    prompt = prompt[0]
  if not isinstance(prompt, str) or not prompt:
    raise APIError("'prompt' must be a non-empty string (or a list of one string)",
                   param='prompt')
  if _bool(body, 'echo'):
    raise APIError("'echo': true is not supported", param='echo')
  if body.get('suffix') is not None:
    raise APIError("'suffix' is not supported (no fill-in-the-middle)", param='suffix')
  if _number(body, 'best_of', 1, 128, integer=True) not in (None, 1):
    raise APIError("'best_of' must be 1 on this server", param='best_of')
  stream = _bool(body, 'stream')
  top = _number(body, 'logprobs', 0, MAX_TOP_LOGPROBS, integer=True)
  return Job('completion', prompt, True, None, None, _max_tokens(body, 'max_tokens') or 16,
             _sampling(body), _stop(body), stream, _stream_options(body, stream),
             top is not None, top or 0)


# ----------------------------------------------------------------------------- responses

def new_id(prefix: str) -> str:
  return f'{prefix}-{secrets.token_hex(12)}'


def now() -> int:
  return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, cached: int) -> dict:
  return {'prompt_tokens': prompt_tokens, 'completion_tokens': completion_tokens,
          'total_tokens': prompt_tokens + completion_tokens,
          'prompt_tokens_details': {'cached_tokens': cached}}


def tool_call_json(call: ToolCall, index: int | None = None) -> dict:
  out = {'id': new_id('call'), 'type': 'function',
         'function': {'name': call.name, 'arguments': json.dumps(call.arguments)}}
  if index is not None:
    out['index'] = index
  return out


def token_logprob(text: str, logprob: float, top: Sequence[tuple[str, float]]) -> dict:
  return {'token': text, 'logprob': _finite(logprob), 'bytes': list(text.encode()),
          'top_logprobs': [{'token': t, 'logprob': _finite(lp), 'bytes': list(t.encode())}
                           for t, lp in top]}


def _finite(x: float) -> float:
  return x if math.isfinite(x) else -9999.0  # JSON has no -inf (OpenAI's floor)


def completion_logprobs(items: Sequence[tuple[str, float, Sequence[tuple[str, float]]]],
                        offset0: int = 0) -> dict:
  tokens, lps, tops, offsets = [], [], [], []
  at = offset0
  for text, lp, top in items:
    tokens.append(text)
    lps.append(_finite(lp))
    tops.append({t: _finite(v) for t, v in top})
    offsets.append(at)
    at += len(text)
  return {'tokens': tokens, 'token_logprobs': lps, 'top_logprobs': tops, 'text_offset': offsets}


def sse(data: dict | str) -> bytes:
  payload = data if isinstance(data, str) else json.dumps(data, separators=(',', ':'))
  return f'data: {payload}\n\n'.encode()

