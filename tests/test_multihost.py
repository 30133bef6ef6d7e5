"""Two processes on this machine join one JAX distributed runtime (coordinator on
127.0.0.1 at a free port, 4 simulated CPU devices each, gloo collectives) and sample
on one 2x4 mesh over all 8 devices: both processes get the same tokens, streamed text
and 3-turn chat replies, equal to a one-device run in this process. Then each loads a
GGUF file straight into the shards of a mesh 8 wide on 'tensor' (float and int8),
reading only its half of the vocabulary's rows, and samples the one-device tokens
(tests/multidevice/multihost_worker.py is the process)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gemma4
from tests import readme_util, tokenizer_util
from tests.multidevice import cases
from tests.serve_util import free_port

pytestmark = pytest.mark.slow  # runs with the oracle suite (scripts/run_oracle_tests.sh)

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / 'tests' / 'multidevice' / 'multihost_worker.py'


def one_device_gguf(path):
  out = {}
  for fmt in (None, 'int8'):
    ckpt = gemma4.load_checkpoint(path, quantize=fmt)
    g = gemma4.Gemma4Sampler(model=ckpt.model, params=ckpt.params, tokenizer=ckpt.tokenizer,
                             cache_length=64, max_out_length=8)
    out[str(fmt)] = g.sample(cases.GGUF_PROMPTS, max_new_tokens=8, return_state=True).tokens.tolist()
  return out


def one_device(tok_path):
  tok = gemma4.Gemma4Tokenizer(tok_path)
  model = cases.wide('E2B')
  params = model.init(3)
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, **cases.SETTINGS)
  out = s.sample(cases.PROMPTS, max_new_tokens=8, return_state=True)
  chat = gemma4.ChatSampler(model=model, params=params, tokenizer=tok, multi_turn=True,
                            **cases.CHAT_SETTINGS)
  return {'tokens': out.tokens.tolist(), 'text': out.text,
          'streamed': ''.join(s.stream(cases.PROMPTS[0], max_new_tokens=8)),
          'replies': [str(chat.chat(t, max_new_tokens=6)) for t in cases.TURNS]}


def test_two_processes_on_one_mesh_sample_what_one_device_samples(tmp_path):
  tok_path = tokenizer_util.build(tmp_path / 't.model')
  gguf_path = tmp_path / 'm.gguf'
  readme_util.write_gguf(gguf_path)
  port = free_port()
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / 'src'), str(ROOT)]),
             XLA_FLAGS='--xla_force_host_platform_device_count=4')
  procs, logs = [], []
  for i in range(2):
    logs.append(open(tmp_path / f'worker{i}.log', 'w'))
    procs.append(subprocess.Popen(
        [sys.executable, str(WORKER), str(i), str(port), str(tmp_path / f'out{i}.json'),
         str(tok_path), str(gguf_path)], cwd=ROOT, env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
  try:
    want = one_device(tok_path)  # while the workers start up
    want_gguf = one_device_gguf(gguf_path)
    codes = [p.wait(timeout=600) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for f in logs:
      f.close()
  tails = '\n'.join((tmp_path / f'worker{i}.log').read_text()[-3000:] for i in range(2))
  assert codes == [0, 0], tails
  got = [json.loads((tmp_path / f'out{i}.json').read_text()) for i in range(2)]
  vocab = readme_util.GGUF_VOCAB
  for i, g in enumerate(got):
    assert (g['process_count'], g['device_count'], g['local_device_count']) == (2, 8, 4)
    assert {k: g[k] for k in want} == want
    for fmt, tokens in want_gguf.items():
      assert g['loaded'][fmt]['tokens'] == tokens
      rows = g['loaded'][fmt]['rows']  # [start, stop) of each block read
      assert min(a for a, _ in rows) == i * vocab // 2 and max(b for _, b in rows) == (i + 1) * vocab // 2
      assert sum(b - a for a, b in rows) == vocab // 2  # each row once
