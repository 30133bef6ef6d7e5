"""gemma4.compilation: the persistent compilation cache a second process reads, where it
lives, and the compile-time meter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

import gemma4
from gemma4 import compilation
from tests import tokenizer_util

ROOT = Path(__file__).resolve().parent.parent

# One process: gemma4 with the cache at GEMMA4_COMPILE_CACHE, every program written (no
# compile-time floor), a greedy and a streamed sample on a tiny model; prints the text,
# the cache's hit and miss counts and the seconds spent compiling.
_RUN = r'''
import json, sys
import jax
import gemma4
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
counts = {'/jax/compilation_cache/cache_hits': 0, '/jax/compilation_cache/cache_misses': 0}
def count(event, **_):
  if event in counts:
    counts[event] += 1
jax.monitoring.register_event_listener(count)
m = gemma4.models.tiny('gemma3_270m')
s = gemma4.Gemma4Sampler(model=m, params=m.init(0), tokenizer=gemma4.Gemma4Tokenizer(sys.argv[1]),
                         cache_length=64, max_out_length=8)
text = s.sample('Hello world', max_new_tokens=6)
streamed = ''.join(s.stream('Hello world', max_new_tokens=6))
print(json.dumps({'text': text, 'streamed': streamed, 'dir': jax.config.jax_compilation_cache_dir,
                  'hits': counts['/jax/compilation_cache/cache_hits'],
                  'misses': counts['/jax/compilation_cache/cache_misses'],
                  'compile_s': gemma4.compilation.compile_seconds()}))
'''


def _run(tmp_path, cache):
  tok = tokenizer_util.build(tmp_path / 't.model')
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_')}
  env.update(GEMMA4_COMPILE_CACHE=str(cache), JAX_PLATFORMS='cpu', PYTHONPATH=str(ROOT / 'src'))
  p = subprocess.run([sys.executable, '-c', _RUN, str(tok)], capture_output=True, text=True,
                     timeout=300, cwd=ROOT, env=env)
  assert p.returncode == 0, p.stderr[-3000:]
  return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_compiles_nothing_and_samples_the_same(tmp_path):
  """Process 1 compiles and writes every program; process 2, same cache, misses 0 times
  (each program it needs is read back) and gives the same greedy and streamed text."""
  cache = tmp_path / 'cache'
  first = _run(tmp_path, cache)
  second = _run(tmp_path, cache)
  assert first['dir'] == second['dir'] == str(cache)
  assert first['misses'] > 0 and len(list(cache.iterdir())) > 0
  assert second['misses'] == 0 and second['hits'] >= first['misses']
  assert second['text'] == first['text'] == first['streamed'] == second['streamed']


def test_cache_off_and_a_users_own_cache_dir_are_respected(tmp_path, monkeypatch):
  """GEMMA4_COMPILE_CACHE=off: no cache; a directory JAX already has is kept as it is;
  the default folder names the jax version and the processor; a folder that cannot be
  made is refused with a warning naming it."""
  before = jax.config.jax_compilation_cache_dir
  try:
    jax.config.update('jax_compilation_cache_dir', str(tmp_path / 'mine'))
    assert compilation.enable_cache() == tmp_path / 'mine'
    jax.config.update('jax_compilation_cache_dir', None)
    monkeypatch.setenv('GEMMA4_COMPILE_CACHE', 'off')
    assert compilation.enable_cache() is None and jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv('GEMMA4_COMPILE_CACHE', str(tmp_path / 'there'))
    assert compilation.enable_cache() == tmp_path / 'there'
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'there')
    jax.config.update('jax_compilation_cache_dir', None)
    (tmp_path / 'file').write_text('')
    monkeypatch.setenv('GEMMA4_COMPILE_CACHE', str(tmp_path / 'file' / 'sub'))
    with pytest.warns(UserWarning, match=r'GEMMA4_COMPILE_CACHE=.*file/sub: cannot make the '
                      r'compilation cache there'):
      assert compilation.enable_cache() is None
    assert jax.config.jax_compilation_cache_dir is None
  finally:
    jax.config.update('jax_compilation_cache_dir', before)
  default = compilation.default_cache_dir()
  assert default.parent.parts[-2:] == ('gemma4', 'xla')
  assert default.name.startswith(f'jax{jax.__version__}-') and len(default.name.split('-')[-1]) == 16


def test_compile_seconds_counts_compiling_not_running():
  """A new program adds its compile time; running it again adds nothing."""
  f = jax.jit(lambda x: (x * 3.0 + 1.0).sum())
  x = jax.numpy.arange(7.0)
  start = compilation.compile_seconds()
  f(x).block_until_ready()
  compiled = compilation.compile_seconds()
  assert compiled > start
  for _ in range(3):
    f(x).block_until_ready()
  assert compilation.compile_seconds() == compiled
