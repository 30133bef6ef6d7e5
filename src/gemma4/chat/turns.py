"""A conversation as data, and the prompt text of each model family.

Turns (`System`, `User`, `Model`) hold chunks: text, `Thought`, `THINK` (thinking on),
`Image` / `Audio` (a `<|image|>` / `<|audio|>` placeholder with its data), `Tool`
declarations, `ToolCall` and `ToolResponse`. `render` writes the Gemma 4 prompt text as
the official `dialog` package does (`Conversation.as_text()`), and the Gemma 3 text as
its chat template does (no system role: the system text opens the first user turn).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Union

from gemma4.chat import tools as _tools
from gemma4.chat.tools import Tool, ToolCall, ToolResponse

ROLES = ('system', 'user', 'model')


@dataclasses.dataclass(frozen=True)
class Thought:
  """The model's thinking before its answer (`<|channel>thought\\n...<channel|>`)."""
  text: str

  def __post_init__(self):
    if not isinstance(self.text, str):
      raise TypeError(f'Thought.text must be a str, got {type(self.text).__name__}')


@dataclasses.dataclass(frozen=True)
class _Think:
  """The switch that turns thinking on (`<|think|>`, in the system turn)."""


THINK = _Think()


@dataclasses.dataclass(frozen=True, eq=False)
class Image:
  """An image in a turn: an array [H, W, C] or a PIL image (the sampler checks it)."""
  data: Any


@dataclasses.dataclass(frozen=True, eq=False)
class Audio:
  """A clip in a turn: samples (float in [-1, 1] or int16) at the sampler's rate."""
  data: Any


Chunk = Union[str, Thought, _Think, Image, Audio, Tool, ToolCall, ToolResponse]
_CHUNK_TYPES = (str, Thought, _Think, Image, Audio, Tool, ToolCall, ToolResponse)


@dataclasses.dataclass(frozen=True)
class Turn:
  """One turn: a role ('system', 'user' or 'model') and its chunks, in order."""

  role: str
  chunks: tuple[Chunk, ...] = ()

  def __post_init__(self):
    if self.role not in ROLES:
      raise ValueError(f'Turn role must be one of {ROLES}, got {self.role!r}')
    chunks = tuple(_flatten(self.chunks))
    for c in chunks:
      if not isinstance(c, _CHUNK_TYPES):
        raise TypeError(f'a {self.role} turn takes str, Thought, THINK, Image, Audio, Tool, '
                        f'ToolCall or ToolResponse chunks, got {type(c).__name__} {c!r:.80}')
    object.__setattr__(self, 'chunks', chunks)

  @property
  def text(self) -> str:
    """The turn's plain text (its str chunks joined)."""
    return ''.join(c for c in self.chunks if isinstance(c, str))

  @property
  def thoughts(self) -> str:
    return ''.join(c.text for c in self.chunks if isinstance(c, Thought))

  @property
  def tool_calls(self) -> list[ToolCall]:
    return [c for c in self.chunks if isinstance(c, ToolCall)]

  def without_thoughts(self) -> Turn:
    return Turn(self.role, tuple(c for c in self.chunks if not isinstance(c, Thought)))


def System(*chunks: Chunk) -> Turn:  # noqa: N802 (a turn constructor, as dialog spells it)
  return Turn('system', chunks)


def User(*chunks: Chunk) -> Turn:  # noqa: N802
  return Turn('user', chunks)


def Model(*chunks: Chunk) -> Turn:  # noqa: N802
  return Turn('model', chunks)


def _flatten(values: Iterable) -> Iterable:
  for v in values:
    if isinstance(v, (list, tuple)):
      yield from _flatten(v)
    else:
      yield v


def as_turns(conversation: Turn | str | Sequence[Turn]) -> list[Turn]:
  """A conversation as a list of turns (a str is one user turn); consecutive turns of one
  role are merged, as dialog merges them."""
  if isinstance(conversation, (str, Turn)):
    conversation = [conversation]
  if not isinstance(conversation, Sequence):
    raise TypeError(f'a conversation is a str, a Turn or a sequence of Turns, got '
                    f'{type(conversation).__name__}')
  turns: list[Turn] = []
  for t in conversation:
    if isinstance(t, str):
      t = User(t)
    if not isinstance(t, Turn):
      raise TypeError(f'a conversation holds Turns (gemma4.chat.User(...), Model(...), '
                      f'System(...)) or str, got {type(t).__name__}')
    if turns and turns[-1].role == t.role:
      turns[-1] = Turn(t.role, turns[-1].chunks + t.chunks)
    else:
      turns.append(t)
  return turns


def media(turns: Sequence[Turn]) -> tuple[list[Any], list[Any]]:
  """The images and the audio clips of the turns, in the order of their placeholders."""
  chunks = [c for t in turns for c in t.chunks]
  return ([c.data for c in chunks if isinstance(c, Image)],
          [c.data for c in chunks if isinstance(c, Audio)])


# Gemma 4 tags (dialog's `Tags`).
TURN_OPEN, TURN_CLOSE = '<|turn>', '<turn|>'
CHANNEL_OPEN, CHANNEL_CLOSE = '<|channel>', '<channel|>'
THINK_TAG = '<|think|>'
IMAGE_TAG, AUDIO_TAG = '<|image|>', '<|audio|>'


def _chunk_text(c: Chunk) -> str:
  if isinstance(c, str):
    return c
  if isinstance(c, Thought):
    return f'{CHANNEL_OPEN}thought\n{c.text}{CHANNEL_CLOSE}'
  if isinstance(c, _Think):
    return THINK_TAG
  if isinstance(c, Image):
    return IMAGE_TAG
  if isinstance(c, Audio):
    return AUDIO_TAG
  return c.as_text()  # Tool, ToolCall, ToolResponse


def _turn_text(t: Turn, open_: bool = True, close: bool = True) -> str:
  return ((f'{TURN_OPEN}{t.role}\n' if open_ else '') + ''.join(_chunk_text(c) for c in t.chunks)
          + (TURN_CLOSE if close else ''))


def render(conversation, *, family: str = 'gemma4', generate: bool = True) -> str:
  """The prompt text of a conversation.

  generate: the text the model continues (dialog's inference form): an open model turn
  ends it (`<|turn>model\\n`, or the last model turn left open), a conversation that
  starts with a model turn does not open it, and a model turn that ends with a tool call
  is followed by `<|tool_response>`. Otherwise every turn is closed (training form).
  family: 'gemma4' (dialog's text) or 'gemma3' (the Gemma 3 chat template's).
  """
  turns = as_turns(conversation)
  if family == 'gemma3':
    return _render_gemma3(turns, generate)
  if family != 'gemma4':
    raise ValueError(f"family must be 'gemma4' or 'gemma3', got {family!r}")
  if not turns:
    return ''
  if not generate:
    return '\n'.join(_turn_text(t) for t in turns)
  if turns[-1].role != 'model':
    turns = turns + [Model()]
  last = len(turns) - 1
  parts = [_turn_text(t, open_=not (i == 0 and t.role == 'model'), close=i != last)
           for i, t in enumerate(turns)]
  first = turns[0]
  if first.role == 'model' and first.chunks and isinstance(first.chunks[0], ToolResponse):
    parts[0] = parts[0].removeprefix(_tools.RESPONSE_OPEN)  # the model sampled it
  if turns[-1].chunks and isinstance(turns[-1].chunks[-1], ToolCall):
    parts[-1] += _tools.RESPONSE_OPEN
  return '\n'.join(parts)


def _render_gemma3(turns: list[Turn], generate: bool) -> str:
  """Gemma 3's chat template: no system role (the system text and a blank line open the
  first user turn), text trimmed, each turn closed by `<end_of_turn>\\n`."""
  prefix = ''
  if turns and turns[0].role == 'system':  # its text as it is (the template trims the others)
    prefix, turns = _gemma3_content(turns[0], trim=False) + '\n\n', turns[1:]
  out = []
  for i, t in enumerate(turns):
    if t.role == 'system':
      raise ValueError('Gemma 3 takes a system turn only as the first turn')
    head = prefix if i == 0 else ''
    out.append(f'<start_of_turn>{t.role}\n{head}{_gemma3_content(t)}<end_of_turn>\n')
  if generate:
    out.append('<start_of_turn>model\n')
  return ''.join(out)


def _gemma3_content(t: Turn, trim: bool = True) -> str:
  parts = []
  for c in t.chunks:
    if isinstance(c, str):
      parts.append(c.strip() if trim else c)
    elif isinstance(c, Image):
      parts.append('<start_of_image>')
    else:
      raise ValueError(f'Gemma 3 models take text and images only; a {t.role} turn holds '
                       f'{type(c).__name__.lstrip("_")}')
  return ''.join(parts)


# ------------------------------------------------------------------------ JSON

def to_json(turns: Sequence[Turn]) -> dict:
  """A conversation as JSON-able data: {'turns': [{'role', 'chunks': [...]}, ...]} with a
  chunk a str or one of {'thought': str}, {'think': true}, {'image': null},
  {'audio': null} (media are not kept: only where they were), {'tool': {name,
  description, parameters, response}}, {'call': {name, arguments}}, {'response': {name,
  response}}."""
  def chunk(c):
    if isinstance(c, str):
      return c
    if isinstance(c, Thought):
      return {'thought': c.text}
    if isinstance(c, _Think):
      return {'think': True}
    if isinstance(c, Image):
      return {'image': None}
    if isinstance(c, Audio):
      return {'audio': None}
    if isinstance(c, Tool):
      return {'tool': {k: v for k, v in (('name', c.name), ('description', c.description),
                                         ('parameters', c.parameters), ('response', c.response))
                       if v is not None}}
    if isinstance(c, ToolCall):
      return {'call': {'name': c.name, 'arguments': c.arguments}}
    return {'response': {'name': c.name, 'response': c.response}}

  return {'turns': [{'role': t.role, 'chunks': [chunk(c) for c in t.chunks]} for t in turns]}


def from_json(data) -> list[Turn]:
  """The turns of `to_json`'s data; an error names what is wrong and where."""
  if not isinstance(data, dict) or not isinstance(data.get('turns'), list):
    raise ValueError("a conversation is {'turns': [...]}")
  out = []
  for i, t in enumerate(data['turns']):
    if not isinstance(t, dict) or 'role' not in t or not isinstance(t.get('chunks'), list):
      raise ValueError(f"turn {i}: expected {{'role': ..., 'chunks': [...]}}, got {t!r:.80}")
    chunks = []
    for j, c in enumerate(t['chunks']):
      where = f'turn {i} chunk {j}'
      if isinstance(c, str):
        chunks.append(c)
        continue
      if not isinstance(c, dict) or len(c) != 1:
        raise ValueError(f'{where}: expected a str or a one-key dict, got {c!r:.80}')
      (kind, v), = c.items()
      try:
        if kind == 'thought':
          chunks.append(Thought(v))
        elif kind == 'think':
          chunks.append(THINK)
        elif kind in ('image', 'audio'):
          raise ValueError(f'{kind}s are not kept in a saved conversation')
        elif kind == 'tool':
          chunks.append(Tool.from_schema(v))
        elif kind == 'call':
          chunks.append(ToolCall(v['name'], dict(v.get('arguments', {}))))
        elif kind == 'response':
          chunks.append(ToolResponse(v['name'], v.get('response', {})))
        else:
          raise ValueError(f'unknown chunk kind {kind!r}')
      except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f'{where}: {e}') from e
    out.append(Turn(t['role'], tuple(chunks)))
  return out
