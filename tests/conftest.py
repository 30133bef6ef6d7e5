"""Test-wide settings: a persistent XLA compilation cache outside the repository, so
repeated runs on one machine (CI included) skip recompiling the same programs."""

import os

import jax

# One folder per jax version: the default and oracle environments run different jax
# releases, and an executable cached by one must never be read by the other.
jax.config.update('jax_compilation_cache_dir', os.path.join(os.environ.get(
    'GEMMA4_JAX_CACHE', os.path.expanduser('~/.cache/gemma4/jax-compilation-cache')),
    f'jax-{jax.__version__}'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
