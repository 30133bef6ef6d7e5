"""`gemma4 serve` against llama.cpp's server (llama-cpp-python) under the same client load.

Both servers run the same GGUF (the default Gemma 3 270M) on 127.0.0.1, each on a free
port, started by this script and stopped by it. For each round, each number of
concurrent clients (1, 4, 16, 64) and each engine in turn (the order alternates between
rounds), the clients stream greedy /v1/completions requests (max_tokens 64) until a fixed
number of requests is done (bounded in count and in time). Measured per run:

- throughput: generated tokens over all requests / wall time of the run (first request
  sent to last answer), tokens counted by re-encoding each answer with the GGUF's own
  tokenizer, the same way for both engines (llama-cpp-python reports no usage in
  streams);
- time to first token (request sent -> first chunk with text), p50 and p99;
- inter-token latency: gaps between text chunks of one answer, p50 and p99.

Reported: the median over rounds (min-max of the rounds), errors, and the ratios.
Writes bench/serve_load.txt and bench/serve_load.png. Then prefix reuse, both engines:
the time to first token of a long prompt new to the server and of the same start again
(bench/serve_prefix.txt; `--prefix-only` runs just that).

  .venv/bin/python bench/serve_load.py [--rounds 3] [--clients 1,4,16,64]

llama.cpp: `python -m llama_cpp.server` from the environment in --llama-python (default
~/.cache/gemma4/llama-venv, llama-cpp-python[server]), --n_threads 2, --n_ctx 4096,
--interrupt_requests False (its default True cancels a running request when another
arrives). It decodes one request at a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.serve_util import free_port  # noqa: E402
LLAMA_PY = Path.home() / '.cache/gemma4/llama-venv/bin/python'

SUBJECTS = ['a lighthouse keeper', 'a clockmaker', 'a dragon', 'two rival chefs', 'a lost robot',
            'a river town', 'an old violin', 'a mountain guide', 'a painter', 'a ship captain',
            'a beekeeper', 'a librarian', 'a young inventor', 'a fox', 'a desert caravan',
            'a night train']
PROMPTS = [f'Here is a long story about {s}.\n\nOnce upon a time,' for s in SUBJECTS]


class ServerProcess:
  def __init__(self, name: str, cmd: list[str], port: int, log: Path):
    self.name, self.port = name, port
    self.log = open(log, 'w')
    t0 = time.perf_counter()
    self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                 start_new_session=True)
    deadline = time.monotonic() + 900
    while True:
      if self.proc.poll() is not None:
        raise RuntimeError(f'{name} exited with {self.proc.returncode}; see {log}')
      try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/v1/models', timeout=5) as r:
          self.model = json.loads(r.read())['data'][0]['id']
          break
      except OSError:
        if time.monotonic() > deadline:
          self.stop()
          raise RuntimeError(f'{name} did not answer within 900 s; see {log}')
        time.sleep(1)
    self.ready_s = time.perf_counter() - t0

  def stop(self):
    if self.proc.poll() is None:
      os.killpg(self.proc.pid, signal.SIGTERM)
      try:
        self.proc.wait(60)
      except subprocess.TimeoutExpired:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
    self.log.close()


def one_request(port: int, model: str, prompt: str, max_tokens: int, timeout: float) -> dict:
  """One streamed completion: its text, send time, chunk times, error (or None)."""
  body = json.dumps({'model': model, 'prompt': prompt, 'max_tokens': max_tokens,
                     'temperature': 0, 'stream': True})
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
  sent = time.perf_counter()
  times, text, error = [], [], None
  try:
    conn.request('POST', '/v1/completions', body, {'Content-Type': 'application/json'})
    resp = conn.getresponse()
    if resp.status != 200:
      return dict(sent=sent, times=[], text='', error=f'HTTP {resp.status}: {resp.read()[:200]!r}')
    while True:
      line = resp.readline()
      if not line:
        error = 'the stream ended without [DONE]'
        break
      line = line.strip()
      if not line.startswith(b'data:'):
        continue
      data = line[5:].strip()
      if data == b'[DONE]':
        break
      chunk = json.loads(data)
      if 'error' in chunk:
        error = str(chunk['error'])[:200]
        break
      piece = chunk['choices'][0].get('text') if chunk.get('choices') else None
      if piece:
        times.append(time.perf_counter())
        text.append(piece)
  except OSError as e:
    error = f'{type(e).__name__}: {e}'
  finally:
    conn.close()
  return dict(sent=sent, times=times, text=''.join(text), error=error, done=time.perf_counter())


def run_load(port: int, model: str, clients: int, requests: int, max_tokens: int,
             tokenizer, time_limit: float) -> dict:
  """`clients` threads take requests from a shared count until `requests` are done or
  `time_limit` seconds have passed (no new request starts then)."""
  lock = threading.Lock()
  state = {'next': 0}
  start = time.perf_counter()

  def client(_):
    out = []
    while True:
      with lock:
        i = state['next']
        if i >= requests or time.perf_counter() - start > time_limit:
          return out
        state['next'] += 1
      out.append(one_request(port, model, PROMPTS[i % len(PROMPTS)], max_tokens,
                             timeout=time_limit))

  with concurrent.futures.ThreadPoolExecutor(clients) as pool:
    results = [r for rs in pool.map(client, range(clients)) for r in rs]
  wall = max(r['done'] for r in results) - start
  ok = [r for r in results if r['error'] is None]
  tokens = sum(len(tokenizer.encode(r['text'], add_bos=False)) for r in ok)
  ttft = [r['times'][0] - r['sent'] for r in ok if r['times']]
  itl = [b - a for r in ok for a, b in zip(r['times'], r['times'][1:])]
  pct = lambda xs, q: float(np.percentile(xs, q)) if xs else float('nan')
  return dict(requests=len(results), errors=[r['error'] for r in results if r['error']],
              tokens=tokens, wall=wall, tok_s=tokens / wall, ttft_p50=pct(ttft, 50),
              ttft_p99=pct(ttft, 99), itl_p50=pct(itl, 50), itl_p99=pct(itl, 99))


RULES = ' '.join(f'Rule {i}: answer in plain words, cite the {w} section, keep it short.'
                 for i, w in enumerate(['first', 'second', 'third', 'fourth', 'fifth', 'sixth',
                                        'seventh', 'eighth', 'ninth', 'tenth'] * 2))


def prefix_run(port: int, model: str, trials: int) -> dict:
  """Time to first token of a prompt whose long start (a ~350-token system text) the
  server has never seen (cold), then of the same start with another question (warm: the
  request before held it); one client, max_tokens 1. The medians in seconds."""
  times = {'cold': [], 'warm': []}
  for t in range(trials):
    head = f'Session {t} of {trials}. {RULES}\n'  # new to the server at 'cold'
    for kind in ('cold', 'warm'):
      r = one_request(port, model, f'{head}Question ({kind}): what is rule 3?', 1, 600)
      if r['error'] or not r['times']:
        raise RuntimeError(f'prefix run failed: {r["error"]}')
      times[kind].append(r['times'][0] - r['sent'])
  return {k: float(np.median(v)) for k, v in times.items()}


def versions(llama_python: Path) -> str:
  import jax
  import gemma4
  llama = subprocess.run([str(llama_python), '-c', 'import llama_cpp; print(llama_cpp.__version__)'],
                         capture_output=True, text=True).stdout.strip()
  return f'gemma4 {gemma4.__version__}, JAX {jax.__version__}, llama-cpp-python {llama}'


def machine() -> str:
  cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')),
             platform.processor())
  return f'{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}'


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--clients', default='1,4,16,64')
  ap.add_argument('--max-tokens', type=int, default=64)
  ap.add_argument('--slots', type=int, default=16, help="gemma4 serve --slots")
  ap.add_argument('--cache-length', type=int, default=1024, help='gemma4 serve --cache-length')
  ap.add_argument('--time-limit', type=float, default=600, help='seconds per run at most')
  ap.add_argument('--llama-python', type=Path, default=LLAMA_PY)
  ap.add_argument('--out', type=Path, default=ROOT / 'bench/serve_load.txt')
  ap.add_argument('--prefix-out', type=Path, default=ROOT / 'bench/serve_prefix.txt')
  ap.add_argument('--prefix-only', action='store_true', help='only the prefix-reuse run')
  args = ap.parse_args()
  levels = [int(x) for x in args.clients.split(',')]
  import gemma4
  from gemma4.checkpoints import gguf
  gguf_path = gemma4.default_checkpoint_path()
  tokenizer = gguf.load_tokenizer(gguf_path)
  logs = Path('/tmp/serve_load_logs')
  logs.mkdir(exist_ok=True)
  servers = {}
  try:
    port = free_port()
    servers['gemma4'] = ServerProcess(
        'gemma4', [sys.executable, '-m', 'gemma4', 'serve', '-c', str(gguf_path), '--port', str(port),
                   '--slots', str(args.slots), '--cache-length', str(args.cache_length),
                   '--max-queue', str(max(levels))], port, logs / 'gemma4.log')
    port = free_port()
    servers['llama.cpp'] = ServerProcess(
        'llama.cpp', [str(args.llama_python), '-m', 'llama_cpp.server', '--model', str(gguf_path),
                      '--n_threads', '2', '--n_ctx', '4096', '--host', '127.0.0.1',
                      '--port', str(port), '--interrupt_requests', 'False'], port, logs / 'llama.log')
    for s in servers.values():  # first requests (compiles, caches) outside the runs
      print(f'{s.name}: ready in {s.ready_s:.1f} s', flush=True)
      for n in (1, 2):
        run_load(s.port, s.model, n, n, 8, tokenizer, 600)
    runs = {}
    names = list(servers)
    for rnd in range(0 if args.prefix_only else args.rounds):
      for clients in levels:
        for name in (names if rnd % 2 == 0 else names[::-1]):
          s = servers[name]
          requests = 64 if clients >= 64 else 2 * clients
          r = run_load(s.port, s.model, clients, requests, args.max_tokens, tokenizer,
                       args.time_limit)
          runs.setdefault((name, clients), []).append(r)
          print(f'round {rnd} {name:9s} clients {clients:3d}: {r["tokens"]:5d} tokens '
                f'{r["wall"]:6.1f} s {r["tok_s"]:6.1f} tok/s ttft p50 {r["ttft_p50"]:.2f} '
                f'p99 {r["ttft_p99"]:.2f} s itl p50 {1e3 * r["itl_p50"]:.0f} p99 '
                f'{1e3 * r["itl_p99"]:.0f} ms errors {len(r["errors"])}', flush=True)
    prefix = {}
    for name in names:
      prefix[name] = prefix_run(servers[name].port, servers[name].model, 5)
      print(f'{name}: prefix reuse ttft {prefix[name]}', flush=True)
  finally:
    for s in servers.values():
      s.stop()
  if not args.prefix_only:
    report(args, levels, runs, names, {n: s.ready_s for n, s in servers.items()}, Path(gguf_path))
  report_prefix(args, prefix, Path(gguf_path))
  return 0


def report(args, levels, runs, names, ready, gguf_path) -> None:
  def med(name, clients, key):
    xs = [r[key] for r in runs[(name, clients)]]
    return float(np.median(xs)), min(xs), max(xs)

  lines = [f'# gemma4 serve vs llama.cpp server: {gguf_path.name}, streamed greedy /v1/completions, '
           f'max_tokens {args.max_tokens}',
           f'Machine: {machine()}. {versions(args.llama_python)}.',
           f'Method: bench/serve_load.py; both servers up at once on 127.0.0.1 (one busy at a '
           f'time), {args.rounds} rounds, engines alternating; per run 2 x clients requests '
           f'(64 at 64 clients); median over rounds (min-max). gemma4 serve --slots {args.slots} '
           f'--cache-length {args.cache_length}; llama-cpp-python server --n_threads 2 --n_ctx 4096 '
           f'--interrupt_requests False. Ready (load + warm-up): '
           + ', '.join(f'{n} {t:.0f} s' for n, t in ready.items()) + '.', '',
           '| engine | clients | tok/s | x one client | TTFT p50 s | TTFT p99 s | ITL p50 ms | '
           'ITL p99 ms | requests | errors |', '|---|---|---|---|---|---|---|---|---|---|']
  for name in names:
    one = med(name, levels[0], 'tok_s')[0]
    for c in levels:
      t = med(name, c, 'tok_s')
      f = lambda k, scale=1: '%.*f' % (0 if scale > 1 else 2, scale * med(name, c, k)[0])
      rs = runs[(name, c)]
      lines.append(f'| {name} | {c} | {t[0]:.1f} ({t[1]:.1f}-{t[2]:.1f}) | {t[0] / one:.2f} | '
                   f'{f("ttft_p50")} | {f("ttft_p99")} | {f("itl_p50", 1e3)} | '
                   f'{f("itl_p99", 1e3)} | {sum(r["requests"] for r in rs)} | '
                   f'{sum(len(r["errors"]) for r in rs)} |')
  lines += ['', '| clients | gemma4 / llama.cpp tok/s | TTFT p50 ratio (gemma4 / llama.cpp) |',
            '|---|---|---|']
  for c in levels:
    a, b = med(names[0], c, 'tok_s')[0], med(names[1], c, 'tok_s')[0]
    ta, tb = med(names[0], c, 'ttft_p50')[0], med(names[1], c, 'ttft_p50')[0]
    lines.append(f'| {c} | {a / b:.2f} | {ta / tb:.2f} |')
  errors = sorted({e for rs in runs.values() for r in rs for e in r['errors']})
  if errors:
    lines += ['', 'Errors seen: ' + '; '.join(errors[:5])]
  text = '\n'.join(lines) + '\n'
  args.out.write_text(text)
  print(text)
  plot(levels, names, med, args.out.with_suffix('.png'))


def report_prefix(args, prefix, gguf_path) -> None:
  lines = [f'# Prefix reuse: gemma4 serve vs llama.cpp server, {gguf_path.name}',
           f'Machine: {machine()}. {versions(args.llama_python)}.',
           'Method: bench/serve_load.py (prefix_run); one client, streamed /v1/completions, '
           'max_tokens 1; 5 trials, each a ~388-token prompt whose first ~380 tokens are new '
           'to the server (cold), then the same text with another last line (warm: the '
           'request before held it). Medians of time to first token. gemma4 serve --slots '
           f'{args.slots} --cache-length {args.cache_length}; llama-cpp-python keeps the last '
           'prompt\'s KV and reuses its common prefix.', '',
           '| engine | cold s | warm s | cold / warm |', '|---|---|---|---|']
  for name, p in prefix.items():
    lines.append(f'| {name} | {p["cold"]:.3f} | {p["warm"]:.3f} | {p["cold"] / p["warm"]:.1f} |')
  text = '\n'.join(lines) + '\n'
  args.prefix_out.write_text(text)
  print(text)


def plot(levels, names, med, path: Path) -> None:
  """Two panels of grouped bars per client count: throughput (tok/s, min-max whiskers)
  and TTFT p50 (seconds), one colour per engine (PIL: no plotting dependency)."""
  from PIL import Image, ImageDraw
  colours = [(31, 119, 180), (160, 160, 160)]
  panel_w, h, top, bottom, left = 560, 420, 60, 60, 60
  img = Image.new('RGB', (2 * panel_w, h), 'white')
  d = ImageDraw.Draw(img)
  d.text((10, 8), 'Gemma 3 270M GGUF, streamed greedy completions, this CPU (bench/serve_load.py)',
         fill='black')
  for k, name in enumerate(names):
    d.rectangle([10 + 160 * k, 26, 24 + 160 * k, 38], fill=colours[k])
    d.text((30 + 160 * k, 26), name, fill='black')
  panels = [('tokens/s over all requests (median, min-max)', 'tok_s', '%.1f'),
            ('time to first token p50, s', 'ttft_p50', '%.2f')]
  for p, (title, key, fmt) in enumerate(panels):
    x0 = p * panel_w + left
    d.text((x0, top - 14), title, fill='black')
    vals = {(n, c): med(n, c, key) for n in names for c in levels}
    vmax = max(v[2] for v in vals.values()) or 1
    plot_h = h - top - bottom
    base = top + plot_h
    d.line([x0, base, x0 + panel_w - left - 20, base], fill='black')
    group = (panel_w - left - 20) / len(levels)
    bar = group / (len(names) + 1)
    for gi, c in enumerate(levels):
      gx = x0 + gi * group
      d.text((gx + group / 2 - 20, base + 8), f'{c} clients', fill='black')
      for k, name in enumerate(names):
        m, lo, hi = vals[(name, c)]
        bx = gx + bar * (k + 0.5)
        y = base - plot_h * m / vmax
        d.rectangle([bx, y, bx + bar - 4, base], fill=colours[k])
        if key == 'tok_s':
          cx = bx + (bar - 4) / 2
          d.line([cx, base - plot_h * lo / vmax, cx, base - plot_h * hi / vmax], fill='black')
        d.text((bx, y - 12), fmt % m, fill='black')
  img.save(path)


if __name__ == '__main__':
  sys.exit(main())
