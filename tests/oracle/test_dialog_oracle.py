"""gemma4.chat against the official `dialog` 1.1.0, live (run in the environment of
scripts/dialog_env.sh: dialog with the mcp 1.x it was written for).

Bounds, all exact: gemma4's prompt text equals dialog's `Conversation.as_text()` for
every conversation of tests/chat_cases.py (both forms); a tool call's text equals
dialog's for 300 seeded random argument trees and 200 more drawn by hypothesis, and
gemma4's parser reads each text to the same value dialog's parser does. With
GEMMA4_WRITE_GOLDEN=1 it writes tests/golden/chat_dialog.json, which the default suite
compares with (tests/test_chat_format.py).
"""

from __future__ import annotations

import json
import os

import dialog
import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

from gemma4.chat import tools, turns
from tests import chat_cases
from tests.golden import GOLDEN_DIR

pytestmark = pytest.mark.oracle
GOLDEN = GOLDEN_DIR / 'chat_dialog.json'


def _dialog_chunk(c):
  if isinstance(c, str):
    return dialog.Text(c)
  (kind, v), = c.items()
  if kind == 'thought':
    return dialog.Thought(v)
  if kind == 'think':
    return dialog.Think()
  if kind == 'image':
    return dialog.Image(None)
  if kind == 'audio':
    return dialog.Audio(None)
  if kind == 'tool':  # dialog takes MCP tool dicts: the schema is `inputSchema`
    mcp = {'name': v['name']}
    for ours, theirs in (('description', 'description'), ('parameters', 'inputSchema'),
                         ('response', 'outputSchema')):
      if ours in v:
        mcp[theirs] = v[ours]
    return dialog.Tool(mcp)
  if kind == 'call':
    return dialog.ToolCall({'name': v[0], 'arguments': v[1]})
  return dialog.ToolResponse({'name': v[0], 'structuredContent': v[1]})


_ROLES = {'system': dialog.System, 'user': dialog.User, 'model': dialog.Model}


def _dialog_text(case) -> str:
  conv = dialog.Conversation(*[_ROLES[role](*[_dialog_chunk(c) for c in chunks])
                               for role, chunks in case['turns']])
  return str(conv.as_text(training=not case.get('generate', True)))


def _dialog_parse(text: str):
  call = dialog.ToolCall(text).data
  return call.name, call.arguments


def test_render_equals_dialog_for_every_conversation():
  golden = []
  for case in chat_cases.CASES:
    want = _dialog_text(case)
    got = turns.render(chat_cases.gemma4_turns(case), generate=case.get('generate', True))
    assert got == want, case['name']
    golden.append({'name': case['name'], 'text': want})
  _write('cases', golden)


def test_tool_call_text_and_parse_equal_dialogs_for_300_seeded_argument_trees():
  golden = []
  for args in chat_cases.argument_cases():
    want = str(dialog.ToolCall({'name': 'f', 'arguments': args}).as_text())
    assert tools.ToolCall('f', args).as_text() == want
    name, parsed = _dialog_parse(want)
    ours = tools.parse_call(want)
    assert (ours.name, ours.arguments) == (name, parsed)
    golden.append({'arguments': args, 'text': want, 'parsed': parsed})
  _write('calls', golden)


_keys = st.from_regex(r'[a-z_][a-zA-Z0-9_]{0,5}', fullmatch=True)
_strings = st.lists(st.sampled_from(chat_cases.STRING_CHARS), max_size=8).map(
    lambda parts: chat_cases.clean(''.join(parts)))
_leaves = (st.none() | st.booleans() | st.integers(-10 ** 12, 10 ** 12) | _strings
           | st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: round(x, 3))
           .filter(lambda x: 'e' not in str(x)))
_trees = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(_keys, inner, max_size=3), max_leaves=12)


@hypothesis.settings(max_examples=200, deadline=None, derandomize=True)
@hypothesis.given(st.dictionaries(_keys, _trees, max_size=4))
def test_tool_call_text_and_parse_equal_dialogs_for_hypothesis_trees(args):
  want = str(dialog.ToolCall({'name': 'f', 'arguments': args}).as_text())
  assert tools.ToolCall('f', args).as_text() == want
  name, parsed = _dialog_parse(want)
  assert tools.parse_call(want) == tools.ToolCall(name, parsed)


def _write(key: str, value) -> None:
  if os.environ.get('GEMMA4_WRITE_GOLDEN') != '1':
    stored = json.loads(GOLDEN.read_text())[key]
    assert stored == value, f'dialog now gives other {key} than tests/golden/chat_dialog.json'
    return
  data = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
  data[key] = value
  data['dialog'] = dialog.__version__
  GOLDEN.write_text(json.dumps(data, indent=1, ensure_ascii=False) + '\n')
