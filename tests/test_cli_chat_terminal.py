"""`gemma4 chat` driven in a real terminal (pexpect, a pseudo-terminal), as a person uses
it: the default model, three turns, an empty line, Ctrl-C in the middle of a reply, the
commands /help, /save, /reset and /load, and Ctrl-D to end (exit status 0).

Bounds: every expected line appears within its timeout; the saved file holds the turns
said so far (the interrupted reply included, with what it had said); after /load the
next reply continues the conversation (the chat's history after it starts with the
loaded turns' text).
"""

from __future__ import annotations

import json
import os
import sys

import pexpect
import pytest


pytestmark = pytest.mark.slow  # runs with the oracle suite (scripts/run_oracle_tests.sh)

PROMPT = '\r\n> '
LABEL = 'gemma3_270m: '


@pytest.fixture
def chat(tmp_path):
  env = dict(os.environ, PYTHONUNBUFFERED='1', TERM='dumb')
  child = pexpect.spawn(sys.executable, ['-m', 'gemma4', 'chat', '-n', '200', '--cache-length',
                                         '2048'], env=env, encoding='utf-8', timeout=180,
                        dimensions=(40, 200))
  child.logfile_read = open(tmp_path / 'terminal.log', 'w')
  yield child
  child.close(force=True)


def test_a_three_turn_chat_with_an_interrupt_a_save_and_a_reload(chat, tmp_path):
  chat.expect('base model')  # the default model is not instruction-tuned: said so
  chat.expect(PROMPT)
  chat.sendline('')  # an empty line does not end the chat
  chat.expect(PROMPT)
  chat.sendline('/help')
  chat.expect('/save FILE')
  chat.expect(PROMPT)

  chat.sendline('Write the word hello.')
  chat.expect(LABEL)
  chat.expect(r'new tokens; first token after')
  chat.expect(PROMPT)

  chat.sendline('Tell me a long story about a dragon and a knight.')
  chat.expect(LABEL)
  chat.expect(r'\S')  # it is writing
  chat.sendintr()  # Ctrl-C: stops this reply, keeps the chat
  chat.expect(r'reply stopped \(Ctrl-C\); it stays in the conversation')
  chat.expect(PROMPT)

  saved = tmp_path / 'chat.json'
  chat.sendline(f'/save {saved}')
  chat.expect('saved 4 turns')
  chat.expect(PROMPT)
  data = json.loads(saved.read_text())
  roles = [t['role'] for t in data['turns']]
  assert roles == ['user', 'model', 'user', 'model']
  assert data['turns'][2]['chunks'] == ['Tell me a long story about a dragon and a knight.']
  assert data['turns'][3]['chunks'] and len(data['turns'][3]['chunks'][0]) < 2000

  chat.sendline('/reset')
  chat.expect('the conversation is forgotten')
  chat.expect(PROMPT)
  chat.sendline(f'/load {saved}')
  chat.expect('loaded 4 turns')
  chat.expect(PROMPT)

  chat.sendline('What happened next?')
  chat.expect(LABEL)
  chat.expect(r'new tokens; first token after')
  chat.expect(PROMPT)

  chat.sendline('/unknown')
  chat.expect(r'error: unknown command /unknown')
  chat.expect(PROMPT)
  chat.sendeof()  # Ctrl-D ends it
  chat.expect(pexpect.EOF)
  chat.close()
  assert chat.exitstatus == 0
