"""gemma4.sharding on this process's one device: the mesh, the rules table and the
placement of one array, with the errors bad input gets. (The sampler on 8 devices:
tests/multidevice, run by tests/test_multidevice.py.)"""

import jax
import pytest
from jax.sharding import PartitionSpec as P

import gemma4
from gemma4 import models, sharding
from tests import tokenizer_util


def test_make_mesh_names_its_axes_and_checks_the_device_count():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ('data', 'expert', 'tensor')
  assert dict(mesh.shape) == {'data': 1, 'expert': 1, 'tensor': 1}
  with pytest.raises(ValueError, match=r'data=1 x expert=1 x tensor=4 needs 4 devices, but '
                                       r'1 are given'):
    sharding.make_mesh(tensor=4)
  with pytest.raises(ValueError, match=r'make_mesh: data must be an int >= 1, got 0'):
    sharding.make_mesh(data=0)
  with pytest.raises(ValueError, match=r"make_mesh: tensor must be an int >= 1, got 2\.0"):
    sharding.make_mesh(tensor=2.0)


def test_check_rules_fills_in_the_defaults_and_names_a_bad_entry():
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  assert sharding.check_rules(None, mesh) == dict(sharding.DEFAULT_RULES)
  assert sharding.check_rules({'mlp': None}, mesh)['mlp'] is None
  with pytest.raises(ValueError, match=r"unknown logical axis 'hidden' \(expected one of batch, "):
    sharding.check_rules({'hidden': 'tensor'}, mesh)
  with pytest.raises(ValueError, match=r"'heads' -> 'model', but the mesh has axes "
                                       r"\('data', 'expert', 'tensor'\)"):
    sharding.check_rules({'heads': 'model'}, mesh)
  with pytest.raises(TypeError, match=r'mesh must be a jax.sharding.Mesh .* got str'):
    sharding.check_rules(None, 'tensor')
  with pytest.raises(TypeError, match=r'sharding rules must be a mapping .* got list'):
    sharding.check_rules([('heads', 'tensor')], mesh)


def test_partition_splits_divisible_axes_and_keeps_the_rest_whole():
  mesh = jax.sharding.AbstractMesh((2, 1, 4), ('data', 'expert', 'tensor'))
  table = sharding.check_rules(None, mesh)
  spec, notes = sharding.partition(('heads', 'embed', 'head_dim'), (8, 64, 16), mesh, table)
  assert spec == P('tensor') and notes == []
  spec, notes = sharding.partition(('kv_heads', 'embed', 'head_dim'), (2, 64, 16), mesh, table, 'k')
  assert spec == P() and notes == ["k: kv_heads (2) kept whole, 'tensor' has 4 devices"]
  spec, _ = sharding.partition(sharding.CACHE_K_AXES, (4, 8, 8, 16), mesh, table)
  assert spec == P('data', None, 'tensor')
  with pytest.raises(ValueError, match=r'w: 2 logical axes \(.*\) for shape \(8, 64, 16\)'):
    sharding.partition(('heads', 'embed'), (8, 64, 16), mesh, table, 'w')


def test_the_sampler_refuses_rules_without_a_mesh_and_a_mesh_without_devices(tmp_path):
  model = models.tiny('E2B')
  tok = gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path / 't.model'))
  kw = dict(model=model, params=model.init(0), tokenizer=tok, cache_length=64)
  with pytest.raises(ValueError, match=r'sharding_rules are given without a mesh: pass mesh='):
    gemma4.Gemma4Sampler(sharding_rules={'heads': None}, **kw)
  abstract = jax.sharding.AbstractMesh((1, 1, 1), ('data', 'expert', 'tensor'))
  with pytest.raises(TypeError, match=r'mesh must be a jax.sharding.Mesh of devices .* got AbstractMesh'):
    gemma4.Gemma4Sampler(mesh=abstract, **kw)
  with pytest.raises(ValueError, match=r"sharding rules: unknown logical axis 'head'"):
    gemma4.Gemma4Sampler(mesh=sharding.make_mesh(), sharding_rules={'head': 'tensor'}, **kw)
