"""Tests that need several devices: run by tests/test_multidevice.py in a process of its
own with XLA_FLAGS=--xla_force_host_platform_device_count=8 (the flag must be set before
jax starts, so they cannot share the default suite's process)."""

import jax
import pytest


@pytest.fixture(autouse=True, scope='session')
def _eight_devices():
  if jax.device_count() != 8:
    pytest.fail(f'tests/multidevice needs 8 devices (XLA_FLAGS=--xla_force_host_platform_'
                f'device_count=8, as tests/test_multidevice.py sets), found {jax.device_count()}')
