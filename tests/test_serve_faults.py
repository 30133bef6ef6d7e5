"""The server under bad input and faults, over 127.0.0.1 (servers started and stopped
here; every request loop bounded in count and time).

Checked: malformed JSON, unknown fields, wrong types, out-of-range values, a wrong
model, n > 1, a prompt larger than the cache, URLs and file paths for images and an
unknown route each get their status (400/404) and OpenAI's error body naming the field;
a body over the limit gets 413; a full queue answers 429 with Retry-After while every
admitted request completes (none lost, none duplicated); a client that disconnects
mid-stream frees its slot within a second; the server answers /health after all of
them; SIGTERM lets a running stream finish and the process exits 0.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import openai
import pytest

import gemma4
from tests import serve_util, tokenizer_util


@pytest.fixture(scope='module')
def tok_path(tmp_path_factory):
  return tokenizer_util.build(tmp_path_factory.mktemp('tok') / 'chat.model', chat=True)


@pytest.fixture(scope='module')
def server(tok_path):
  sampler = serve_util.tiny_sampler(tok_path, media=False)
  s = serve_util.Server(gemma4.serve.create_app(sampler, model_name='tiny', slots=1,
                                                max_queue=1, max_body_bytes=64 * 1024))
  yield s
  s.stop()


def post(server, path, body, raw=False):
  data = body if raw else json.dumps(body).encode()
  return serve_util.http('POST', server.url + path, data, {'Content-Type': 'application/json'})


MSG = [{'role': 'user', 'content': 'hi'}]
BAD = [  # (body, status, param, message pattern)
    ({'model': 'tiny', 'messages': MSG, 'temprature': 0.5}, 400, 'temprature',
     r"Unrecognized request argument supplied: 'temprature'"),
    ({'model': 'tiny', 'messages': MSG, 'temperature': 'hot'}, 400, 'temperature',
     r"'temperature' must be a number, got string"),
    ({'model': 'tiny', 'messages': MSG, 'temperature': 3}, 400, 'temperature',
     r"'temperature' must be in \[0, 2\], got 3"),
    ({'model': 'tiny', 'messages': MSG, 'max_tokens': 0}, 400, 'max_tokens',
     r"'max_tokens' must be in \[1, "),
    ({'model': 'tiny', 'messages': MSG, 'n': 2}, 400, 'n', r"'n' must be 1 on this server"),
    ({'model': 'tiny', 'messages': MSG, 'top_logprobs': 2}, 400, 'top_logprobs',
     r"'top_logprobs' needs 'logprobs': true"),
    ({'model': 'gpt-4o', 'messages': MSG}, 404, 'model', r"The model 'gpt-4o' does not exist"),
    ({'model': 'tiny', 'messages': []}, 400, 'messages', r"'messages' must be a non-empty array"),
    ({'model': 'tiny', 'messages': [{'role': 'robot', 'content': 'x'}]}, 400, 'messages[0].role',
     r"messages\[0\].role must be 'system', 'developer', 'user', 'assistant' or 'tool'"),
    ({'model': 'tiny', 'messages': [{'role': 'user', 'content': [
        {'type': 'image_url', 'image_url': {'url': 'https://example.com/a.png'}}]}]}, 400,
     'messages[0].content[0]', r'model .tiny. takes no images'),
    ({'model': 'tiny', 'messages': MSG, 'stream_options': {'include_usage': True}}, 400,
     'stream_options', r"'stream_options' is only allowed when 'stream' is true"),
    ({'model': 'tiny', 'messages': MSG, 'audio': {'voice': 'x'}}, 400, 'audio',
     r"'audio' is not supported by this server"),
    ({'model': 'tiny', 'messages': MSG, 'response_format': {'type': 'xml'}}, 400,
     'response_format', r"'response_format' must be"),
    ({'model': 'tiny', 'messages': [{'role': 'user', 'content': 'word ' * 600}]}, 400,
     'messages', r"maximum context length is 512 tokens\. However, you requested"),
    ({'model': 'tiny', 'messages': MSG, 'max_tokens': 600}, 400, 'messages',
     r"maximum context length is 512 tokens"),
    ({'model': 'tiny', 'messages': MSG, 'logit_bias': {'abc': 1}}, 400, 'logit_bias',
     r"'logit_bias' keys must be token ids"),
    ({'model': 'tiny', 'messages': MSG, 'tool_choice': 'required'}, 400, 'tool_choice',
     r"'tool_choice' 'required' needs 'tools'"),
    ([1, 2], 400, None, r'the request body must be a JSON object, got array'),
]


@pytest.mark.parametrize('body,status,param,pattern', BAD, ids=[b[2] or 'array' for b in BAD])
def test_bad_chat_requests_get_openai_errors(server, body, status, param, pattern):
  import re
  got, _, err = post(server, '/v1/chat/completions', body)
  assert got == status and err['error']['param'] == param
  assert re.search(pattern, err['error']['message']), err
  assert err['error']['type'] == 'invalid_request_error'


def test_malformed_huge_and_unknown(server):
  status, _, err = post(server, '/v1/chat/completions', b'{"model": "tiny", "messages": [', raw=True)
  assert status == 400 and 'could not parse the JSON body' in err['error']['message']
  status, _, err = post(server, '/v1/completions', {'model': 'tiny', 'prompt': 'x' * 70_000})
  assert status == 413 and err['error']['code'] == 'request_too_large'
  status, _, err = post(server, '/v1/completions', {'model': 'tiny', 'prompt': 'x', 'echo': True})
  assert status == 400 and err['error']['param'] == 'echo'
  status, _, err = serve_util.http('GET', server.url + '/v2/nothing')
  assert status == 404 and 'error' in err
  status, _, err = serve_util.http('GET', server.url + '/v1/chat/completions')
  assert status == 405 and 'error' in err
  assert serve_util.http('GET', server.url + '/health')[0] == 200


def test_full_queue_answers_429_and_loses_nothing(server):
  """1 slot, 1 waiting place: of 6 requests at once, the ones admitted each get one
  whole answer and the rest 429 with Retry-After."""
  client = openai.OpenAI(base_url=server.url + '/v1', api_key='x', max_retries=0, timeout=120)

  def one(i):
    try:
      r = client.completions.create(model='tiny', prompt=f'request {i}', max_tokens=20,
                                    temperature=0)
      return 'ok', r.usage.completion_tokens, r.choices[0].finish_reason
    except openai.RateLimitError as e:
      return 'busy', e.response.headers.get('retry-after'), e.body['code']

  with concurrent.futures.ThreadPoolExecutor(6) as ex:
    results = list(ex.map(one, range(6)))
  ok = [r for r in results if r[0] == 'ok']
  busy = [r for r in results if r[0] == 'busy']
  assert len(ok) + len(busy) == 6 and len(ok) >= 2 and busy
  assert all(r[1] in (20, ) or r[2] == 'stop' for r in ok)
  assert all(r[1] == '1' and r[2] == 'rate_limit_exceeded' for r in busy)
  deadline = time.monotonic() + 30
  while server.engine.busy and time.monotonic() < deadline:
    time.sleep(0.05)
  assert server.engine.busy == 0 and server.engine.waiting == 0


def test_disconnect_mid_stream_frees_the_slot(server):
  body = json.dumps({'model': 'tiny', 'prompt': 'a long story', 'max_tokens': 400,
                     'stream': True, 'temperature': 0}).encode()
  req = urllib.request.Request(server.url + '/v1/completions', data=body,
                               headers={'Content-Type': 'application/json'})
  finished = server.engine.stats['finished']
  resp = urllib.request.urlopen(req, timeout=60)
  for _ in range(3):
    assert resp.readline().startswith(b'data: ')
    resp.readline()
  assert server.engine.busy == 1
  resp.close()  # the client goes away
  t0 = time.monotonic()
  while server.engine.busy and time.monotonic() - t0 < 5:
    time.sleep(0.01)
  assert server.engine.busy == 0 and time.monotonic() - t0 < 1.0
  assert server.engine.stats['finished'] == finished + 1
  assert serve_util.http('GET', server.url + '/health')[2]['busy'] == 0


def test_sigterm_finishes_the_running_stream_and_exits_0(tok_path):
  port = serve_util.free_port()
  env = {**os.environ, 'PYTHONPATH': os.path.dirname(os.path.dirname(__file__))}
  proc = subprocess.Popen([sys.executable, '-m', 'tests.serve_util', str(port), str(tok_path)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  try:
    url = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + 300
    while True:
      try:
        if serve_util.http('GET', url + '/health', timeout=2)[0] == 200:
          break
      except OSError:
        pass
      assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
      time.sleep(0.2)
    body = json.dumps({'model': 'tiny', 'prompt': 'count', 'max_tokens': 40, 'stream': True,
                       'temperature': 0}).encode()
    resp = urllib.request.urlopen(urllib.request.Request(
        url + '/v1/completions', data=body, headers={'Content-Type': 'application/json'}),
        timeout=60)
    assert resp.readline().startswith(b'data: ')
    proc.send_signal(signal.SIGTERM)
    rest = resp.read().decode()
    events = [line[6:] for line in rest.splitlines() if line.startswith('data: ')]
    assert events[-1] == '[DONE]'
    assert json.loads(events[-2])['choices'][0]['finish_reason'] in ('length', 'stop')
    assert proc.wait(timeout=30) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.mark.parametrize('flags,message', [
    (['--slots', '0'], '--slots must be >= 1, got 0'),
    (['--port', '70000'], r'--port must be in \[0, 65535\], got 70000'),
    (['--media-dir', '/no/such/dir'], '--media-dir: not a directory: /no/such/dir'),
    (['-c', '/no/such.gguf'], 'no/such.gguf'),
])
def test_serve_command_refuses_bad_flags_before_loading(flags, message):
  import re
  r = subprocess.run([sys.executable, '-m', 'gemma4', 'serve', *flags], capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 1 and r.stderr.startswith('gemma4: error: ')
  assert re.search(message, r.stderr) and 'Traceback' not in r.stderr and 'loading' not in r.stderr
