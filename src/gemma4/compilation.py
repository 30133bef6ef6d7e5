"""How gemma4's programs get compiled: the options the sampler's programs are compiled
with (`OPTIONS`, `jit`), a persistent compilation cache on disk, so that a second process
reads the sampler's programs instead of compiling them again, and a meter of the seconds
this process has spent compiling (so timings can leave them out).

The cache is JAX's own (`jax_compilation_cache_dir`): its keys hold the program, the
compile options, the XLA flags, the jax/jaxlib versions and the backend. The directory
adds what those keys leave out on a CPU: the processor (its model and feature flags), so
a home directory shared between different machines never serves one machine code built
for another.

`import gemma4` turns the cache on unless JAX already has a cache directory (set by the
user through `jax.config` or `JAX_COMPILATION_CACHE_DIR`) or `GEMMA4_COMPILE_CACHE` says
otherwise: a directory to use, or `off`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import threading
import warnings
from pathlib import Path

import jax

from gemma4 import quant

# The options the sampler's and the server's programs are compiled with: XLA debug
# options, so `jit` takes them on every backend; only XLA CPU reads them.
# - 512-bit vectors in the loops XLA CPU writes itself (its default prefers 256 on
#   processors with AVX-512). Those loops are decode's one-row products, which read int8
#   weights and convert them in registers: on a 2-core Xeon with AVX-512 the 262144 x 640
#   LM head takes 10.2 ms instead of 14.3, and the 270M's int8 decode runs at 1.39-1.47x;
#   its first call compiles 1.6 s longer, 7.7 s instead of 6.1 (bench/vector_width.txt).
#   A processor without AVX-512 ignores it.
INT8_OPTIONS = {'xla_cpu_prefer_vector_width': '512'}
# - For programs without int8 weights, also XLA CPU's matrix library for products whose
#   operands are converted first, as before int8 products changed: bfloat16 weights, 8
#   rows: 5.4 ms instead of 28.6 for a 12288 x 1536 weight, though 128 rows take 1.9-2.1x
#   longer with it (bench/quant_split.txt). It makes the int8 x int8 products of int8
#   weights (quant.dot, two or more rows) 7-44x slower, so those programs go without.
FLOAT_OPTIONS = {**INT8_OPTIONS,
                 'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT'}


def options(args) -> dict:
  """The options for a program called with `args` (any tree): INT8_OPTIONS where it
  holds an int8 weight (a quant.QTensor), else FLOAT_OPTIONS."""
  leaves = jax.tree.leaves(args, is_leaf=quant.is_quantized)
  return INT8_OPTIONS if any(quant.is_quantized(x) for x in leaves) else FLOAT_OPTIONS


def jit(fn=None, **kwargs):
  """jax.jit(fn, **kwargs), compiled with `options(the arguments)`: two jitted
  functions, one per option set, each with its own cache; the call picks one."""
  if fn is None:
    return functools.partial(jit, **kwargs)
  by_options = {id(o): jax.jit(fn, compiler_options=o, **kwargs)
                for o in (INT8_OPTIONS, FLOAT_OPTIONS)}

  @functools.wraps(fn)
  def call(*args, **kw):
    return by_options[id(options((args, kw)))](*args, **kw)
  return call


def part(fn=None, **kwargs):
  """A function jitted as a part of bigger programs: called with traced arguments (from
  a jitted caller) it is a nested jit, inlined into the caller's program, which brings
  the options; called with arrays it is a program of its own, compiled with `options`.
  kwargs: jax.jit's (static_argnames, donate_argnames...); donation only applies to
  the program of its own."""
  if fn is None:
    return functools.partial(part, **kwargs)
  nested = jax.jit(fn, **{k: v for k, v in kwargs.items() if not k.startswith('donate')})
  alone = jit(fn, **kwargs)

  @functools.wraps(fn)
  def call(*args, **kw):
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kw)))
    return (nested if traced else alone)(*args, **kw)
  return call


ENV = 'GEMMA4_COMPILE_CACHE'
# Programs that compile faster than this are not written (one-op programs of eager
# array code, which compile as fast as they read). The sampler's small programs (its
# finish step) are written too, so that a second process compiles nothing on its way to
# the first token (bench/compile_cache.txt).
MIN_COMPILE_SECONDS = 0.01

# JAX's duration events for the three stages of making a program (a cache hit is timed
# within the backend stage).
_COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                   '/jax/core/compile/jaxpr_to_mlir_module_duration',
                   '/jax/core/compile/backend_compile_duration')
_lock = threading.Lock()
_seconds = 0.0


def _on_event(event: str, duration: float, **_) -> None:
  global _seconds
  if event in _COMPILE_EVENTS:
    with _lock:
      _seconds += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


def compile_seconds() -> float:
  """Seconds this process has spent tracing, lowering and compiling programs (or
  reading them from the cache) since gemma4 was imported."""
  with _lock:
    return _seconds


def _processor() -> str:
  """The processor's model and feature flags, as Linux reports them (else what the
  platform module knows)."""
  try:
    with open('/proc/cpuinfo') as f:
      lines = f.read().splitlines()
  except OSError:
    lines = []
  fields = {}
  for line in lines:
    key, _, value = line.partition(':')
    fields.setdefault(key.strip(), value.strip())
  keep = [fields.get(k, '') for k in ('vendor_id', 'model name', 'flags', 'Features')]
  return '\n'.join([platform.machine(), platform.processor(), *keep])


def default_cache_dir() -> Path:
  """~/.cache/gemma4/xla/<jax version>-<processor hash> (XDG_CACHE_HOME respected)."""
  base = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache')
  tag = hashlib.sha256(_processor().encode()).hexdigest()[:16]
  return base / 'gemma4' / 'xla' / f'jax{jax.__version__}-{tag}'


def enable_cache(path: str | os.PathLike | None = None) -> Path | None:
  """Turns JAX's persistent compilation cache on at `path`, or where GEMMA4_COMPILE_CACHE
  says, or at `default_cache_dir()`; returns the directory, or None when the variable
  is `off`. A cache directory JAX already has is kept and returned.

  Takes effect for programs compiled after it only if nothing was compiled before it in
  this process (JAX decides once whether to use a cache), which is why `import gemma4`
  calls it.
  """
  current = jax.config.jax_compilation_cache_dir
  if path is None and current:
    return Path(current)
  setting = os.environ.get(ENV, '').strip()
  if path is None and setting.lower() in ('off', '0', 'false', 'no'):
    return None
  where = Path(path or setting or default_cache_dir()).expanduser()
  try:
    where.mkdir(parents=True, exist_ok=True)
  except OSError as e:  # compile as if there were no cache
    if path is not None or setting:  # a place the user asked for: say why it is not used
      warnings.warn(f'{ENV}={where}: cannot make the compilation cache there ({e}); '
                    f'compiling without a cache', stacklevel=2)
    return None
  jax.config.update('jax_compilation_cache_dir', str(where))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECONDS)
  return where
