"""Structured output (gemma4.chat.grammar, llguidance masks) on the real Gemma 3 270M and
on the tiny chat model.

Bounds: on the real model (int8, greedy), each of the 20 schemas of tests/schemas.py gives
an answer that parses as JSON and validates under its schema (jsonschema): 20 of 20; at
every step where the unconstrained greedy token (the argmax of the same model's logits
over the reply so far, a top-2 margin above 0.01) is one the grammar allows, the
constrained reply took exactly that token. On the tiny model: choices and regular
expressions are matched exactly, and a thought before a constrained answer stays free.
"""

from __future__ import annotations

import json
import re

import jsonschema
import numpy as np
import pytest

import gemma4
from gemma4 import chat
from gemma4.chat import grammar
from tests import schemas, tokenizer_util


@pytest.fixture(scope='module')
def real():
  return gemma4.load_default()  # int8 on CPU, as a user gets it


@pytest.mark.slow
def test_20_schemas_on_the_real_model_give_valid_json_and_keep_greedy_where_allowed(real):
  s = chat.ChatSampler(model=real.model, params=real.params, tokenizer=real.tokenizer,
                       cache_length=512, max_out_length=192, pad_length=(64, 128, 256))
  tok, valid, checked = real.tokenizer, 0, 0
  for name, schema, _ in schemas.SCHEMAS:
    prompt = f'Give an example of a {name.replace("_", " ")} as JSON.'
    out = s.chat(prompt, response_format=schema, max_new_tokens=192)
    jsonschema.validate(json.loads(out.text), schema)
    valid += 1
    assert out.stop_reason in ('eos', 'end_of_turn'), name
    # The same model, unconstrained, over the prompt and the reply (one forward).
    ids = tok.encode(chat.render([chat.User(prompt)], family='gemma3'), add_bos=True)
    width = next(w for w in (64, 128, 384) if w >= len(ids) + len(out.tokens))  # few compiles
    seq = np.zeros((1, width), np.int32)
    seq[0, :len(ids) + len(out.tokens)] = ids + list(out.tokens)
    logits = np.asarray(real.model.apply(real.params, seq)[0][0], np.float32)
    constraint = grammar.Constraint(tok, schema, s.sampler.end_tokens)
    for k, token in enumerate(out.tokens):
      mask = constraint(list(out.tokens[:k]))
      row = logits[len(ids) - 1 + k]
      top2 = np.partition(row, -2)[-2:]
      best = int(row.argmax())
      if mask[best] and top2[1] - top2[0] > 0.01:
        assert token == best, (name, k)
        checked += 1
  assert valid == 20
  assert checked >= 100  # measured: most steps allow the greedy token


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  tok = gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path_factory.mktemp('t') / 'c.model', chat=True))
  m = gemma4.models.tiny('e2b')
  return m, m.init(0), tok


def make(tiny, **kw):
  m, params, tok = tiny
  return chat.ChatSampler(model=m, params=params, tokenizer=tok, cache_length=256,
                          max_out_length=48, pad_length=(32, 64, 128, 256), **kw)


def test_choices_and_regex_are_matched_exactly(tiny):
  s = make(tiny)
  out = s.chat('Hello world', response_format=chat.Choices(['Paris', 'Rome', 'Berlin']))
  assert out.text in ('Paris', 'Rome', 'Berlin') and out.stop_reason in ('eos', 'end_of_turn')
  out = s.chat('Hello world', response_format=re.compile(r'[a-c]{3}-[0-9]{2}'))
  assert re.fullmatch(r'[a-c]{3}-[0-9]{2}', out.text)
  out = s.chat('Hello world', response_format={'type': 'json_schema', 'json_schema': {
      'schema': schemas.SCHEMAS[0][1]}})
  jsonschema.validate(json.loads(out.text), schemas.SCHEMAS[0][1])


def test_a_thought_before_a_constrained_answer_is_free(tiny):
  _, _, tok = tiny
  s = make(tiny, think=True)
  forced = [i for p in ('<|channel>', 'thought\n', 'The quick', '<channel|>') for i in tok.encode(p)]
  out = s.chat('Hello world', response_format=chat.Choices(['yes', 'no']),
               allowed_tokens=lambda ids: [forced[len(ids)]] if len(ids) < len(forced) else None)
  assert out.thoughts == 'The quick' and out.text in ('yes', 'no')


def test_what_the_engine_cannot_enforce_is_refused_before_compute(tiny):
  s = make(tiny)
  with pytest.raises(ValueError, match=r'response_format cannot be enforced: .*uniqueItems'):
    s.chat('Hello world', response_format=schemas.UNSUPPORTED)
  with pytest.raises(TypeError, match=r'response_format must be a JSON schema dict, .* got int'):
    s.chat('Hello world', response_format=3)
  with pytest.raises(ValueError, match=r"response_format \{'type': 'json_schema'\} needs"):
    s.chat('Hello world', response_format={'type': 'json_schema'})
  with pytest.raises(ValueError, match=r'Choices takes a non-empty list of str'):
    chat.Choices([])
  assert s.turns == []


def test_token_bytes_mark_tags_special_and_keep_whitespace_pieces_as_text(real):
  pieces, special = grammar.token_bytes(real.tokenizer)
  tok = real.tokenizer
  assert len(pieces) == tok.vocab_size
  for tag in ('<start_of_turn>', '<end_of_turn>', '<start_of_image>'):
    assert tok.token_id(tag) in special
  assert pieces[tok.token_id('\n')] == b'\n' and tok.token_id('\n') not in special
  assert pieces[tok.encode(' the')[0]] == b' the'
  assert sum(1 for p in pieces if len(p) == 1 and not p.isascii()) >= 128  # byte pieces


def test_tool_call_grammar_takes_every_valid_call_and_refuses_what_the_schema_does_not(tiny):
  from gemma4.chat import tools
  from tests import chat_cases
  _, _, tok = tiny
  declared = [chat.Tool.from_schema(chat_cases.WEATHER), chat.Tool.from_schema(chat_cases.SEARCH),
              chat.Tool.from_schema(chat_cases.NO_ARGS),
              chat.Tool.from_schema({'name': 'pick', 'parameters': {'type': 'object', 'properties': {
                  'xs': {'type': 'array', 'maxItems': 2, 'items': {'type': 'integer'}},
                  's': {'type': 'string', 'maxLength': 3}}}})]
  g = grammar.tool_call_grammar(declared, tok)
  end = (1, 106)

  def first_refused(call_text):
    c = grammar.Constraint(tok, g, end)
    ids = tok.encode(call_text)[1:]  # what follows <|tool_call>
    return next((k for k in range(len(ids)) if not c(ids[:k])[ids[k]]), None)

  for call in [tools.ToolCall('get_weather', {'city': 'Paris, "x" {y}', 'days': 3, 'unit': 'celsius'}),
               tools.ToolCall('get_weather', {'city': 'Rome'}),
               tools.ToolCall('search', {'query': 'q', 'filters': {'site': None, 'tags': ['a', 'b']},
                                         'mode': 7}),
               tools.ToolCall('search', {'query': '', 'mode': 'fast'}),
               tools.ToolCall('now', {}), tools.ToolCall('now', {'any': [1, {'b': None}]}),
               tools.ToolCall('pick', {'xs': [1, -20], 's': 'abc'}), tools.ToolCall('pick', {})]:
    assert first_refused(call.as_text()) is None, call
  for call, where in [(tools.ToolCall('get_weather', {'days': 3}), 'days'),  # city is required
                      (tools.ToolCall('get_weather', {'city': 'x', 'unit': 'kelvin'}), 'kelvin'),
                      (tools.ToolCall('pick', {'xs': [1, 2, 3]}), ',3'),  # maxItems 2
                      (tools.ToolCall('pick', {'s': 'abcd'}), 'd'),  # maxLength 3
                      (tools.ToolCall('get_weather', {'city': 'x', 'days': 1.5}), '.'),
                      (tools.ToolCall('delete_all', {}), 'delete')]:
    k = first_refused(call.as_text())
    assert k is not None, call
    ids = tok.encode(call.as_text())[1:]
    assert tok.decode(ids[:k + 1]).endswith(tok.decode(ids[k:k + 1])) and where[0] in tok.decode(ids[k:])
