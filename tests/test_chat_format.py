"""Conversation text and native tool calls (gemma4.chat.turns, gemma4.chat.tools).

Bounds, all exact: the prompt text of every conversation in tests/chat_cases.py equals
the official dialog 1.1.0's (tests/golden/chat_dialog.json, written by the oracle run);
a tool call's text equals dialog's and reads back to dialog's value for 300 seeded
argument trees; parse(write(x)) == x for 300 hypothesis trees over a wider domain
(tag-like text in strings, exponents, any unicode); a declaration from a Python function
has the parameters schema transformers' get_json_schema gives; Gemma 3 text follows its
chat template's rule (system text opens the first user turn, text trimmed).
"""

from __future__ import annotations

import enum
import json
import math
from typing import Literal

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from gemma4 import chat
from gemma4.chat import tools
from tests import chat_cases
from tests.golden import GOLDEN_DIR

GOLDEN = json.loads((GOLDEN_DIR / 'chat_dialog.json').read_text())


@pytest.mark.parametrize('case', chat_cases.CASES, ids=lambda c: c['name'])
def test_prompt_text_equals_dialogs(case):
  want = {c['name']: c['text'] for c in GOLDEN['cases']}[case['name']]
  got = chat.render(chat_cases.gemma4_turns(case), generate=case.get('generate', True))
  assert got == want


def test_the_golden_covers_every_case():
  assert [c['name'] for c in GOLDEN['cases']] == [c['name'] for c in chat_cases.CASES]


def test_tool_call_text_and_parse_equal_dialogs_for_300_argument_trees():
  assert len(GOLDEN['calls']) == 300
  for case in GOLDEN['calls']:
    assert tools.ToolCall('f', case['arguments']).as_text() == case['text']
    assert tools.parse_call(case['text']) == tools.ToolCall('f', case['parsed'])


_keys = st.text(st.characters(blacklist_characters='{}[],:<>|', blacklist_categories=['Cs']),
                min_size=1, max_size=6).filter(lambda k: k == k.strip())
_strings = st.lists(st.sampled_from(chat_cases.STRING_CHARS + ['<tool_call|>', '<|tool_call>',
                                                                 '<turn|>', '<|"', '"|>']),
                    max_size=10).map(''.join).filter(lambda s: tools.QUOTE not in s)
_numbers = (st.integers(-10 ** 30, 10 ** 30)
            | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()))
_trees = st.recursive(st.none() | st.booleans() | _numbers | _strings,
                      lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(_keys, inner, max_size=3), max_leaves=12)


@hypothesis.settings(max_examples=300, deadline=None, derandomize=True)
@hypothesis.given(st.dictionaries(_keys, _trees, max_size=4))
def test_parse_of_write_is_the_identity_for_hypothesis_trees(args):
  text = tools.ToolCall('f', args).as_text()
  assert tools.parse_call(text) == tools.ToolCall('f', args)
  assert tools.parse_calls(f'before {text} between {text} after') == [tools.ToolCall('f', args)] * 2


def test_reader_takes_what_models_write_loosely():
  q = tools.QUOTE
  assert tools.parse_value(f' {{ a : 1 , b : [ 2 , 3.5e-3 ] , "c d" : x y }} ') == {
      'a': 1, 'b': [2, 0.0035], '"c d"': 'x y'}
  assert tools.parse_value(f'{{{q}key with space{q}:-1E+3}}') == {'key with space': -1000.0}
  assert tools.parse_value('{a:true,b:false,c:null,d:truex}') == {
      'a': True, 'b': False, 'c': None, 'd': 'truex'}
  text = f'<|tool_call>call:get_weather{{city:{q}Paris <tool_call|>{q}}}<tool_call|>'
  assert tools.parse_calls(text) == [tools.ToolCall('get_weather', {'city': 'Paris <tool_call|>'})]


@pytest.mark.parametrize('text, match', [
    ('call:f{a:<|"|>open}', r'an unclosed string at character 9'),
    ('call:f{a:1', r'"," or "}" was expected at character 10'),
    ('call:f{a 1}', r'":" was expected after the key \'a 1\''),
    ('call:f{a:1}}', r'text after the closing "}" at character 11'),
    ('call:{a:1}', r'a tool name was expected'),
    ('declaration:f{}', r'"call:" was expected at character 0'),
    ('call:f', r'"{" was expected after the tool name'),
    ('call:f{a:[1,2}', r'"," or "]" was expected'),
    ('call:f{a:}', r'a value was expected at character 9'),
])
def test_reader_errors_name_what_and_where(text, match):
  with pytest.raises(tools.ToolFormatError, match=match):
    tools.parse_call(text)


@pytest.mark.parametrize('args, error, match', [
    ({'a': 'has <|"|> inside'}, ValueError, r'f\.a: a string cannot hold the quote token'),
    ({'a': math.nan}, ValueError, r'f\.a: nan is not a JSON number'),
    ({'a': [1, math.inf]}, ValueError, r'f\.a\[1\]: inf is not a JSON number'),
    ({'a b:': 1}, ValueError, r"key 'a b:' cannot be written"),
    ({' a': 1}, ValueError, r"key ' a' cannot be written"),
    ({1: 1}, TypeError, r'f: keys must be str, got int 1'),
    ({'a': {1, 2}}, TypeError, r'f\.a: set is not a JSON value'),
])
def test_writing_refuses_what_could_not_be_read_back(args, error, match):
  with pytest.raises(error, match=match):
    tools.ToolCall('f', args).as_text()


def test_tool_name_is_checked():
  with pytest.raises(ValueError, match=r"a tool name must be an identifier .*got 'get weather'"):
    chat.Tool('get weather')


class Unit(enum.Enum):
  C = 'celsius'
  F = 'fahrenheit'


def forecast(city: str, days: int = 3, unit: Unit = Unit.C, hourly: bool = False,
             fields: list[str] | None = None, limits: dict[str, float] | None = None,
             mode: Literal['fast', 'exact'] = 'fast') -> dict:
  """Forecasts the weather.

  Uses the national services.

  Args:
    city: The city name, e.g. "Paris".
    days: How many days,
      at most 7.
    unit: The unit of temperatures.
    hourly: Hour by hour.
    fields: Which fields to return.
    limits: Bounds per field.
    mode: How hard to try.

  Returns:
    The forecast.
  """
  del city, days, unit, hourly, fields, limits, mode
  return {}


def scale(x: float, factors: tuple[int, int], note: str | int = 0) -> float:
  """Scales a number.

  Args:
    x: The number.
    factors: Two factors.
    note: Anything.
  """
  return x * factors[0] * factors[1]


def no_doc(x: int) -> int:
  return x


@pytest.mark.parametrize('fn', [forecast, scale])
def test_declaration_from_a_function_equals_transformers_get_json_schema(fn):
  from transformers.utils import get_json_schema
  want = get_json_schema(fn)['function']
  tool = chat.Tool.from_function(fn)
  assert tool.name == want['name']
  assert tool.description == want.get('description')
  assert tool.parameters == want['parameters']
  assert tool.function is fn


def test_declaration_from_a_function_without_a_docstring_has_no_descriptions():
  tool = chat.Tool.from_function(no_doc)
  assert tool.description is None
  assert tool.parameters == {'type': 'object', 'properties': {'x': {'type': 'integer'}},
                             'required': ['x']}


def test_declaration_from_a_function_refuses_what_it_cannot_declare():
  def untyped(x):
    return x

  def star(*args: int):
    return args

  with pytest.raises(ValueError, match=r"tool untyped: argument 'x' has no type annotation"):
    chat.Tool.from_function(untyped)
  with pytest.raises(ValueError, match=r'tool star: \*args and \*\*kwargs cannot be declared'):
    chat.Tool.from_function(star)
  with pytest.raises(ValueError, match=r"tool 'f': unknown schema keys \['params'\]"):
    chat.Tool.from_schema({'name': 'f', 'params': {}})


def test_openai_and_mcp_schemas_give_the_same_declaration():
  schema = chat_cases.WEATHER
  openai = chat.Tool.from_schema({'type': 'function', 'function': schema})
  mcp = chat.Tool.from_schema({'name': schema['name'], 'description': schema['description'],
                               'inputSchema': schema['parameters']})
  assert openai.as_text() == mcp.as_text() == chat.Tool.from_schema(schema).as_text()


def test_gemma3_text_follows_its_chat_template():
  conv = [chat.System('Be brief.\n'), chat.User('  Hi  '), chat.Model('Hello! '), chat.User('Why?')]
  assert chat.render(conv, family='gemma3') == (
      '<start_of_turn>user\nBe brief.\n\n\nHi<end_of_turn>\n'
      '<start_of_turn>model\nHello!<end_of_turn>\n'
      '<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n')
  assert chat.render([chat.User('Hi')], family='gemma3', generate=False) == (
      '<start_of_turn>user\nHi<end_of_turn>\n')
  with pytest.raises(ValueError, match=r'Gemma 3 models take text and images only; a system '
                                       r'turn holds Think'):
    chat.render([chat.System(chat.THINK), chat.User('Hi')], family='gemma3')


def test_turns_check_their_chunks():
  with pytest.raises(ValueError, match=r"Turn role must be one of \('system', 'user', 'model'\), "
                                       r"got 'assistant'"):
    chat.Turn('assistant', ('Hi',))
  with pytest.raises(TypeError, match=r'a user turn takes str, Thought, .* got int 3'):
    chat.User('Hi', 3)
  with pytest.raises(TypeError, match=r'a conversation holds Turns .* got dict'):
    chat.render([{'role': 'user', 'content': 'Hi'}])
  with pytest.raises(ValueError, match=r"family must be 'gemma4' or 'gemma3', got 'gemma2'"):
    chat.render('Hi', family='gemma2')


def test_media_come_out_in_placeholder_order():
  a, b, c = (np.full((4, 4, 3), i, np.uint8) for i in range(3))
  clip = np.zeros(16, np.float32)
  conv = [chat.User('x', chat.Image(a), chat.Audio(clip)), chat.Model('y'),
          chat.User(chat.Image(b), chat.Image(c))]
  images, audio = chat.turns.media(conv)
  assert [int(i[0, 0, 0]) for i in images] == [0, 1, 2]
  assert len(audio) == 1 and audio[0] is clip
