"""Runs tests/multidevice in a process of its own with 8 simulated CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=8 must be set before jax starts, so
those tests cannot share this process). Passes when every one of them passes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs with the oracle suite (scripts/run_oracle_tests.sh)

ROOT = Path(__file__).resolve().parents[1]


def test_the_multidevice_suite_passes_on_8_simulated_devices():
  env = dict(os.environ, GEMMA4_MULTIDEVICE='1', XLA_FLAGS=' '.join(
      [os.environ.get('XLA_FLAGS', ''), '--xla_force_host_platform_device_count=8']).strip())
  proc = subprocess.run(
      [sys.executable, '-m', 'pytest', '-q', 'tests/multidevice', '-p', 'no:cacheprovider'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
  assert ' passed' in proc.stdout and 'skipped' not in proc.stdout, proc.stdout[-2000:]
