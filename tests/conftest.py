"""Test-wide settings: a persistent XLA compilation cache outside the repository, so
repeated runs on one machine (CI included) skip recompiling the same programs."""

import gc
import os

import jax
import pytest

# The default environment keeps a persistent XLA cache, one folder per jax version,
# passed through GEMMA4_COMPILE_CACHE so that the gemma4 processes tests start use it
# too. The oracle environment (jax 0.12, GEMMA4_ORACLE=1) does not: full oracle runs in
# one process crashed inside XLA late in the run, twice in its compilation cache (an
# abort reading an entry, a segfault writing one) and once compiling, never with the
# file alone; it compiles afresh, one process per test file (scripts/run_oracle_tests.sh).
if os.environ.get('GEMMA4_ORACLE') == '1':
  os.environ['GEMMA4_COMPILE_CACHE'] = 'off'
else:
  os.environ['GEMMA4_COMPILE_CACHE'] = os.path.join(os.environ.get(
      'GEMMA4_JAX_CACHE', os.path.expanduser('~/.cache/gemma4/jax-compilation-cache')),
      f'jax-{jax.__version__}')
  jax.config.update('jax_compilation_cache_dir', os.environ['GEMMA4_COMPILE_CACHE'])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


@pytest.fixture(autouse=True, scope='module')
def _fresh_jax_per_module():
  """Drops jax's compiled programs after each test file (later files load theirs from
  the persistent cache). The default suite in one process crashed twice inside XLA's
  executable serialization (a cache read, then a cache write) late in the run, in
  test_sampler_golden, never with the file alone; with the programs of earlier files
  dropped, the next full run did not crash."""
  yield
  jax.clear_caches()
  gc.collect()


# tests/multidevice needs 8 simulated devices, a flag read when jax starts: it runs in a
# process of its own (tests/test_multidevice.py sets GEMMA4_MULTIDEVICE=1 and the flag).
collect_ignore = [] if os.environ.get('GEMMA4_MULTIDEVICE') == '1' else ['multidevice']
