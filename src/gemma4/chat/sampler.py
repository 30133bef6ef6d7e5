"""ChatSampler: the official `gm.text.ChatSampler` API on gemma4's sampler, with thinking,
native tool calls and a history that holds what the model would have seen.

The KV cache carries the conversation between turns. Each turn renders the whole
conversation (gemma4.chat.turns, earlier turns' thoughts left out as the official
template leaves them) and prefills only what the cache does not hold yet. When the cache
holds text the new rendering no longer has (a thought of the last reply, a tool call
written differently), the cache goes back to the turn's clean point (the state the turn
was prefilled from, kept until the next turn) and the rest is prefilled from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from gemma4 import kv_cache
from gemma4 import sampling as _sampling
from gemma4.chat import grammar
from gemma4.chat import reply as _reply
from gemma4.chat import tools as _tools
from gemma4.chat import turns as _turns
from gemma4.chat.reply import Piece
from gemma4.chat.turns import Turn
from gemma4.sampler import Gemma4Sampler, SamplingState
from gemma4.sharding import to_host
from gemma4.stops import StopText, check_stop


@dataclasses.dataclass(frozen=True, eq=False)  # compared and hashed as the str it is
class ChatOutput(str):
  """A reply: the answer text (the str value itself, also `text`), the thought, the tool
  calls, the reply as a model turn, and how it ended."""
  text: str
  thoughts: str
  tool_calls: tuple[_tools.ToolCall, ...]
  turn: Turn
  # 'end_of_turn', 'tool_call', 'eos', 'stop', 'max_new_tokens', 'cache_full', 'interrupted'
  stop_reason: str
  errors: tuple[Piece, ...] = ()  # tool calls that did not parse
  tokens: tuple[int, ...] = ()  # the ids sampled, the end token included

  def __new__(cls, text: str, *args, **kwargs):
    return super().__new__(cls, text)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class ChatSampler:
  """A stateful chat with an instruction-tuned model (the official ChatSampler's fields).

  Beyond the official ones: `system` (the system turn's text), `think` (thinking on: the
  `<|think|>` switch in the system turn), `thinking_budget` (at most this many tokens in
  the thought channel, after which it is closed and the answer begins), `tools` (Python
  functions, JSON schemas or gemma4.chat.Tool, declared in the system turn), and
  `constrain_tool_calls` (a call the model opens is held to a declared tool's name and
  parameters schema, token by token; gemma4.chat.grammar.tool_call_grammar), and
  `mesh` / `sharding_rules` (the conversation on a device mesh, as Gemma4Sampler).
  `chat()` returns a ChatOutput: a str (the answer) with `.thoughts`, `.tool_calls`.
  """

  model: Any
  params: Any = dataclasses.field(repr=False)
  multi_turn: bool = False
  print_stream: bool = False
  tokenizer: Any = None
  sampling: Any = dataclasses.field(default_factory=_sampling.Greedy)
  forbidden_tokens: Sequence[str | int] | None = None
  stop_tokens: Sequence[str | int] | None = None
  cache_length: int = 4096
  max_out_length: int = 2048
  pad_length: None | int | tuple[int, ...] = (256, 512, 1024)
  patch_size: int = 16
  max_soft_tokens: int = 1120
  pooling_kernel_size: int = 3
  audio_sample_rate: int = 16000
  audio_seq_length: int = 750
  mesh: Any = None
  sharding_rules: Mapping[str, str | None] | None = None
  system: str | None = None
  think: bool = False
  thinking_budget: int | None = None
  tools: Sequence[Any] = ()
  constrain_tool_calls: bool = True
  last_state: SamplingState | None = dataclasses.field(default=None, repr=False)
  turns: list[Turn] = dataclasses.field(default_factory=list)

  def __post_init__(self):
    if self.turns:
      raise ValueError('a ChatSampler starts with no turns; pass an earlier conversation as '
                       'the first chat() prompt instead (a list of turns)')
    if self.last_state is not None:
      raise ValueError('a ChatSampler starts with last_state=None; it keeps its own state')
    sampler = Gemma4Sampler(**{f.name: getattr(self, f.name)  # the same-named fields
                               for f in dataclasses.fields(Gemma4Sampler)})
    object.__setattr__(self, 'sampler', sampler)
    object.__setattr__(self, 'tokenizer', sampler.tokenizer)
    object.__setattr__(self, 'params', sampler.params)
    family = 'gemma3' if self.model.config.family == 'gemma3' else 'gemma4'
    object.__setattr__(self, 'family', family)
    for name in ('multi_turn', 'print_stream', 'think', 'constrain_tool_calls'):
      if not isinstance(getattr(self, name), bool):
        raise TypeError(f'{name} must be True or False, got {getattr(self, name)!r}')
    if self.thinking_budget is not None:
      b = self.thinking_budget
      if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f'thinking_budget must be None or an int >= 1 (tokens), got {b!r}')
    if self.system is not None and not isinstance(self.system, str):
      raise TypeError(f'system must be None or a str, got {type(self.system).__name__}')
    if isinstance(self.tools, (str, Mapping)) or not isinstance(self.tools, Sequence):
      raise TypeError(f'tools must be a sequence of tools, got {type(self.tools).__name__}')
    object.__setattr__(self, 'tools', tuple(_tools.as_tool(t) for t in self.tools))
    names = [t.name for t in self.tools]
    if len(set(names)) != len(names):
      raise ValueError(f'tools must have distinct names, got {names}')
    calls = (grammar.tool_call_grammar(self.tools, sampler.tokenizer)
             if self.tools and self.constrain_tool_calls else None)
    object.__setattr__(self, '_call_grammar', calls)  # the tools are fixed: built once
    if family == 'gemma3' and (self.think or self.tools or self.thinking_budget):
      raise ValueError(f'model {self.model.name!r} is a Gemma 3 model: it has no thinking '
                       'and no native tool calls (think, thinking_budget and tools are '
                       'Gemma 4 only)')
    self._reset()

  # ------------------------------------------------------------------ state

  def _reset(self):
    object.__setattr__(self, 'last_state', None)
    object.__setattr__(self, 'turns', [])
    object.__setattr__(self, '_cached_text', '')  # the text of the ids in the cache
    object.__setattr__(self, '_clean', (None, ''))  # (state, its text): the turn's start

  def reset(self) -> None:
    """Forgets the conversation (the next chat starts with an empty cache)."""
    self._reset()

  def load(self, turns) -> None:
    """Takes up a conversation (Turns, e.g. from gemma4.chat.turns.from_json): the next
    chat() continues it (prefilling it then). System turns set `system` and `think`."""
    turns = _turns.as_turns(turns) if turns else []
    self._reset()
    rest = []
    for t in turns:
      if t.role != 'system':
        rest.append(t)
        continue
      think = any(c is _turns.THINK for c in t.chunks)
      tools = [c for c in t.chunks if isinstance(c, _tools.Tool)]
      object.__setattr__(self, 'system', t.text or None)
      object.__setattr__(self, 'think', think)
      if tools:
        object.__setattr__(self, 'tools', tuple(tools))
        object.__setattr__(self, '_call_grammar', grammar.tool_call_grammar(
            self.tools, self.tokenizer) if self.constrain_tool_calls else None)
    object.__setattr__(self, 'turns', rest)

  @property
  def conversation(self) -> list[Turn]:
    """The turns so far, the system turn first (as they are rendered)."""
    return self._system_turns() + list(self.turns)

  def _system_turns(self) -> list[Turn]:
    chunks = ([_turns.THINK] if self.think else []) + ([self.system] if self.system else [])
    chunks += list(self.tools)
    return [_turns.System(*chunks)] if chunks else []

  def history_text(self) -> str:
    """The prompt text of the conversation so far, as the cache holds it."""
    return self._cached_text

  # ------------------------------------------------------------------ chatting

  def chat(self, prompt, *, images=None, audio=None, audio_lengths=None, sampling=None,
           rng=None, max_new_tokens: int | None = None, multi_turn: bool | None = None,
           print_stream: bool | None = None, response_format=None, stop=None,
           allowed_tokens=None, repetition_penalty=None, presence_penalty=None,
           frequency_penalty=None, logit_bias=None) -> ChatOutput:
    """Answers a prompt: a str (a user turn; `<|image|>` / `<|audio|>` placeholders take
    `images` / `audio` in order), a Turn or a list of Turns (the media in their chunks).
    With multi_turn (the field, or this argument) the earlier turns are the context.

    response_format: the answer as a JSON schema, a regular expression or choices (see
    gemma4.chat.grammar), enforced token by token (a thought before it is free).
    stop: a str or a list of str; the answer ends before the first of them (which is
    left out of the answer and the history), found across piece boundaries.
    allowed_tokens: a function of the reply's ids so far giving the ids the next may be
    (Gemma4Sampler.stream_tokens), applied on top.
    repetition_penalty, presence_penalty, frequency_penalty, logit_bias: as in
    Gemma4Sampler.sample (gemma4.sampling.Penalties)."""
    show = self.print_stream if print_stream is None else print_stream
    pieces = self.stream(prompt, images=images, audio=audio, audio_lengths=audio_lengths,
                         sampling=sampling, rng=rng, max_new_tokens=max_new_tokens,
                         multi_turn=multi_turn, response_format=response_format, stop=stop,
                         allowed_tokens=allowed_tokens, repetition_penalty=repetition_penalty,
                         presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                         logit_bias=logit_bias)
    for piece in pieces:
      if show and piece.channel == _reply.ANSWER:
        print(piece.text, end='', flush=True)
    if show:
      print(flush=True)
    return pieces.output

  def stream(self, prompt, *, images=None, audio=None, audio_lengths=None, sampling=None,
             rng=None, max_new_tokens: int | None = None, multi_turn: bool | None = None,
             response_format=None, stop=None, allowed_tokens=None, **penalties) -> _Reply:
    """Like chat(), but yields the reply's pieces as they are decoded: Piece(channel,
    text) with channel 'thought', 'answer' or 'tool_call' (one whole call). After the
    last, the iterator's `output` is the ChatOutput."""
    multi_turn = self.multi_turn if multi_turn is None else multi_turn
    if not isinstance(multi_turn, bool):
      raise TypeError(f'multi_turn must be True, False or None, got {multi_turn!r}')
    stops = check_stop(stop)
    hook = self._allowed(allowed_tokens, response_format)  # checked before any compute
    new = self._new_turns(prompt, images, audio)
    if audio_lengths is not None:
      raise ValueError('audio_lengths: give each clip at its own length (an Audio chunk per '
                       'clip); ChatSampler keeps the clips for later turns')
    turns = (list(self.turns) if multi_turn else []) + new
    full = self._system_turns() + turns
    if self.family == 'gemma4':  # earlier replies' thoughts are not shown to the model
      last_user = max((i for i, t in enumerate(full) if t.role != 'model'), default=-1)
      full = [t.without_thoughts() if t.role == 'model' and i < last_user else t
              for i, t in enumerate(full)]
    text = _turns.render(full, family=self.family)
    state, cached = (self.last_state, self._cached_text) if multi_turn else (None, '')
    if state is not None and not text.startswith(cached):  # back to the clean point
      clean, clean_text = self._clean
      if clean is not None and text.startswith(clean_text):
        state, cached = self._rewound(clean), clean_text
      else:  # or to the start
        state = None
    if state is None:
      cached = ''
    delta = text[len(cached):]
    images_all, audio_all = _turns.media(full)
    image_tag = '<start_of_image>' if self.family == 'gemma3' else _turns.IMAGE_TAG
    n_img, n_aud = cached.count(image_tag), cached.count(_turns.AUDIO_TAG)
    ids = self.sampler.stream_tokens(
        delta, images=images_all[n_img:] or None, audio=audio_all[n_aud:] or None,
        sampling=sampling, rng=rng, max_new_tokens=max_new_tokens, last_state=state,
        allowed_tokens=hook, return_state=True, **penalties)
    return _Reply(self, ids, (state, cached), text, turns, stops)

  def _rewound(self, clean: SamplingState) -> SamplingState:
    """The last state taken back to the clean point (kept as its local rings only)."""
    cache = kv_cache.rewind(self.last_state.cache, clean.cache, self.model.config)
    return dataclasses.replace(self.last_state, cache=cache, last_token=clean.last_token,
                               done=clean.done)

  def _allowed(self, user: Callable | None, response_format):
    """A reply's allowed_tokens hook (see reply_constraint)."""
    return reply_constraint(self.tokenizer, self.sampler.end_tokens, user=user,
                            response_format=response_format, tool_grammar=self._call_grammar,
                            thinking_budget=self.thinking_budget, think=self.think)

  def _new_turns(self, prompt, images, audio) -> list[Turn]:
    if isinstance(prompt, str):
      return [_turns.User(*_with_media(prompt, images, audio))]
    if images is not None or audio is not None:
      raise ValueError('images= and audio= go with a str prompt; a Turn holds its media as '
                       'gemma4.chat.Image / Audio chunks')
    if isinstance(prompt, Turn):
      return [prompt]
    if isinstance(prompt, Sequence) and prompt and all(isinstance(t, Turn) for t in prompt):
      return list(prompt)
    raise TypeError(f'prompt must be a str, a Turn or a non-empty list of Turns, got '
                    f'{type(prompt).__name__}')


class _ToolReplies:
  """The iterator ToolSampler.stream runs: each reply's pieces, the tools' answers
  between them; `output` (the last reply's) at the end."""

  def __init__(self, chat: ToolSampler, first: _Reply, max_new_tokens, sampling, rng):
    self.output: ChatOutput | None = None
    self._reply, self._stopped = first, False
    self._gen = self._run(chat, max_new_tokens, sampling, rng)

  def __iter__(self) -> Iterator[Piece]:
    return self._gen

  def stop(self) -> None:
    """Ends the reply being decoded at its next token and runs no more tools."""
    self._stopped = True
    self._reply.stop()

  def _run(self, chat, max_new_tokens, sampling, rng):
    for rounds in range(chat.max_tool_rounds + 1):
      yield from self._reply
      out = self._reply.output
      if not out.tool_calls or self._stopped or out.stop_reason in ('max_new_tokens', 'cache_full'):
        self.output = out
        return
      if rounds == chat.max_tool_rounds:
        raise RuntimeError(f'the model was still calling tools after max_tool_rounds='
                           f'{chat.max_tool_rounds} rounds (last: {out.tool_calls[0]})')
      responses = [chat.run_tool(c) for c in out.tool_calls]
      for r in responses:
        yield Piece(_reply.TOOL_RESPONSE, r.as_text(), response=r)
      self._reply = ChatSampler.stream(chat, _turns.Model(*responses), multi_turn=True,
                                       max_new_tokens=max_new_tokens, sampling=sampling, rng=rng)


class _Reply:
  """The iterator chat() and stream() run: pieces as they come; `output` at the end."""

  def __init__(self, chat: ChatSampler, ids, start: tuple, text: str, turns: list[Turn],
               stops: tuple[str, ...] = ()):
    self.output: ChatOutput | None = None
    self._stop = False
    self._gen = self._run(chat, ids, start, text, turns, stops)

  def __iter__(self) -> Iterator[Piece]:
    return self._gen

  def stop(self) -> None:
    """Ends the reply at the next token (the CLI's Ctrl-C): what was said is kept, with
    stop_reason 'interrupted'. Go on iterating to collect the rest and `output`."""
    self._stop = True

  def _run(self, chat, ids, start, text, turns, stops):
    parser = _reply.ReplyParser(chat.tokenizer)
    end_tokens = set(chat.sampler.end_tokens)
    sampled = []
    scan = StopText(stops)  # over the current run of answer text (a call or thought ends it)
    for token in ids:
      sampled.append(token)
      if self._stop:
        ids.close()
        break
      if token in end_tokens:
        continue
      for piece in parser.add(token):
        if piece.channel != _reply.ANSWER or not stops:
          if rest := scan.flush():  # the answer text before a call is whole
            yield Piece(_reply.ANSWER, rest)
          scan = StopText(stops)
          yield piece
          continue
        begin = len(parser.chunks[-1]) - len(piece.text) - len(scan.text)  # of this run
        shown, found = scan.add(piece.text)
        if shown:
          yield Piece(_reply.ANSWER, shown)
        if found:  # the answer ends before the stop string
          parser.chunks[-1] = parser.chunks[-1][:begin + len(scan.text)]
          break
      if scan.found:
        ids.close()
        break
    for piece in parser.finish():
      if piece.channel == _reply.ANSWER and stops and not scan.found:
        shown, found = scan.add(piece.text)
        if found:
          parser.chunks[-1] = parser.chunks[-1][:len(parser.chunks[-1]) - len(piece.text)]
        piece = Piece(_reply.ANSWER, shown)
      if piece.text or piece.channel != _reply.ANSWER:
        yield piece
    if rest := scan.flush():
      yield Piece(_reply.ANSWER, rest)
    stopped = scan.found
    state = ids.state
    reason = ('stop' if stopped else 'interrupted' if self._stop else
              _stop_reason(chat.tokenizer, sampled[-1], end_tokens, state))
    if reason in ('end_of_turn', 'eos') and parser.chunks and isinstance(parser.chunks[-1], _tools.ToolCall):
      reason = 'tool_call'  # small models end a call with <eos> or <turn|>, not <|tool_response>
    reply = _turns.Model(*[c for c in parser.chunks if c != ''])
    # The cache holds every sampled token but the last (as in the official sampler);
    # the state this turn was prefilled from stays the clean point until the next turn.
    cached = chat.tokenizer.decode(sampled[:-1])
    object.__setattr__(chat, 'turns', list(turns) + [reply])
    object.__setattr__(chat, 'last_state', state)
    object.__setattr__(chat, '_cached_text', text + cached)
    clean, clean_text = start  # kept as its local rings: the global buffers are in `state`
    if clean is not None:
      clean = dataclasses.replace(clean, cache=kv_cache.rings(clean.cache, chat.model.config),
                                  predicted_tokens=None, logprobs=None, penalties=None)
    object.__setattr__(chat, '_clean', (clean, clean_text))
    self.output = ChatOutput(reply.text, reply.thoughts, tuple(reply.tool_calls), reply,
                             reason, tuple(parser.errors), tuple(sampled))


def reply_constraint(tokenizer, end_tokens, *, response_format=None, tool_grammar=None,
                     thinking_budget: int | None = None, think: bool = False,
                     user: Callable | None = None) -> Callable | None:
  """The allowed_tokens hook of one reply (a function of the ids so far), or None when
  nothing constrains it: the thinking budget while in the thought (then the channel is
  closed), the response_format's grammar (grammar.Constraint) on the answer after it,
  a tool call held to `tool_grammar` (grammar.tool_call_grammar) once the model opens
  one, and the user's hook on top of all of them."""
  if user is not None and not callable(user):
    raise TypeError(f'allowed_tokens must be None or a function of the ids so far, got '
                    f'{type(user).__name__}')
  constraint = None
  if response_format is not None:
    constraint = grammar.Constraint(tokenizer, response_format, end_tokens)
  calls = tool_grammar
  if thinking_budget is None and constraint is None and calls is None:
    return user
  parser = _reply.ReplyParser(tokenizer)
  seen, answer_from, call = [], [0], [None, 0]  # call: (its constraint, where it starts)

  def allowed(ids):
    for t in ids[len(seen):]:
      was_thinking, was_calling = parser.in_thought, parser.mode == _reply.TOOL_CALL
      parser.add(t)
      seen.append(t)
      if was_thinking and not parser.in_thought:
        answer_from[0] = len(seen)  # the answer starts after the thought's close
      if calls is not None and not was_calling and parser.mode == _reply.TOOL_CALL:
        call[:] = [grammar.Constraint(tokenizer, calls, end_tokens), len(seen)]
    if calls is not None and parser.mode == _reply.TOOL_CALL:
      mask = call[0](ids[call[1]:])
      return mask if user is None else _intersect(mask, user(ids), tokenizer.vocab_size)
    if parser.in_thought:
      if thinking_budget is not None and parser.thought_tokens >= thinking_budget:
        return [parser.channel_close]
      return None if user is None else user(ids)
    mask = None
    if constraint is not None:
      mask = constraint(ids[answer_from[0]:])
      if think and not ids and parser.channel_open is not None:
        mask[parser.channel_open] = True  # the model may think first
    if user is not None:
      mask = _intersect(mask, user(ids), tokenizer.vocab_size)
    return mask

  return allowed


def _intersect(mask, theirs, vocab_size: int):
  """Tokens both allow (None allows all; `theirs` may be ids or a bool mask)."""
  if theirs is None:
    return mask
  arr = np.asarray(theirs)
  if arr.dtype != bool:
    arr = np.zeros(vocab_size, bool)
    arr[np.asarray(theirs)] = True
  return arr if mask is None else mask & arr


def _stop_reason(tokenizer, last, end_tokens, state) -> str:
  if bool(to_host(state.cache_full)):  # also on a mesh spanning processes
    return 'cache_full'
  if last is None or last not in end_tokens:
    return 'max_new_tokens'
  if last == tokenizer.special_tokens.EOS:
    return 'eos'
  if last == getattr(tokenizer.special_tokens, 'BEGIN_OF_TOOL_RESPONSE', None):
    return 'tool_call'
  return 'end_of_turn'


def _with_media(prompt: str, images, audio) -> list:
  """A str prompt's chunks: its text split at the placeholders, each given its medium."""
  chunks: list = []
  media = {_turns.IMAGE_TAG: list(images or []), _turns.AUDIO_TAG: list(audio or [])}
  counts = {tag: prompt.count(tag) for tag in media}
  for tag, name in ((_turns.IMAGE_TAG, 'images'), (_turns.AUDIO_TAG, 'audio')):
    given = len(media[tag])
    if media[tag] and counts[tag] == 0:  # no placeholder: the media follow the text
      prompt += ''.join('\n' + tag for _ in media[tag])
      counts[tag] = given
    if counts[tag] != given:
      raise ValueError(f'the prompt has {counts[tag]} {tag} placeholders but {given} {name} '
                       'were given; they must match')
  rest = prompt
  while True:
    i = [(rest.find(tag), tag) for tag in media if tag in rest]
    if not i:
      break
    at, tag = min(i)
    chunks.append(rest[:at])
    data = media[tag].pop(0)
    chunks.append(_turns.Image(data) if tag == _turns.IMAGE_TAG else _turns.Audio(data))
    rest = rest[at + len(tag):]
  chunks.append(rest)
  return [c for c in chunks if not isinstance(c, str) or c]


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class ToolSampler(ChatSampler):
  """A ChatSampler that runs the tools the model calls and feeds their answers back.

  Each call of a reply is run (a tool declared from a Python function calls it with the
  call's arguments; otherwise `tool_handler(call)` must answer), its result goes back as
  a tool response, and the model goes on in the same turn, up to `max_tool_rounds`
  times. A tool that raises answers `{error: message}`. A reply that ends with `<eos>`
  or `<turn|>` right after a call is taken as a call too (the history never holds the
  last sampled token, so nothing needs undoing).
  """

  tool_handler: Callable[[_tools.ToolCall], Any] | None = None
  max_tool_rounds: int = 8

  def __post_init__(self):
    super().__post_init__()
    if self.tool_handler is not None and not callable(self.tool_handler):
      raise TypeError(f'tool_handler must be None or a function of a ToolCall, got '
                      f'{type(self.tool_handler).__name__}')
    r = self.max_tool_rounds
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
      raise ValueError(f'max_tool_rounds must be an int >= 1, got {r!r}')

  def stream(self, prompt, *, max_new_tokens: int | None = None, multi_turn: bool | None = None,
             **kwargs) -> _ToolReplies:
    """ChatSampler.stream, then as long as the reply calls tools: run them, answer, go
    on, streaming each reply in turn; each tool's answer comes between them as a
    Piece('tool_response', text, response=...). The iterator's `output` is the last
    reply's ChatOutput; `turns` holds every call and response. chat() runs this too.
    Only the first reply takes `allowed_tokens`, `response_format`, `stop` and the
    penalties; each later one takes `sampling` and `rng`."""
    first = super().stream(prompt, max_new_tokens=max_new_tokens, multi_turn=multi_turn, **kwargs)
    return _ToolReplies(self, first, max_new_tokens, kwargs.get('sampling'), kwargs.get('rng'))

  def run_tool(self, call: _tools.ToolCall) -> _tools.ToolResponse:
    """The response to one call."""
    tool = next((t for t in self.tools if t.name == call.name), None)
    try:
      if tool is not None and tool.function is not None:
        result = tool.function(**call.arguments)
      elif self.tool_handler is not None:
        result = self.tool_handler(call)
      else:
        known = [t.name for t in self.tools]
        return _tools.ToolResponse(call.name, {'error': f'unknown tool {call.name!r}; the '
                                               f'tools are {known}'})
    except Exception as e:  # the model sees the failure and may try again
      return _tools.ToolResponse(call.name, {'error': f'{type(e).__name__}: {e}'})
    return result if isinstance(result, _tools.ToolResponse) else _tools.ToolResponse(call.name, result)
