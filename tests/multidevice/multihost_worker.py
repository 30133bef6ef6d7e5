"""One process of the two-process run in tests/test_multihost.py: joins the JAX
distributed runtime (coordinator on 127.0.0.1, CPU collectives over gloo), builds a
2x4 (data x tensor) mesh over both processes' 4 devices each, samples, loads a GGUF
file straight into a 1x8 mesh's shards and samples again, and writes what it got to a
JSON file. Usage: multihost_worker.py PROCESS_ID PORT OUT_JSON TOKENIZER GGUF."""

import json
import sys

import jax

jax.config.update('jax_cpu_collectives_implementation', 'gloo')
process_id, port, out_path, tokenizer_path, gguf_path = (int(sys.argv[1]), *sys.argv[2:6])
jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                           process_id=process_id, initialization_timeout=120)

import gemma4  # noqa: E402  (after the runtime is up, as jax asks)
from gemma4 import sharding  # noqa: E402
from gemma4.checkpoints import gguf, plan  # noqa: E402
from tests.multidevice import cases  # noqa: E402

tok = gemma4.Gemma4Tokenizer(tokenizer_path)
model = cases.wide('E2B')
params = model.init(3)  # the same seed on every process: the same weights
mesh = sharding.make_mesh(data=2, tensor=4)
s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, mesh=mesh, **cases.SETTINGS)
out = s.sample(cases.PROMPTS, max_new_tokens=8, return_state=True)
streamed = ''.join(s.stream(cases.PROMPTS[0], max_new_tokens=8))
chat = gemma4.ChatSampler(model=model, params=params, tokenizer=tok, multi_turn=True, mesh=mesh,
                          **cases.CHAT_SETTINGS)
replies = [str(chat.chat(t, max_new_tokens=6)) for t in cases.TURNS]

# A sharded load: a GGUF file onto a mesh 8 wide on 'tensor', across both processes.
# Row blocks of 4 KiB make the loader read its tables in row blocks, so the rows each
# process reads show: the vocabulary is split, each process reads only its half.
plan._BLOCK_BYTES = 4096
rows_read = {}
read = gguf.GGUFTensors.read


def spy(self, name, start=None, stop=None):
  rows_read.setdefault(name, []).append([start, stop])
  return read(self, name, start, stop)


gguf.GGUFTensors.read = spy
loaded = {}
for fmt in (None, 'int8'):
  rows_read.clear()
  ckpt = gemma4.load_checkpoint(gguf_path, quantize=fmt, mesh=sharding.make_mesh(tensor=8))
  g = gemma4.Gemma4Sampler(model=ckpt.model, params=ckpt.params, tokenizer=ckpt.tokenizer,
                           mesh=sharding.make_mesh(tensor=8), cache_length=64, max_out_length=8)
  loaded[str(fmt)] = {'rows': rows_read['token_embd.weight'],
                      'tokens': g.sample(cases.GGUF_PROMPTS, max_new_tokens=8,
                                         return_state=True).tokens.tolist()}
with open(out_path, 'w') as f:
  json.dump({'process_count': jax.process_count(), 'device_count': jax.device_count(),
             'local_device_count': jax.local_device_count(), 'tokens': out.tokens.tolist(),
             'text': out.text, 'streamed': streamed, 'replies': replies, 'loaded': loaded}, f)
jax.distributed.shutdown()
