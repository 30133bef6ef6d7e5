"""Loading never holds two copies of the weights: the peak RSS of a fresh process while
it loads the default model (Gemma 3 270M GGUF) as float32 is at most 1.3 times the loaded
parameter bytes above the process's baseline (measured after importing and starting JAX);
loaded as int8 (the default on CPU), it is at most 1.3 times the int8 bytes plus the
64 MiB row blocks and the one float tensor a load holds at a time."""

import json
import subprocess
import sys

import pytest

_CHILD = r'''
import json
def status(key):
  for line in open('/proc/self/status'):
    if line.startswith(key):
      return int(line.split()[1]) * 1024
import sys
import jax, jax.numpy as jnp
import gemma4
jnp.zeros(1).block_until_ready()
path = gemma4.default_checkpoint_path()
base = status('VmRSS:')
ckpt = gemma4.load_default(progress=False, quantize=None if sys.argv[1] == 'none' else 'int8')
params = sum(x.nbytes for x in jax.tree.leaves(ckpt.params))
print(json.dumps({'base': base, 'peak': status('VmHWM:'), 'params': params}))
'''


def _load(quantize):
  out = subprocess.run([sys.executable, '-c', _CHILD, quantize], capture_output=True,
                       text=True, check=True, timeout=600)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_rss_during_float32_load_is_at_most_1_3x_param_bytes():
  r = _load('none')
  assert r['params'] > 1e9  # 268 M float32 parameters
  ratio = (r['peak'] - r['base']) / r['params']
  assert ratio <= 1.3, f'peak {ratio:.2f}x the parameter bytes above baseline'


@pytest.mark.slow
def test_peak_rss_during_int8_load_is_at_most_1_3x_int8_bytes_plus_one_float_tensor():
  r = _load('int8')
  assert 2.6e8 < r['params'] < 2.8e8  # 268 M int8 values and their float32 scales
  one_float = 4 * 2048 * 640 * 2 + (64 << 20)  # the biggest projection; a 16 MiB row block's temporaries
  ratio = (r['peak'] - r['base'] - one_float) / r['params']
  assert ratio <= 1.3, f'peak {ratio:.2f}x the int8 bytes above baseline and one tensor'
