"""Conversations and tool-call arguments that the dialog oracle and gemma4 both build.

A case is plain data (so the oracle run can write it to tests/golden/chat_dialog.json
with dialog's text, and the default suite can rebuild it without dialog):
  {'name', 'turns': [[role, [chunk, ...]], ...], 'generate': bool}
with a chunk one of: a str, {'thought': str}, {'think': 1}, {'image': 1}, {'audio': 1},
{'tool': {name, description?, parameters?, response?}}, {'call': [name, arguments]},
{'response': [name, response]}.
"""

from __future__ import annotations

import re

import numpy as np

WEATHER = {'name': 'get_weather', 'description': 'Gets the weather of a city.',
           'parameters': {'type': 'object', 'properties': {
               'city': {'type': 'string', 'description': 'The city, e.g. "Paris".'},
               'days': {'type': 'integer', 'minimum': 1, 'maximum': 7},
               'unit': {'type': 'string', 'enum': ['celsius', 'fahrenheit']}},
               'required': ['city']}}
SEARCH = {'name': 'search', 'description': 'Searches the web.\nReturns the top results.',
          'parameters': {'$schema': 'http://json-schema.org/draft-07/schema#', 'type': 'object',
                         'properties': {
                             'query': {'type': 'string'},
                             'filters': {'type': 'object', 'properties': {
                                 'site': {'type': ['string', 'null']},
                                 'tags': {'type': 'array', 'items': {'type': 'string'}}}},
                             'mode': {'anyOf': [{'type': 'string'}, {'type': 'integer'}]}},
                         'required': ['query']},
          'response': {'type': 'object', 'properties': {'hits': {'type': 'array'}}}}
NO_ARGS = {'name': 'now'}
TRICKY = {'city': 'São Paulo, "SP" {br}', 'note': 'line one\nline two: [a, b]',
          'nested': {'list': [1, -2.5, True, False, None, {'k': 'v'}], 'empty': {}, 'none': []},
          'big': 12345678901234567890, 'zero': 0.0, 'small': 0.125, 'text': ''}

CASES = [
    {'name': 'one_user_turn', 'turns': [['user', ['Hello!']]]},
    {'name': 'system_and_user', 'turns': [['system', ['Be brief.']], ['user', ['Hi there']]]},
    {'name': 'thinking_on', 'turns': [['system', [{'think': 1}, 'You are a careful assistant.']],
                                      ['user', ['What is 17 * 23?']]]},
    {'name': 'thinking_on_no_system_text', 'turns': [['system', [{'think': 1}]],
                                                     ['user', ['Why is the sky blue?']]]},
    {'name': 'three_turns', 'turns': [['user', ['Hi']], ['model', ['Hello! How can I help?']],
                                      ['user', ['Tell me a joke.']], ['model', ['Why did the chicken cross the road?']],
                                      ['user', ['Another one.']]]},
    {'name': 'earlier_thought_kept', 'turns': [
        ['user', ['What is 2+2?']], ['model', [{'thought': 'Simple arithmetic.\n2+2=4.'}, '4']],
        ['user', ['And 3+3?']]]},
    {'name': 'training_form', 'generate': False, 'turns': [
        ['system', ['Be brief.']], ['user', ['Hi']], ['model', [{'thought': 'greet'}, 'Hello.']]]},
    {'name': 'training_form_user_last', 'generate': False, 'turns': [['user', ['Hi']]]},
    {'name': 'images_and_audio', 'turns': [
        ['user', ['Compare ', {'image': 1}, ' and ', {'image': 1}, '.']],
        ['model', ['The first is brighter.']],
        ['user', ['What is said here? ', {'audio': 1}]]]},
    {'name': 'media_only', 'turns': [['user', [{'image': 1}]]]},
    {'name': 'tools_declared', 'turns': [
        ['system', ['You can use tools.', {'tool': WEATHER}, {'tool': SEARCH}, {'tool': NO_ARGS}]],
        ['user', ['Weather in Paris tomorrow?']]]},
    {'name': 'tools_with_thinking', 'turns': [
        ['system', [{'think': 1}, {'tool': WEATHER}]], ['user', ['Is it warm in Rome?']]]},
    {'name': 'call_then_response_then_answer', 'turns': [
        ['system', [{'tool': WEATHER}]], ['user', ['Weather in Paris?']],
        ['model', [{'call': ['get_weather', {'city': 'Paris', 'days': 1}]}]],
        ['model', [{'response': ['get_weather', {'temperature': 21, 'sky': 'clear'}]}]],
        ['model', ['It is 21 degrees and clear.']], ['user', ['Thanks!']]]},
    {'name': 'ends_with_call', 'turns': [
        ['system', [{'tool': WEATHER}]], ['user', ['Weather in Paris?']],
        ['model', [{'thought': 'Need the tool.'}, {'call': ['get_weather', {'city': 'Paris'}]}]]]},
    {'name': 'continues_after_response', 'turns': [
        ['model', [{'response': ['get_weather', {'temperature': 21}]}]]]},
    {'name': 'two_calls_one_turn', 'turns': [
        ['user', ['Paris and Rome?']],
        ['model', [{'call': ['get_weather', {'city': 'Paris'}]}, {'call': ['get_weather', {'city': 'Rome'}]}]],
        ['model', [{'response': ['get_weather', {'temperature': 21}]},
                   {'response': ['get_weather', {'temperature': 25}]}]]]},
    {'name': 'tricky_arguments', 'turns': [
        ['user', ['Go.']], ['model', [{'call': ['record', TRICKY]}]]]},
    {'name': 'unicode_and_newlines', 'turns': [
        ['system', ['Réponds en français.\n\nSois bref.']], ['user', ['Qu’est-ce que c’est ? 日本語 🙂\n']]]},
    {'name': 'consecutive_user_turns_merge', 'turns': [['user', ['First part.']], ['user', [' Second part.']]]},
    {'name': 'empty_system', 'turns': [['system', []], ['user', ['Hi']]]},
    {'name': 'model_first', 'turns': [['model', ['Hello, I am ready.']], ['user', ['Go on.']]]},
    {'name': 'open_model_turn', 'turns': [['user', ['Count to three.']], ['model', ['One, two,']]]},
]


# -------------------------------------------------------------- tool-call arguments

KEY_CHARS = 'abcdefghijklmnopqrstuvwxyzABCXYZ_0123456789'
STRING_CHARS = list('abc XYZ 019,:{}[]"\'\\\n\t-+.éß日🙂') + ['<|', '|>', '<', '>', '|']


def random_arguments(rng: np.random.Generator, depth: int = 0) -> dict:
  """A random argument dict within what dialog's grammar reads: identifier keys, strings
  without tags, numbers without exponents, nesting up to depth 3."""
  return {_key(rng): _value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))}


def _key(rng) -> str:
  first = rng.choice(list('abcxyz_'))
  return first + ''.join(rng.choice(list(KEY_CHARS), int(rng.integers(0, 6))))


def _string(rng) -> str:
  return clean(''.join(rng.choice(STRING_CHARS, int(rng.integers(0, 8)))))


def clean(s: str) -> str:
  """s without anything shaped like a tag."""
  # dialog's conversation grammar ends a text at anything shaped like a tag (<|x>, <x|>,
  # <|x|>), even inside a quoted string, so it cannot read those; gemma4's parser can
  # (tests/test_chat_tools.py).
  while (t := re.sub(r'<\|?\w+\|?>|<\|"\|>', '', s)) != s:
    s = t
  return s


def _value(rng, depth: int):
  kinds = ['str', 'int', 'float', 'bool', 'null'] + (['dict', 'list'] if depth < 3 else [])
  kind = rng.choice(kinds)
  if kind == 'str':
    return _string(rng)
  if kind == 'int':
    return int(rng.integers(-10 ** 6, 10 ** 6))
  if kind == 'float':
    x = float(np.round(rng.normal() * 10 ** int(rng.integers(-2, 4)), 3))
    return x if 'e' not in str(x) else 1.5
  if kind == 'bool':
    return bool(rng.integers(0, 2))
  if kind == 'null':
    return None
  if kind == 'dict':
    return random_arguments(rng, depth)
  return [_value(rng, depth + 1) for _ in range(int(rng.integers(0, 4)))]


def argument_cases(n: int = 300, seed: int = 0) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [random_arguments(rng) for _ in range(n)]


def gemma4_turns(case: dict) -> list:
  """The case as gemma4.chat turns."""
  from gemma4 import chat

  def chunk(c):
    if isinstance(c, str):
      return c
    (kind, v), = c.items()
    return {'thought': lambda: chat.Thought(v), 'think': lambda: chat.THINK,
            'image': lambda: chat.Image(np.zeros((48, 48, 3), np.uint8)),
            'audio': lambda: chat.Audio(np.zeros(1600, np.float32)),
            'tool': lambda: chat.Tool.from_schema(v), 'call': lambda: chat.ToolCall(*v),
            'response': lambda: chat.ToolResponse(*v)}[kind]()

  return [chat.Turn(role, tuple(chunk(c) for c in chunks)) for role, chunks in case['turns']]
