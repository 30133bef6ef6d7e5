"""load_checkpoint(mesh=) on 8 simulated devices: every parameter of a HF directory, a
GGUF file and an Orbax checkpoint lands in the shards the rules give, with the values
of the one-device load (exact), float and int8."""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import gemma4
from gemma4 import quant, sharding
from gemma4.params import flatten
from tests import readme_util


def _checkpoint(kind, tmp_path):
  if kind == 'hf':
    readme_util.write_hf_dir(tmp_path / 'hf')
    return tmp_path / 'hf', None
  if kind == 'gguf':
    readme_util.write_gguf(tmp_path / 'm.gguf')
    return tmp_path / 'm.gguf', None
  model = gemma4.models.tiny('e4b')
  params = jax.tree.map(np.asarray, model.init(5))
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(os.path.abspath(tmp_path / 'orbax'), params)
  ckpt.wait_until_finished()
  return tmp_path / 'orbax', model


def _leaves(tree):
  return flatten(tree)


@pytest.mark.parametrize('kind', ['hf', 'gguf', 'orbax'])
@pytest.mark.parametrize('quantize', [None, 'int8'])
def test_a_sharded_load_equals_the_one_device_load_placed_by_the_rules(kind, quantize, tmp_path):
  path, model = _checkpoint(kind, tmp_path)
  mesh = sharding.make_mesh(data=2, tensor=4)
  whole = gemma4.load_checkpoint(path, model, quantize=quantize)
  split = gemma4.load_checkpoint(path, model, quantize=quantize, mesh=mesh)
  want = sharding.plan(whole.model.param_specs(), whole.params, mesh).shardings
  a, b, w = _leaves(whole.params), _leaves(split.params), _leaves(want)
  assert a.keys() == b.keys()
  split_somewhere = False
  for k in a:
    for x, y, s in zip(jax.tree.leaves(a[k]), jax.tree.leaves(b[k]), jax.tree.leaves(w[k])):
      assert y.sharding == s, k
      assert y.dtype == x.dtype and np.array_equal(np.asarray(x), np.asarray(y)), k
      split_somewhere |= y.addressable_shards[0].data.shape != y.shape
  assert split_somewhere
