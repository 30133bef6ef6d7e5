"""A model's reply read token by token: the answer, the thought channel and tool calls.

The tags are read by token id, not by their text (a model that spells `<|channel>` out
in ordinary characters writes text), so a reply parses the same however its pieces are
split while streaming. What lies between `<|tool_call>` and `<tool_call|>` is read as a
call (gemma4.chat.tools); a call that does not parse is kept as an error on the reply,
with its text, rather than dropped.
"""

from __future__ import annotations

import dataclasses

from gemma4.chat import tools, turns
from gemma4.tokenizer import Gemma4Tokenizer, IncrementalDecoder

ANSWER, THOUGHT, TOOL_CALL, TOOL_RESPONSE = 'answer', 'thought', 'tool_call', 'tool_response'


@dataclasses.dataclass(frozen=True)
class Piece:
  """A piece of a streamed reply: the channel it belongs to ('answer', 'thought',
  'tool_call' or 'tool_response') and its text; a 'tool_call' piece is one whole call
  (`call`), or the raw text of a call that did not parse (`error` says why); a
  'tool_response' piece (ToolSampler.stream) is the answer a tool gave (`response`),
  its text as the model reads it."""
  channel: str
  text: str
  call: tools.ToolCall | None = None
  error: str | None = None
  response: tools.ToolResponse | None = None


class ReplyParser:
  """Feed it a reply's ids one at a time (`add`); it returns the pieces each completes.

  `chunks` is the reply so far as turn chunks (text, Thought, ToolCall), in order.
  `in_thought` / `thought_tokens` tell where it is (for a thinking budget).
  """

  def __init__(self, tokenizer: Gemma4Tokenizer):
    self.tokenizer = tokenizer
    ids = {}
    for tag in (turns.CHANNEL_OPEN, turns.CHANNEL_CLOSE, tools.CALL_OPEN, tools.CALL_CLOSE):
      try:
        ids[tag] = tokenizer.token_id(tag)
      except ValueError:  # a tokenizer without the tag (Gemma 3): never in a reply
        ids[tag] = None
    self.channel_open, self.channel_close = ids[turns.CHANNEL_OPEN], ids[turns.CHANNEL_CLOSE]
    self.call_open, self.call_close = ids[tools.CALL_OPEN], ids[tools.CALL_CLOSE]
    self.mode = ANSWER
    self.thought_tokens = 0
    self.chunks: list = []
    self.errors: list[Piece] = []
    self._head = ''  # a channel's name line, until its newline
    self._decoder = IncrementalDecoder(tokenizer)
    self._call_ids: list[int] = []

  @property
  def in_thought(self) -> bool:
    return self.mode in (THOUGHT, 'head')

  def add(self, token: int) -> list[Piece]:
    out: list[Piece] = []
    if token == self.channel_open and self.mode == ANSWER:
      out += self._flush()
      self.mode, self._head, self.thought_tokens = 'head', '', 0
      self.chunks.append(turns.Thought(''))
      return out
    if token == self.channel_close and self.in_thought:
      out += self._flush()
      self.mode = ANSWER
      return out
    if token == self.call_open and self.mode == ANSWER:
      out += self._flush()
      self.mode, self._call_ids = TOOL_CALL, []
      return out
    if token == self.call_close and self.mode == TOOL_CALL:
      self.mode = ANSWER
      return [self._call()]
    if self.mode == TOOL_CALL:
      self._call_ids.append(token)
      return out
    if self.in_thought:
      self.thought_tokens += 1
    return self._text(self._decoder.add(token))

  def finish(self) -> list[Piece]:
    """The pieces still held back at the end (an unfinished character, an unclosed call)."""
    out = self._text(self._decoder.rest())
    self._decoder = IncrementalDecoder(self.tokenizer)
    if self.mode == TOOL_CALL:  # the reply ended inside a call
      text = tools.CALL_OPEN + self.tokenizer.decode(self._call_ids)
      piece = Piece(TOOL_CALL, text, error='the reply ended before the call was closed')
      self.errors.append(piece)
      out.append(piece)
      self.mode = ANSWER
    return out

  def _flush(self) -> list[Piece]:
    out = self._text(self._decoder.rest())
    self._decoder = IncrementalDecoder(self.tokenizer)
    return out

  def _text(self, text: str) -> list[Piece]:
    if not text:
      return []
    if self.mode == 'head':  # `thought\n` opens the channel; the rest is the thought
      self._head += text
      if '\n' not in self._head:
        return []
      text = self._head.split('\n', 1)[1]
      self.mode = THOUGHT
      if not text:
        return []
    if self.mode == THOUGHT:
      self.chunks[-1] = turns.Thought(self.chunks[-1].text + text)
      return [Piece(THOUGHT, text)]
    if self.chunks and isinstance(self.chunks[-1], str):
      self.chunks[-1] += text
    else:
      self.chunks.append(text)
    return [Piece(ANSWER, text)]

  def _call(self) -> Piece:
    body = self.tokenizer.decode(self._call_ids)
    text = tools.CALL_OPEN + body + tools.CALL_CLOSE
    try:
      call = tools.ToolCall(*tools.parse_body(body, 'call'))
    except tools.ToolFormatError as e:
      piece = Piece(TOOL_CALL, text, error=str(e))
      self.errors.append(piece)
      return piece
    self.chunks.append(call)
    return Piece(TOOL_CALL, text, call=call)
