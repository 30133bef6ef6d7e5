"""Timing helper shared by the micro-benchmarks in bench/ (not a benchmark itself)."""

import platform
import time

import jax
import numpy as np


def alternating_ms(calls: dict, rounds: int, n: int) -> dict[str, list[float]]:
  """{name: (f, args)} -> {name: [median ms of n warm calls, per round]}: every f warmed
  once, then the forms alternate round after round, so a slow spell hits all of them."""
  for f, args in calls.values():
    jax.block_until_ready(f(*args))
  per = {name: [] for name in calls}
  for _ in range(rounds):
    for name, (f, args) in calls.items():
      ts = []
      for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t)
      per[name].append(float(np.median(ts)) * 1e3)
  return per


def cpu_name() -> str:
  """The processor's model name as Linux reports it (else what the platform module says)."""
  try:
    with open('/proc/cpuinfo') as f:
      return next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()
