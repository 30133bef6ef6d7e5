"""The OpenAI-compatible server, driven by the official `openai` client over 127.0.0.1
(a server on a free port, started and stopped here; tiny E2B with its vision and audio
encoders, random weights).

Bounds: with greedy decoding (and seeded draws), every endpoint's text equals
Gemma4Sampler.sample on the same prompt (the chat's prompt rendered by gemma4.chat,
images and audio included), character for character; streamed deltas join to the same
text; each log-probability is within 1e-5 of sample()'s; structured output and tool-call
arguments validate under their JSON schemas (jsonschema). Every response is parsed by
the client into its own types (ChatCompletion, ChatCompletionChunk, Completion, Model).
"""

from __future__ import annotations

import base64
import io
import json
import wave

import jsonschema
import numpy as np
import openai
import pytest
from PIL import Image

import gemma4
from gemma4 import chat, sampling
from tests import serve_util, tokenizer_util

KEY = 'test-key'


@pytest.fixture(scope='module')
def tok_path(tmp_path_factory):
  return tokenizer_util.build(tmp_path_factory.mktemp('tok') / 'chat.model', chat=True)


@pytest.fixture(scope='module')
def sampler(tok_path):
  return serve_util.tiny_sampler(tok_path)


@pytest.fixture(scope='module')
def server(sampler):
  app = gemma4.serve.create_app(sampler, model_name='tiny', slots=2, api_key=KEY,
                                max_body_bytes=1 << 20)
  s = serve_util.Server(app)
  yield s
  s.stop()


@pytest.fixture(scope='module')
def client(server):
  return openai.OpenAI(base_url=server.url + '/v1', api_key=KEY, max_retries=0, timeout=120)


def greedy(sampler, prompt, n, **kw):
  """sample()'s tokens (up to the end token, which is dropped), text and logprobs."""
  out = sampler.sample(prompt, max_new_tokens=n, return_state=True, **kw)
  tokens = [int(t) for t in out.tokens if t]
  lps = list(np.asarray(out.logprobs)[:len(tokens)])
  if tokens and tokens[-1] in sampler.end_tokens:
    tokens, lps = tokens[:-1], lps[:-1]
  return tokens, sampler.tokenizer.decode(tokens), lps


def render(turns):
  return chat.render(turns)


def test_chat_equals_sampling_the_rendered_conversation(client, sampler):
  messages = [{'role': 'system', 'content': 'Be brief.'},
              {'role': 'user', 'content': 'Hello there'},
              {'role': 'assistant', 'content': 'Hi! How can I help?'},
              {'role': 'user', 'content': [{'type': 'text', 'text': 'Name a colour.'}]}]
  r = client.chat.completions.create(model='tiny', messages=messages, max_tokens=12,
                                     temperature=0)
  turns = [chat.System('Be brief.'), chat.User('Hello there'), chat.Model('Hi! How can I help?'),
           chat.User('Name a colour.')]
  tokens, text, _ = greedy(sampler, render(turns), 12)
  assert isinstance(r, openai.types.chat.ChatCompletion)
  assert r.choices[0].message.content == text and r.choices[0].message.role == 'assistant'
  assert r.choices[0].finish_reason == ('length' if len(tokens) == 12 else 'stop')
  assert r.usage.prompt_tokens == len(sampler.encode(render(turns)).ids)
  assert r.usage.completion_tokens == 12 or r.usage.completion_tokens == len(tokens) + 1
  assert r.model == 'tiny' and r.object == 'chat.completion' and r.id.startswith('chatcmpl-')


def test_stream_joins_to_the_same_text_with_usage(client, sampler):
  kw = dict(model='tiny', messages=[{'role': 'user', 'content': 'Tell me a story'}],
            max_completion_tokens=15, temperature=0)
  whole = client.chat.completions.create(**kw)
  chunks = list(client.chat.completions.create(**kw, stream=True,
                                               stream_options={'include_usage': True}))
  assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
  assert chunks[0].choices[0].delta.role == 'assistant'
  text = ''.join(c.choices[0].delta.content or '' for c in chunks if c.choices)
  assert text == whole.choices[0].message.content
  assert text == greedy(sampler, render([chat.User('Tell me a story')]), 15)[1]
  finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
  assert finals == [whole.choices[0].finish_reason]
  assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
  assert len({c.id for c in chunks}) == 1


def test_logprobs_equal_samples(client, sampler):
  r = client.chat.completions.create(model='tiny', messages=[{'role': 'user', 'content': 'Hi'}],
                                     max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
  tokens, _, lps = greedy(sampler, render([chat.User('Hi')]), 6)
  content = r.choices[0].logprobs.content
  assert [c.token for c in content] == [sampler.tokenizer.decode([t]) for t in tokens]
  np.testing.assert_allclose([c.logprob for c in content], lps, atol=1e-5, rtol=0)
  for c in content:
    tops = [t.logprob for t in c.top_logprobs]
    assert len(tops) == 3 and tops == sorted(tops, reverse=True)
    assert c.top_logprobs[0].token == c.token  # greedy: the chosen is the likeliest
    assert bytes(c.bytes).decode() == c.token
  s = client.completions.create(model='tiny', prompt='Once upon a time', max_tokens=5,
                                temperature=0, logprobs=2)
  tokens, text, lps = greedy(sampler, 'Once upon a time', 5)
  assert s.choices[0].text == text
  np.testing.assert_allclose(s.choices[0].logprobs.token_logprobs, lps, atol=1e-5, rtol=0)
  assert all(len(t) <= 2 for t in s.choices[0].logprobs.top_logprobs)
  assert s.choices[0].logprobs.text_offset[0] == 0


def test_completions_stream_seed_and_stop(client, sampler):
  kw = dict(model='tiny', prompt='The weather today', max_tokens=12)
  r = client.completions.create(**kw, temperature=0)
  assert isinstance(r, openai.types.Completion) and r.object == 'text_completion'
  assert r.choices[0].text == greedy(sampler, 'The weather today', 12)[1]
  streamed = ''.join(c.choices[0].text for c in client.completions.create(**kw, temperature=0,
                                                                          stream=True))
  assert streamed == r.choices[0].text
  # seeded draws: the same as sample() with the same seed and filters, twice
  method = sampling.Combined(temperature=1.0, top_k=None, top_p=0.9, min_p=0.0)
  want = greedy(sampler, 'The weather today', 12, sampling=method, rng=7)[1]
  for _ in range(2):
    got = client.completions.create(**kw, temperature=1.0, top_p=0.9, seed=7)
    assert got.choices[0].text == want
  # stop: the text ends before the first stop string, finish_reason 'stop'
  full = r.choices[0].text
  stop = full[len(full) // 2:len(full) // 2 + 3]
  cut = client.completions.create(**kw, temperature=0, stop=[stop, 'zzzz-never'])
  assert cut.choices[0].text == full[:full.index(stop)] and cut.choices[0].finish_reason == 'stop'
  short = client.completions.create(**{**kw, 'max_tokens': 3}, temperature=0)
  assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == 'length'


def test_response_format_json_schema(client):
  schema = {'type': 'object', 'properties': {'colour': {'enum': ['red', 'green', 'blue']},
                                             'n': {'type': 'integer', 'maximum': 9}},
            'required': ['colour', 'n'], 'additionalProperties': False}
  r = client.chat.completions.create(
      model='tiny', messages=[{'role': 'user', 'content': 'A colour as JSON'}], max_tokens=40,
      temperature=0, response_format={'type': 'json_schema',
                                      'json_schema': {'name': 'c', 'schema': schema}})
  jsonschema.validate(json.loads(r.choices[0].message.content), schema)
  assert r.choices[0].finish_reason == 'stop'


TOOLS = [{'type': 'function', 'function': {
    'name': 'get_weather', 'description': 'The weather in a city.',
    'parameters': {'type': 'object', 'properties': {
        'city': {'type': 'string', 'maxLength': 12}, 'unit': {'enum': ['C', 'F']}},
        'required': ['city', 'unit']}}},
    {'type': 'function', 'function': {'name': 'add', 'parameters': {
        'type': 'object', 'properties': {'a': {'type': 'integer'}, 'b': {'type': 'integer'}},
        'required': ['a', 'b']}}}]


def test_tools_and_tool_choice(client, sampler):
  msgs = [{'role': 'user', 'content': 'What is the weather in Paris?'}]
  r = client.chat.completions.create(model='tiny', messages=msgs, tools=TOOLS, max_tokens=40,
                                     temperature=0, tool_choice={'type': 'function',
                                                                 'function': {'name': 'get_weather'}})
  calls = r.choices[0].message.tool_calls
  assert calls and calls[0].function.name == 'get_weather' and calls[0].type == 'function'
  jsonschema.validate(json.loads(calls[0].function.arguments), TOOLS[0]['function']['parameters'])
  # the call and its answer go back in; the prompt is the one gemma4.chat renders
  msgs += [{'role': 'assistant', 'content': None, 'tool_calls': [c.model_dump() for c in calls]},
           {'role': 'tool', 'tool_call_id': calls[0].id, 'content': '{"temp": 21}'}]
  r2 = client.chat.completions.create(model='tiny', messages=msgs, tools=TOOLS, max_tokens=8,
                                      temperature=0, tool_choice='none')
  args = json.loads(calls[0].function.arguments)
  turns = [chat.System(*[chat.Tool.from_schema(t['function']) for t in TOOLS]),
           chat.User('What is the weather in Paris?'),
           chat.Model(chat.ToolCall('get_weather', args), chat.ToolResponse('get_weather', {'temp': 21}))]
  call_open = sampler.tokenizer.token_id('<|tool_call>')
  _, text, _ = greedy(sampler, render(turns), 8, logit_bias={call_open: -100})
  assert r2.choices[0].message.content == text and not r2.choices[0].message.tool_calls
  streamed = list(client.chat.completions.create(model='tiny', messages=msgs[:1], tools=TOOLS,
                                                 max_tokens=120, temperature=0, stream=True,
                                                 tool_choice='required'))
  deltas = [tc for c in streamed if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
  assert deltas and deltas[0].index == 0 and deltas[0].function.name in ('get_weather', 'add')


def _png(arr) -> str:
  buf = io.BytesIO()
  Image.fromarray(arr).save(buf, format='PNG')
  return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def _wav(x, rate=16000) -> str:
  buf = io.BytesIO()
  with wave.open(buf, 'wb') as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes((np.clip(x, -1, 1) * 32767).astype('<i2').tobytes())
  return base64.b64encode(buf.getvalue()).decode()


def test_image_and_audio_parts(client, sampler):
  img = np.random.default_rng(1).integers(0, 256, (60, 90, 3), dtype=np.uint8)
  clip = np.sin(np.arange(8000) / 7.0).astype(np.float32) * 0.5
  r = client.chat.completions.create(model='tiny', max_tokens=6, temperature=0, messages=[
      {'role': 'user', 'content': [{'type': 'text', 'text': 'Look: '},
                                   {'type': 'image_url', 'image_url': {'url': _png(img)}},
                                   {'type': 'text', 'text': ' and listen: '},
                                   {'type': 'input_audio', 'input_audio': {'data': _wav(clip), 'format': 'wav'}}]}])
  q = (np.clip(clip, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768.0
  turns = [chat.User('Look: ', chat.Image(img), ' and listen: ', chat.Audio(q))]
  images, audio = chat.turns.media(turns)
  _, text, _ = greedy(sampler, render(turns), 6, images=images, audio=audio)
  assert r.choices[0].message.content == text
  assert r.usage.prompt_tokens == len(sampler.encode(render(turns), images=images, audio=audio).ids)


def test_models_health_and_api_key(client, server):
  models = client.models.list()
  assert [m.id for m in models.data] == ['tiny'] and client.models.retrieve('tiny').id == 'tiny'
  with pytest.raises(openai.NotFoundError, match='does not exist'):
    client.models.retrieve('other')
  bad = openai.OpenAI(base_url=server.url + '/v1', api_key='wrong', max_retries=0)
  for call in (lambda: bad.models.list(),
               lambda: bad.completions.create(model='tiny', prompt='x', max_tokens=1),
               lambda: bad.chat.completions.create(model='tiny', max_tokens=1,
                                                   messages=[{'role': 'user', 'content': 'x'}])):
    with pytest.raises(openai.AuthenticationError, match='Incorrect API key'):
      call()
  assert serve_util.http('GET', server.url + '/health')[2]['status'] == 'ok'  # no key needed
  status, _, body = serve_util.http('GET', server.url + '/v1/models')
  assert status == 401 and body['error']['code'] == 'invalid_api_key'


def test_two_replicas_answer_a_seeded_request_alike(client, sampler):
  """Scaling out is replicas behind a load balancer: a second server (its own engine and
  cache) gives a seeded draw the same text as the first and as sample() with that seed,
  so requests may go to either."""
  other = serve_util.Server(gemma4.serve.create_app(sampler, model_name='tiny', slots=1))
  try:
    second = openai.OpenAI(base_url=other.url + '/v1', api_key='unused', max_retries=0,
                           timeout=120)
    kw = dict(model='tiny', prompt='A replica says', max_tokens=10, temperature=1.0, seed=11)
    method = sampling.Combined(temperature=1.0, top_k=None, top_p=1.0, min_p=0.0)
    want = greedy(sampler, 'A replica says', 10, sampling=method, rng=11)[1]
    texts = [c.completions.create(**kw).choices[0].text for c in (client, second, client)]
    assert texts == [want] * 3
  finally:
    other.stop()
