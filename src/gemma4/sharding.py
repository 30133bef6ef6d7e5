"""Sharding on a JAX mesh: logical axis names, one rules table, and the placements they give.

Every decoder parameter declares the logical name of each of its axes (`ParamSpec.axes`
in gemma4.params); the KV cache's buffers are named here (`cache_axes`). One table, the
rules, maps logical names to the axes of a `jax.sharding.Mesh`; from it come the
`NamedSharding` of every parameter and cache buffer, and XLA's partitioner (GSPMD)
splits the computation to match. Nothing in the model code knows about devices.

The default rules (`DEFAULT_RULES`) on a mesh with axes ('data', 'expert', 'tensor'):
- tensor parallelism: query heads, KV heads, MLP hidden units and the vocabulary (the
  embedding table, which is also the tied LM head) split over 'tensor';
- expert parallelism: the MoE experts split over 'expert';
- data parallelism: the rows of a batch (tokens, cache, outputs) split over 'data';
- the model width ('embed'), head width and cache positions are never split.
An axis whose size the mesh axis does not divide is kept whole on every device
(replicated) rather than padded: a single KV head on a 4-way 'tensor' axis is copied
to the 4 devices. `plan` reports each such choice. Encoders (vision, audio) are small
and replicated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec

from gemma4 import quant
from gemma4.params import ParamSpec, flatten, unflatten

MESH_AXES = ('data', 'expert', 'tensor')
LOGICAL_AXES = ('batch', 'sequence', 'embed', 'heads', 'kv_heads', 'head_dim', 'mlp',
                'experts', 'vocab')
DEFAULT_RULES: Mapping[str, str | None] = {
    'batch': 'data', 'heads': 'tensor', 'kv_heads': 'tensor', 'mlp': 'tensor',
    'vocab': 'tensor', 'experts': 'expert', 'embed': None, 'head_dim': None,
    'sequence': None}

# The cache buffers' axes: k [B, S, K, H], v [B, K, H, S] (slots last), pos [B, S].
CACHE_K_AXES = ('batch', 'sequence', 'kv_heads', 'head_dim')
CACHE_V_AXES = ('batch', 'kv_heads', 'head_dim', 'sequence')
CACHE_POS_AXES = ('batch', 'sequence')


def make_mesh(*, tensor: int = 1, data: int = 1, expert: int = 1, devices=None) -> Mesh:
  """A mesh with axes ('data', 'expert', 'tensor') of the given sizes over `devices`
  (default: all of `jax.devices()`, whose number must equal data * expert * tensor)."""
  sizes = {'data': data, 'expert': expert, 'tensor': tensor}
  for name, n in sizes.items():
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
      raise ValueError(f'make_mesh: {name} must be an int >= 1, got {n!r}')
  devices = list(jax.devices() if devices is None else devices)
  need = data * expert * tensor
  if len(devices) != need:
    raise ValueError(f'make_mesh: data={data} x expert={expert} x tensor={tensor} needs '
                     f'{need} devices, but {len(devices)} are given (jax.devices() has '
                     f'{jax.device_count()}; pass devices= or sizes whose product matches)')
  return Mesh(np.asarray(devices, dtype=object).reshape(data, expert, tensor), MESH_AXES)


def check_rules(rules: Mapping[str, Any] | None, mesh: Mesh) -> dict[str, str | None]:
  """The rules table in full: DEFAULT_RULES updated by `rules`, each logical name known
  and each target None or an axis of `mesh` (a ValueError naming the entry otherwise)."""
  if not isinstance(mesh, (Mesh, AbstractMesh)):
    raise TypeError(f'mesh must be a jax.sharding.Mesh (gemma4.sharding.make_mesh makes '
                    f'one) or an AbstractMesh (for planning), got {type(mesh).__name__}')
  if rules is not None and not isinstance(rules, Mapping):
    raise TypeError(f'sharding rules must be a mapping {{logical axis: mesh axis or None}}, '
                    f'got {type(rules).__name__}')
  table = dict(DEFAULT_RULES)
  for name, target in (rules or {}).items():
    if name not in LOGICAL_AXES:
      raise ValueError(f'sharding rules: unknown logical axis {name!r} (expected one of '
                       f'{", ".join(LOGICAL_AXES)})')
    if target is not None and target not in mesh.axis_names:
      raise ValueError(f'sharding rules: {name!r} -> {target!r}, but the mesh has axes '
                       f'{tuple(mesh.axis_names)} (or None to keep {name!r} whole)')
    table[name] = target
  for name, target in list(table.items()):
    if target is not None and target not in mesh.axis_names:
      table[name] = None  # a default rule for an axis this mesh lacks: kept whole
  return table


def partition(axes: tuple[str | None, ...] | None, shape: tuple[int, ...], mesh: Mesh,
              table: Mapping[str, str | None], what: str = 'array'
              ) -> tuple[PartitionSpec, list[str]]:
  """The PartitionSpec of an array with logical `axes` and `shape`, and the notes on
  axes kept whole because the mesh axis does not divide them. Two logical axes that
  map to one mesh axis are refused (a ValueError naming `what`)."""
  if axes is None:
    return PartitionSpec(), []
  if len(axes) != len(shape):
    raise ValueError(f'{what}: {len(axes)} logical axes {axes} for shape {shape}')
  out, notes, used = [], [], {}
  for name, size in zip(axes, shape):
    target = table.get(name) if name is not None else None
    if target is not None and mesh.shape[target] > 1 and size % mesh.shape[target]:
      notes.append(f'{what}: {name} ({size}) kept whole, {target!r} has {mesh.shape[target]} devices')
      target = None
    if target is not None and mesh.shape[target] == 1:
      target = None
    if target is not None:
      if target in used:
        raise ValueError(f'sharding rules map {used[target]!r} and {name!r} of {what} both to '
                         f'mesh axis {target!r}; an array can be split over a mesh axis once')
      used[target] = name
    out.append(target)
  while out and out[-1] is None:
    out.pop()
  return PartitionSpec(*out), notes


def _qtensor_specs(axes, q: quant.QTensor, mesh, table, path) -> tuple[Any, list[str]]:
  """The specs of an int8 weight's values [C, *out, Kc] and scale [*out]: the output axes
  as in the official weight; where the rules split the first contracted axis, each
  chunk's Kc columns split over that mesh axis (every device then holds a slice of
  every chunk and the product's partial sums are added across devices)."""
  perm, n_out = q.layout.perm, q.layout.n_out
  out_axes = tuple(axes[a] for a in perm[:n_out])
  out_spec, notes = partition(out_axes, q.out_shape, mesh, table, path)
  out_spec = tuple(out_spec) + (None,) * (n_out - len(out_spec))
  c, kc = q.values.shape[0], q.values.shape[-1]
  first = axes[perm[n_out]]
  k_target = table.get(first) if first is not None else None
  if k_target is not None and (mesh.shape[k_target] == 1 or k_target in out_spec):
    k_target = None
  if k_target is not None and (kc % mesh.shape[k_target] or q.shape[perm[n_out]] % mesh.shape[k_target]):
    notes.append(f'{path}: int8 contracted axis {first} kept whole ({c} chunks of {kc}, '
                 f'{k_target!r} has {mesh.shape[k_target]} devices)')
    k_target = None
  values = PartitionSpec(None, *out_spec, k_target)
  return (quant.QTensor(NamedSharding(mesh, values), NamedSharding(mesh, PartitionSpec(*out_spec)),
                        q.shape, q.layout), notes)


@dataclasses.dataclass(frozen=True)
class Plan:
  """Where each parameter goes: `shardings` (a tree like the parameters, of
  NamedShardings; QTensors of NamedShardings for int8 weights) and `notes`, one line
  per axis the rules would split but that stays whole."""

  shardings: Any
  notes: tuple[str, ...]


def plan(specs: Mapping[str, Any], params: Mapping[str, Any], mesh: Mesh,
         rules: Mapping[str, Any] | None = None) -> Plan:
  """The placement of `params` (arrays, ShapeDtypeStructs or QTensors) whose model has
  parameter specs `specs` (`Model.param_specs()`)."""
  table = check_rules(rules, mesh)
  flat_specs = flatten(specs)
  out, notes = {}, []
  for path, leaf in flatten(params).items():
    spec: ParamSpec | None = flat_specs.get(path)
    if spec is None:
      raise ValueError(f'parameter {path!r} is not in the model (check the tree first)')
    out[path], n = leaf_sharding(path, spec, leaf, mesh, table)
    notes += n
  return Plan(unflatten(out), tuple(notes))


def leaf_sharding(path: str, spec: ParamSpec, leaf, mesh, table) -> tuple[Any, list[str]]:
  """The placement of one parameter (`leaf`: an array, ShapeDtypeStruct or QTensor of
  either) whose spec is `spec`, and the notes on its axes kept whole."""
  if quant.is_quantized(leaf):
    return _qtensor_specs(spec.axes or (None,) * len(spec.shape), leaf, mesh, table, path)
  p, notes = partition(spec.axes, tuple(spec.shape), mesh, table, path)
  return NamedSharding(mesh, p), notes


@dataclasses.dataclass(frozen=True)
class Sharder:
  """A mesh and its rules table (hashable: the decode loop takes it as a static part)."""

  mesh: Mesh
  rules: tuple[tuple[str, str | None], ...]

  @classmethod
  def of(cls, mesh: Mesh, rules: Mapping[str, Any] | None = None) -> 'Sharder':
    return cls(mesh, tuple(sorted(check_rules(rules, mesh).items())))

  @classmethod
  def checked(cls, mesh: Any, rules: Mapping[str, Any] | None = None) -> 'Sharder | None':
    """The Sharder of a user's `mesh=` and `sharding_rules=` arguments (None without a
    mesh), each checked: a Mesh of devices, rules only with a mesh."""
    if mesh is None:
      if rules is not None:
        raise ValueError('sharding_rules are given without a mesh: pass mesh= (e.g. '
                         'gemma4.sharding.make_mesh(tensor=8)) or leave sharding_rules None')
      return None
    if not isinstance(mesh, Mesh):
      raise TypeError(f'mesh must be a jax.sharding.Mesh of devices (gemma4.sharding.'
                      f'make_mesh makes one), got {type(mesh).__name__}')
    return cls.of(mesh, rules)

  @property
  def table(self) -> dict[str, str | None]:
    return dict(self.rules)

  def plan(self, specs, params) -> Plan:
    return plan(specs, params, self.mesh, self.table)

  def leaf(self, path: str, spec: ParamSpec, leaf) -> Any:
    """The placement of one parameter (see `leaf_sharding`)."""
    return leaf_sharding(path, spec, leaf, self.mesh, self.table)[0]

  def put_params(self, specs, params) -> Any:
    """`params` placed on the mesh (a no-op for leaves already where the plan says)."""
    return jax.device_put(params, self.plan(specs, params).shardings)

  def spec(self, axes, shape) -> PartitionSpec:
    return partition(axes, tuple(shape), self.mesh, self.table)[0]

  def named(self, axes, shape) -> NamedSharding:
    return NamedSharding(self.mesh, self.spec(axes, shape))

  def cache_shardings(self, cache) -> Any:
    """The NamedSharding of each buffer of a KVCache (same tree)."""
    k = tuple(None if x is None else self.named(CACHE_K_AXES, x.shape) for x in cache.k)
    v = tuple(None if x is None else self.named(CACHE_V_AXES, x.shape) for x in cache.v)
    pos = {kind: self.named(CACHE_POS_AXES, x.shape) for kind, x in cache.pos.items()}
    return dataclasses.replace(cache, k=k, v=v, pos=pos,
                               next_pos=self.named(('batch',), cache.next_pos.shape))

  def put_cache(self, cache):
    return jax.device_put(cache, self.cache_shardings(cache))

  def constrain_cache(self, cache):
    """Inside a jitted program: the cache laid out as the rules say (so that a donated
    cache comes back where it went in)."""
    return jax.lax.with_sharding_constraint(cache, self.cache_shardings(cache))

  def batch(self, shape) -> NamedSharding:
    """Rows of a [B, ...] array split over the batch rule's axis (whole if it does not
    divide B)."""
    return self.named(('batch',) + (None,) * (len(shape) - 1), shape)


def to_host(x) -> np.ndarray:
  """A jax array's global value as NumPy, also when its shards lie on other processes'
  devices (a multi-process mesh: every process must call this, in the same order)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)
