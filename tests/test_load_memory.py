"""Loading never holds two copies of the weights: the peak RSS of a fresh process while
it loads the default model (Gemma 3 270M GGUF, float32) is at most 1.3 times the loaded
parameter bytes above the process's baseline (measured after importing and starting JAX)."""

import json
import subprocess
import sys

_CHILD = r'''
import json
def status(key):
  for line in open('/proc/self/status'):
    if line.startswith(key):
      return int(line.split()[1]) * 1024
import jax, jax.numpy as jnp
import gemma4
jnp.zeros(1).block_until_ready()
path = gemma4.default_checkpoint_path()
base = status('VmRSS:')
ckpt = gemma4.load_default(progress=False)
params = sum(x.nbytes for x in jax.tree.leaves(ckpt.params))
print(json.dumps({'base': base, 'peak': status('VmHWM:'), 'params': params}))
'''


def test_peak_rss_during_load_is_at_most_1_3x_param_bytes():
  out = subprocess.run([sys.executable, '-c', _CHILD], capture_output=True, text=True,
                       check=True, timeout=600)
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert r['params'] > 1e9  # 268 M float32 parameters
  ratio = (r['peak'] - r['base']) / r['params']
  assert ratio <= 1.3, f'peak {ratio:.2f}x the parameter bytes above baseline'
