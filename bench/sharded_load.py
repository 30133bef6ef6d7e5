"""Peak host memory of a sharded load: `load_checkpoint(mesh=)` in two processes that
share one mesh (jax.distributed on 127.0.0.1, 4 simulated CPU devices each, the mesh 8
wide on 'tensor') against one process loading the whole checkpoint.

The checkpoint: a HF safetensors directory (float32) of a Gemma 4 text model shaped so
that the rules split nearly every byte 8 ways (8 query and 8 KV heads, MLP 4096, the
262144-token vocabulary, width 1024, 6 layers: 1.6 GiB), random weights, written once
to a temporary directory. Each process reports its resident memory before the load and
its peak (VmHWM) after, in MiB, and the bytes of the shards its devices hold. On CPU the
"devices" are this host's memory, so a process's peak is what its devices hold plus
what the load holds on the way; on accelerators the devices' part moves off the host.

Method: `rounds` rounds, each a one-process load then a two-process load, fresh
processes each time; medians and spread (min-max). float32 (quantize=None) and int8.
Not a test: `.venv/bin/python bench/sharded_load.py [--rounds 3]`; kept in
bench/sharded_load.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import readme_util  # noqa: E402

# readme_util's tiny Gemma 4 widened until nearly every byte splits 8 ways.
CONFIG = dict(readme_util.HF_CONFIG, vocab_size=262144, vocab_size_per_layer_input=262144,
              hidden_size=1024, intermediate_size=4096, num_attention_heads=8,
              num_key_value_heads=8, head_dim=128, global_head_dim=256, sliding_window=512,
              num_kv_shared_layers=0, use_double_wide_mlp=False)

_WORKER = r'''
import json, sys
def status(key):
  for line in open('/proc/self/status'):
    if line.startswith(key):
      return int(line.split()[1]) / 1024
pid, n, port, path, fmt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
import jax
if n > 1:
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=n,
                             process_id=pid, initialization_timeout=120)
import gemma4
from gemma4 import sharding
mesh = sharding.make_mesh(tensor=jax.device_count()) if n > 1 else None
before = status('VmRSS:')
ckpt = gemma4.load_checkpoint(path, quantize=None if fmt == 'float32' else fmt, mesh=mesh,
                              progress=False)
leaves = jax.tree.leaves(ckpt.params)
held = sum(s.data.nbytes for x in leaves for s in x.addressable_shards)
total = sum(x.nbytes for x in leaves)
print(json.dumps({'before': before, 'peak': status('VmHWM:'), 'after': status('VmRSS:'),
                  'held_mib': held / 2**20, 'model_mib': total / 2**20}))
if n > 1:
  jax.distributed.shutdown()
'''


def free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run(n: int, path: str, fmt: str) -> list[dict]:
  env = dict(os.environ, PYTHONPATH=str(ROOT / 'src'),
             XLA_FLAGS=f'--xla_force_host_platform_device_count={4 if n > 1 else 1}')
  port = str(free_port())
  procs = [subprocess.Popen([sys.executable, '-c', _WORKER, str(i), str(n), port, path, fmt],
                            env=env, stdout=subprocess.PIPE, text=True) for i in range(n)]
  try:
    outs = [p.communicate(timeout=900)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  if any(p.returncode for p in procs):
    raise RuntimeError(f'a worker failed: {[p.returncode for p in procs]}')
  return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--rounds', type=int, default=3)
  args = ap.parse_args()
  import jax
  with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / 'hf'
    readme_util.write_hf_dir(path, config=CONFIG)
    size = (path / 'model.safetensors').stat().st_size / 2**20
    results = {}
    for fmt in ('float32', 'int8'):
      for _ in range(args.rounds):
        for n in (1, 2):  # alternate the engines
          for i, r in enumerate(run(n, str(path), fmt)):
            results.setdefault((fmt, n), []).append(r)
  print(f'# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, '
        f'jax {jax.__version__}; file {size:.0f} MiB (float32); {args.rounds} rounds, '
        'medians (min-max)')
  print('| weights | processes | model MiB | shards held per process MiB | '
        'peak RSS - RSS before the load, per process MiB | peak / held |')
  print('|---|---|---|---|---|---|')
  for (fmt, n), rs in results.items():
    added = [r['peak'] - r['before'] for r in rs]
    held = statistics.median(r['held_mib'] for r in rs)
    med = statistics.median(added)
    print(f'| {fmt} | {n} | {rs[0]["model_mib"]:.0f} | {held:.0f} | {med:.0f} '
          f'({min(added):.0f}-{max(added):.0f}) | {med / held:.2f} |')


if __name__ == '__main__':
  main()
