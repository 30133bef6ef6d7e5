"""What XLA compiled during a call, from JAX's compile events (for tests that a call
compiles nothing new)."""

import jax


def programs_compiled(call) -> list[str]:
  """The programs XLA compiled (or read from the compilation cache) during call(), by
  name ('jit(loop)')."""
  names = []

  def on_event(event, duration, **kw):
    if event.endswith('/backend_compile_duration'):
      names.append(kw.get('fun_name'))
  jax.monitoring.register_event_duration_secs_listener(on_event)
  try:
    call()
  finally:
    jax.monitoring.unregister_event_duration_listener(on_event)
  return names
