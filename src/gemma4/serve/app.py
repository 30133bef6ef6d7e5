"""The OpenAI-compatible HTTP server: a Starlette app over one `Engine`.

`create_app(sampler, ...)` returns the ASGI app (embed it anywhere); `run(app, ...)`
serves it with uvicorn. Endpoints: /v1/chat/completions, /v1/completions, /v1/models,
/v1/models/{id}, /health. Errors are OpenAI's error body with the status it uses (400
for a bad request, 401 without the API key, 404, 413 for a body over the limit, 429 when
the queue is full, with Retry-After). A client that goes away frees its row at the
engine's next step. On shutdown (SIGTERM) the server stops accepting, lets running
requests finish for up to `shutdown_timeout` seconds, cancels the rest and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from gemma4.chat import grammar
from gemma4.chat import reply as _reply
from gemma4.chat.sampler import reply_constraint
from gemma4.sampler import Gemma4Sampler
from gemma4.serve import openai_api as api
from gemma4.serve.engine import Engine, EngineStopped, Finished, QueueFull, Settings, Token
from gemma4.stops import StopText
from gemma4.tokenizer import IncrementalDecoder

MAX_BODY_BYTES = 32 * 1024 * 1024  # base64 images and audio fit; larger bodies get 413
POLL_S = 0.25  # how often a non-streamed request checks that its client is still there


class _Reply:
  """One reply assembled from the engine's tokens: the answer, the thought and tool
  calls (chat), or the text (completions); stop strings cut the answer. `add` returns
  the deltas (dicts of OpenAI's delta fields) each token completes."""

  def __init__(self, job: api.Job, tokenizer, end_tokens):
    self.job, self.tokenizer, self.end_tokens = job, tokenizer, end_tokens
    self.parser = _reply.ReplyParser(tokenizer) if job.kind == 'chat' else None
    self.decoder = IncrementalDecoder(tokenizer)
    self.stops = StopText(job.stop)
    self.content, self.reasoning, self.calls, self.logprobs = '', '', [], []
    self.sampled = 0
    self.stopped = False  # a stop string was found

  def _text_of(self, token: int) -> str:
    return self.tokenizer.decode([token])

  def add(self, token: Token) -> list[dict]:
    if self.stopped:
      return []
    self.sampled += 1
    if token.id in self.end_tokens:
      return []
    if self.job.logprobs:
      self.logprobs.append((self._text_of(token.id), token.logprob,
                            [(self._text_of(i), lp) for i, lp in token.top]))
    if self.parser is None:
      return self._answer(self.decoder.add(token.id))
    return self._pieces(self.parser.add(token.id))

  def finish(self) -> list[dict]:
    if self.stopped:
      return []
    if self.parser is None:
      out = self._answer(self.decoder.rest())
    else:
      out = self._pieces(self.parser.finish())
    if not self.stopped and (rest := self.stops.flush()):
      self.content += rest
      out.append({'content': rest})
    return out

  def _answer(self, text: str) -> list[dict]:
    if not text:
      return []
    shown, found = self.stops.add(text)
    self.stopped = found
    self.content += shown
    return [{'content': shown}] if shown else []

  def _pieces(self, pieces) -> list[dict]:
    out = []
    for p in pieces:
      if self.stopped:
        break
      if p.channel == _reply.ANSWER:
        out += self._answer(p.text)
      elif p.channel == _reply.THOUGHT:
        self.reasoning += p.text
        out.append({'reasoning_content': p.text})
      elif p.call is not None:
        if rest := self.stops.flush():  # the answer before a call is whole
          self.content += rest
          out.append({'content': rest})
        self.calls.append(p.call)
        out.append({'tool_calls': [api.tool_call_json(p.call, len(self.calls) - 1)]})
      else:  # a call that does not parse: its text stays in the answer, as written
        out += self._answer(p.text)
    return out

  def finish_reason(self, done: Finished) -> str:
    if self.stopped:
      return 'stop'
    if done.reason == 'length':
      return 'length'
    return 'tool_calls' if self.calls else 'stop'


def create_app(sampler: Gemma4Sampler, *, model_name: str, slots: int = 4,
               max_queue: int = 64, api_key: str | None = None, media_dirs=(),
               max_body_bytes: int = MAX_BODY_BYTES, shutdown_timeout: float = 10.0,
               warmup: bool = True, engine: Engine | None = None) -> Starlette:
  """The ASGI app serving `sampler`'s model as `model_name` (see the module doc)."""
  engine = engine or Engine(sampler, slots=slots, max_queue=max_queue)
  cfg = sampler.model.config
  served = api.ServedModel(
      name=model_name, family='gemma3' if cfg.family == 'gemma3' else 'gemma4',
      has_vision=sampler.model.has_vision, has_audio=sampler.model.has_audio,
      cache_length=sampler.cache_length,
      media_dirs=tuple(os.path.realpath(d) for d in media_dirs))
  tokenizer = sampler.tokenizer
  end_tokens = frozenset(sampler.end_tokens)
  created = api.now()
  call_grammars: dict = {}  # tools (as JSON) -> their call grammar, built once

  def error(e: api.APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

  def authorize(request: Request) -> None:
    if api_key is None:
      return
    got = request.headers.get('authorization', '')
    if not hmac.compare_digest(got.encode(), f'Bearer {api_key}'.encode()):
      raise api.APIError('Incorrect API key provided (send Authorization: Bearer <key>)',
                         status=401, code='invalid_api_key')

  async def read_json(request: Request):
    length = request.headers.get('content-length')
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
      raise api.APIError(f'the request body is {length} bytes; the limit is {max_body_bytes}',
                         status=413, code='request_too_large')
    raw = bytearray()
    async for chunk in request.stream():
      raw += chunk
      if len(raw) > max_body_bytes:
        raise api.APIError(f'the request body is over the limit of {max_body_bytes} bytes',
                           status=413, code='request_too_large')
    try:
      return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise api.APIError(f'We could not parse the JSON body of your request: {e}') from None

  def tool_hooks(job: api.Job):
    """The tool-call grammar and the tool_choice hook of a chat job."""
    if not job.tools or job.tool_choice == 'none':
      calls = None
    else:
      tools = job.tools if job.tool_choice in ('auto', 'required') else tuple(
          t for t in job.tools if t.name == job.tool_choice)
      key = json.dumps([t.declaration() for t in tools], sort_keys=True)
      if key not in call_grammars:
        call_grammars[key] = grammar.tool_call_grammar(tools, tokenizer)
      calls = call_grammars[key]
    parser = _reply.ReplyParser(tokenizer)
    user = None
    if job.tools and job.tool_choice == 'none':
      no_call = np.ones(tokenizer.vocab_size, bool)
      no_call[parser.call_open] = False
      def user(ids):  # noqa: E306 - never opens a call
        return no_call
    elif job.tools and job.tool_choice != 'auto':
      def user(ids):  # noqa: E306 - the reply opens with a call
        return [parser.call_open] if not ids else None
    return calls, user

  def prepare(job: api.Job):
    """The encoded prompt and the engine settings (the costly part: off the event loop)."""
    try:
      prompt = sampler.encode(job.prompt, images=job.images, audio=job.audio,
                              add_bos=job.add_bos)
    except (TypeError, ValueError) as e:
      raise api.APIError(str(e), param='messages' if job.kind == 'chat' else 'prompt') from None
    n = len(prompt.ids)
    room = served.cache_length - n
    if room < 1 or (job.max_tokens is not None and job.max_tokens > room):
      asked = job.max_tokens or 1
      raise api.APIError(
          f"This model's maximum context length is {served.cache_length} tokens. However, "
          f'you requested {n + asked} tokens ({n} in the '
          f'{"messages" if job.kind == "chat" else "prompt"}, {asked} in the completion). '
          'Please reduce the length of the messages or the completion.',
          param='messages' if job.kind == 'chat' else 'prompt', code='context_length_exceeded')
    allowed = None
    if job.kind == 'chat':
      calls, user = tool_hooks(job)
      try:
        allowed = reply_constraint(tokenizer, tuple(end_tokens), response_format=job.response_format,
                                   tool_grammar=calls, think=job.think, user=user)
      except (TypeError, ValueError) as e:
        raise api.APIError(f'response_format: {e}', param='response_format') from None
    try:
      settings = Settings(max_new_tokens=job.max_tokens or room, top_logprobs=job.top_logprobs,
                          allowed=allowed, **job.sampling)
      engine.check(prompt, settings)
    except (TypeError, ValueError) as e:
      raise api.APIError(str(e)) from None
    return prompt, settings

  async def start(request: Request, parse):
    """Checks and queues a request: (job, engine request, event queue, prompt tokens)."""
    authorize(request)
    job = parse(await read_json(request), served)
    prompt, settings = await asyncio.to_thread(prepare, job)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def sink(event):
      with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
        loop.call_soon_threadsafe(events.put_nowait, event)

    try:
      handle = engine.submit(prompt, settings, sink)
    except QueueFull as e:
      raise api.APIError(f'the server is busy: {e}; retry later', status=429,
                         type='rate_limit_error', code='rate_limit_exceeded',
                         headers={'Retry-After': '1'}) from None
    except EngineStopped as e:
      raise api.APIError(str(e), status=503, type='server_error') from None
    return job, handle, events, len(prompt.ids)

  def chunk_json(job, rid, choice: dict):
    kind = 'chat.completion.chunk' if job.kind == 'chat' else 'text_completion'
    return {'id': rid, 'object': kind, 'created': api.now(), 'model': served.name,
            'choices': [choice]}

  def logprob_json(job, items, offset=0):
    if not job.logprobs:
      return None
    if job.kind == 'chat':
      return {'content': [api.token_logprob(*x) for x in items]}
    return api.completion_logprobs(items, offset)

  def delta_choice(job, delta: dict, items, offset=0, finish=None):
    if job.kind == 'chat':
      return {'index': 0, 'delta': delta, 'logprobs': logprob_json(job, items),
              'finish_reason': finish}
    return {'index': 0, 'text': delta.get('content', ''),
            'logprobs': logprob_json(job, items, offset), 'finish_reason': finish}

  async def handle_request(request: Request, parse):
    try:
      job, handle, events, n_prompt = await start(request, parse)
    except api.APIError as e:
      return error(e)
    out = _Reply(job, tokenizer, end_tokens)
    rid = api.new_id('chatcmpl' if job.kind == 'chat' else 'cmpl')
    if job.stream:
      return StreamingResponse(stream(job, handle, events, out, rid, n_prompt),
                               media_type='text/event-stream',
                               headers={'Cache-Control': 'no-cache'})
    try:
      done = None
      while done is None:
        try:
          event = await asyncio.wait_for(events.get(), POLL_S)
        except TimeoutError:
          if await request.is_disconnected():
            handle.cancel()
            return JSONResponse({}, status_code=499)
          continue
        if isinstance(event, Finished):
          done = event
        else:
          out.add(event)
          if out.stopped:
            handle.cancel('stop')
      if done.reason == 'error':
        return error(api.APIError(f'the engine failed: {done.error}', status=500,
                                  type='server_error'))
      out.finish()
    finally:
      if handle.finished is None:
        handle.cancel()
    usage = api.usage(n_prompt, out.sampled, handle.reused)
    reason = out.finish_reason(done)
    if job.kind == 'chat':
      message = {'role': 'assistant',
                 'content': out.content if out.content or not out.calls else None}
      if out.reasoning:
        message['reasoning_content'] = out.reasoning
      if out.calls:
        message['tool_calls'] = [api.tool_call_json(c) for c in out.calls]
      choice = {'index': 0, 'message': message, 'logprobs': logprob_json(job, out.logprobs),
                'finish_reason': reason}
      kind = 'chat.completion'
    else:
      choice = {'index': 0, 'text': out.content, 'logprobs': logprob_json(job, out.logprobs),
                'finish_reason': reason}
      kind = 'text_completion'
    return JSONResponse({'id': rid, 'object': kind, 'created': api.now(), 'model': served.name,
                         'choices': [choice], 'usage': usage, 'system_fingerprint': None})

  async def stream(job, handle, events, out: _Reply, rid, n_prompt):
    try:
      if job.kind == 'chat':
        yield api.sse(chunk_json(job, rid, delta_choice(job, {'role': 'assistant', 'content': ''}, [])))
      done, shown, offset = None, 0, 0
      while done is None:
        event = await events.get()
        if isinstance(event, Finished):
          done = event
          deltas = out.finish() if event.reason != 'error' else []
        else:
          deltas = out.add(event)
          if out.stopped:
            handle.cancel('stop')
        items = out.logprobs[shown:]
        if deltas or (items and not out.stopped):
          merged = _merge(deltas)
          yield api.sse(chunk_json(job, rid, delta_choice(job, merged, items, offset)))
          offset += sum(len(x[0]) for x in items)
          shown = len(out.logprobs)
      if done.reason == 'error':
        yield api.sse(api.APIError(f'the engine failed: {done.error}', status=500,
                                   type='server_error').body())
      else:
        final = delta_choice(job, {}, [], finish=out.finish_reason(done))
        if job.kind == 'completion':
          final['text'] = ''
        yield api.sse(chunk_json(job, rid, final))
        if job.include_usage:
          body = chunk_json(job, rid, {})
          body['choices'] = []
          body['usage'] = api.usage(n_prompt, out.sampled, handle.reused)
          yield api.sse(body)
      yield api.sse('[DONE]')
    finally:  # also when the client goes away: the engine frees the row next step
      if handle.finished is None:
        handle.cancel()

  async def chat_completions(request: Request):
    return await handle_request(request, api.parse_chat)

  async def completions(request: Request):
    return await handle_request(request, api.parse_completion)

  def model_json():
    return {'id': served.name, 'object': 'model', 'created': created, 'owned_by': 'gemma4'}

  async def models(request: Request):
    try:
      authorize(request)
    except api.APIError as e:
      return error(e)
    return JSONResponse({'object': 'list', 'data': [model_json()]})

  async def model(request: Request):
    try:
      authorize(request)
      if request.path_params['name'] != served.name:
        raise api.APIError(f"The model {request.path_params['name']!r} does not exist",
                           status=404, code='model_not_found', param='model')
    except api.APIError as e:
      return error(e)
    return JSONResponse(model_json())

  async def health(request: Request):
    return JSONResponse({'status': 'ok', 'model': served.name, 'slots': engine.num_slots,
                         'busy': engine.busy, 'waiting': engine.waiting})

  async def http_error(request: Request, exc: HTTPException):
    return error(api.APIError(exc.detail or 'error', status=exc.status_code,
                              code='not_found' if exc.status_code == 404 else None))

  @contextlib.asynccontextmanager
  async def lifespan(app):
    engine.start()
    if warmup:
      await asyncio.to_thread(engine.warmup)
    try:
      yield
    finally:
      await asyncio.to_thread(engine.stop, shutdown_timeout)

  app = Starlette(routes=[
      Route('/v1/chat/completions', chat_completions, methods=['POST']),
      Route('/v1/completions', completions, methods=['POST']),
      Route('/v1/models', models, methods=['GET']),
      Route('/v1/models/{name:path}', model, methods=['GET']),
      Route('/health', health, methods=['GET']),
  ], exception_handlers={HTTPException: http_error}, lifespan=lifespan)
  app.state.engine = engine
  return app


def _merge(deltas: list[dict]) -> dict:
  """Several deltas of one token as one delta (text fields joined, tool calls listed)."""
  out: dict = {}
  for d in deltas:
    for k, v in d.items():
      if k == 'tool_calls':
        out.setdefault(k, []).extend(v)
      else:
        out[k] = out.get(k, '') + v
  return out


def run(app: Starlette, *, host: str = '127.0.0.1', port: int = 8000,
        shutdown_timeout: float = 10.0, log_level: str = 'info') -> None:
  """Serves the app with uvicorn until SIGINT/SIGTERM (a graceful stop, then exit)."""
  import signal
  import threading

  import uvicorn

  class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
      """SIGINT/SIGTERM start the graceful stop; the process then exits 0 (uvicorn
      would raise the signal again once stopped, and exit by it)."""
      if threading.current_thread() is not threading.main_thread():
        yield
        return
      before = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
      try:
        yield
      finally:
        for sig, handler in before.items():
          signal.signal(sig, handler)

  config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                          timeout_graceful_shutdown=shutdown_timeout, lifespan='on')
  Server(config).run()
