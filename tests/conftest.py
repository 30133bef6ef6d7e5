"""Test-wide settings: a persistent XLA compilation cache outside the repository, so
repeated runs on one machine (CI included) skip recompiling the same programs."""

import os

import jax

# The default environment keeps a persistent XLA cache, one folder per jax version. The
# oracle environment (jax 0.12, GEMMA4_ORACLE=1) does not: full oracle runs in one
# process crashed inside XLA late in the run, twice in its compilation cache (an abort
# reading an entry, a segfault writing one) and once compiling, never with the file
# alone; it compiles afresh, one process per test file (scripts/run_oracle_tests.sh).
if os.environ.get('GEMMA4_ORACLE') != '1':
  jax.config.update('jax_compilation_cache_dir', os.path.join(os.environ.get(
      'GEMMA4_JAX_CACHE', os.path.expanduser('~/.cache/gemma4/jax-compilation-cache')),
      f'jax-{jax.__version__}'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
