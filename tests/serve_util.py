"""A gemma4 server for tests: the app on a free 127.0.0.1 port, on a thread, stopped by
the caller (`Server.stop`). Also run as a script (`python -m tests.serve_util PORT`) to
serve a tiny model in its own process, for the shutdown test."""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
import threading
import time

import uvicorn

import gemma4
from gemma4.serve.app import create_app, run
from tests import tokenizer_util


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def tiny_sampler(tokenizer_path, media: bool = True, **kw) -> gemma4.Gemma4Sampler:
  model = gemma4.models.tiny('e2b', text_only=not media)
  settings = dict(cache_length=512, max_out_length=48, pad_length=(32, 64, 128, 256, 512),
                  max_soft_tokens=70)
  return gemma4.Gemma4Sampler(model=model, params=model.init(0),
                              tokenizer=gemma4.Gemma4Tokenizer(tokenizer_path), **{**settings, **kw})


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 60):
  """A raw request: (status, headers, the JSON body or None)."""
  req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
  try:
    with urllib.request.urlopen(req, timeout=timeout) as r:
      status, head, raw = r.status, dict(r.headers), r.read()
  except urllib.error.HTTPError as e:
    status, head, raw = e.code, dict(e.headers), e.read()
  try:
    return status, head, json.loads(raw)
  except ValueError:
    return status, head, None


class Server:
  def __init__(self, app):
    self.app = app
    self.port = free_port()
    self.url = f'http://127.0.0.1:{self.port}'
    self.server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=self.port,
                                                log_level='warning', lifespan='on'))
    self.thread = threading.Thread(target=self.server.run, daemon=True)
    self.thread.start()
    deadline = time.monotonic() + 300
    while not self.server.started:
      if not self.thread.is_alive() or time.monotonic() > deadline:
        raise RuntimeError('the test server did not start')
      time.sleep(0.05)

  @property
  def engine(self):
    return self.app.state.engine

  def stop(self) -> None:
    self.server.should_exit = True
    self.thread.join(timeout=60)


if __name__ == '__main__':  # python -m tests.serve_util PORT TOKENIZER_PATH
  port, tok = int(sys.argv[1]), sys.argv[2]
  app = create_app(tiny_sampler(tok, media=False), model_name='tiny', slots=2,
                   shutdown_timeout=20)
  run(app, host='127.0.0.1', port=port, shutdown_timeout=20, log_level='warning')


__all__ = ['Server', 'free_port', 'http', 'tiny_sampler', 'tokenizer_util']
