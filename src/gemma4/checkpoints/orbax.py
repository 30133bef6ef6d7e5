"""Official Orbax checkpoints: the parameter tree as the official library saves it.

Needs `orbax-checkpoint` (pip install 'gemma4[orbax]'). The caller names the model: an
Orbax directory records shapes but not the architecture. The official library writes
three layouts, all read here (gemma/gm/ckpts/_checkpoint.py): NESTED (the tree as is,
optionally under 'params'), FLAT ('transformer/layer_0/attn/q_einsum': {'w': ...}, the
dense MLP's {'w'} wrapper included) and STACKED ('transformer/stacked_layers/
attention_type_i/...' with a leading axis over the layers of pattern slot i). Leaves are
restored one at a time, so at most one leaf (one stacked leaf) exists beside the
parameters already placed.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np

from gemma4.checkpoints import plan
from gemma4.checkpoints.plan import CheckpointError, Piece

_STACKED = re.compile(r'^stacked_layers/attention_type_(\d+)/(.*)$')


def _ocp():
  try:
    import orbax.checkpoint as ocp
  except ImportError as e:
    raise ImportError("reading Orbax checkpoints needs orbax-checkpoint: "
                      "pip install 'gemma4[orbax]' (or pip install orbax-checkpoint)") from e
  return ocp


def _paths(tree, prefix=()):
  """(key tuple, leaf metadata) for every leaf of a nested metadata dict."""
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _paths(v, prefix + (k,))
  else:
    yield prefix, tree


def _nest(keys: tuple, value) -> dict:
  """{keys[0]: {keys[1]: ... value}}: a one-leaf tree for a partial restore."""
  for k in reversed(keys):
    value = {k: value}
  return value


class OrbaxLeaves(plan.Reader):
  """Leaves of an Orbax checkpoint, restored one at a time as NumPy arrays."""

  def __init__(self, path: str):
    self.ocp = _ocp()
    self.path = os.path.abspath(path)
    self.ckpt = self.ocp.PyTreeCheckpointer()
    try:
      meta = self.ckpt.metadata(self.path)
      tree = getattr(getattr(meta, 'item_metadata', meta), 'tree', None)
      if tree is None:
        tree = meta.tree
    except Exception as e:  # orbax raises many types for a bad directory
      raise ValueError(f'{path!r} is not a readable Orbax checkpoint ({type(e).__name__}: {e})') from e
    self.leaves = {keys: m for keys, m in _paths(dict(tree))}
    self._cache: tuple[tuple, np.ndarray] | None = None

  def leaf(self, keys: tuple) -> np.ndarray:
    if self._cache is not None and self._cache[0] == keys:
      return self._cache[1]
    item = _nest(keys, self.leaves[keys])
    args = _nest(keys, self.ocp.RestoreArgs(restore_type=np.ndarray))
    out = self.ckpt.restore(self.path, args=self.ocp.args.PyTreeRestore(
        item=item, restore_args=args, partial_restore=True))
    for k in keys:
      out = out[k]
    self._cache = (keys, out)
    return out

  def shape(self, keys: tuple) -> tuple[int, ...]:
    return tuple(self.leaves[keys].shape)


class _Mapped(plan.Reader):
  """The Reader `plan.fill` sees: official-path names, stacked slices resolved."""

  def __init__(self, leaves: OrbaxLeaves, sources: dict[str, tuple[tuple, int | None]]):
    self.leaves, self.sources = leaves, sources

  def shapes(self):
    out = {}
    for name, (keys, index) in self.sources.items():
      shape = self.leaves.shape(keys)
      out[name] = shape[1:] if index is not None else shape
    return out

  def read(self, name, start=None, stop=None):
    keys, index = self.sources[name]
    x = self.leaves.leaf(keys)
    if index is not None:
      x = x[index]
    if start is not None:
      x = x[start:stop]
    x = np.asarray(x)
    return x if x.dtype.kind == 'f' else x.astype(np.float32)

  def release(self):
    pass


def sources(leaves: OrbaxLeaves, targets: dict, pattern_len_hint: int | None = None
            ) -> tuple[dict[str, tuple[tuple, int | None]], list[str]]:
  """Official path -> (checkpoint leaf keys, stacked index or None); unmatched leaves."""
  found, unmatched = {}, []
  keys_by_path = {}
  for keys in leaves.leaves:
    path = '/'.join(str(k) for k in keys)
    for top in ('params/', 'transformer/'):
      if path.startswith(top):
        path = path[len(top):]
    keys_by_path[path] = keys
  stacked = {int(m.group(1)) for p in keys_by_path if (m := _STACKED.match(p))}
  period = max(stacked) + 1 if stacked else 0
  for path, keys in keys_by_path.items():
    m = _STACKED.match(path)
    if m:
      slot, rest = int(m.group(1)), m.group(2)
      for j in range(leaves.shape(keys)[0]):
        name = _match(f'layer_{j * period + slot}/{rest}', targets)
        if name is None:
          unmatched.append(f'{path}[{j}]')
        else:
          found[name] = (keys, j)
      continue
    name = _match(path, targets)
    if name is None:
      unmatched.append(path)
    else:
      found[name] = (keys, None)
  return found, unmatched


def _match(path: str, targets: dict) -> str | None:
  if path in targets:
    return path
  if path.endswith('/w') and path[:-2] in targets:  # FLAT layout's {'w'} on the dense MLP
    return path[:-2]
  return None


def load(path, model=None, dtype=None, progress: bool | None = None,
         quantize: str | None = None, sharder=None):
  """(model, params, None) from an official Orbax directory; `model` is required."""
  if model is None:
    raise ValueError(f'{os.fspath(path)!r} is an Orbax checkpoint, which does not record the '
                     'architecture: name it, e.g. load_checkpoint(path, gemma4.models.Gemma4_E2B())')
  leaves = OrbaxLeaves(os.fspath(path))
  targets = plan.target_shapes(model.param_specs())
  found, unmatched = sources(leaves, targets)
  encoders = [u for u in unmatched if u.split('/')[0] in ('vision_encoder', 'audio_encoder',
                                                           'SigLiPFromPatches_0')
              or u.startswith(('embedder/mm_', 'embedder/audio_'))]
  reader = _Mapped(leaves, found)
  pieces = [Piece(name, tuple(targets[name]), name, rows=True) for name in found]
  if encoders:
    print(f'gemma4: {path}: skipped {len(encoders)} encoder leaves that {model.name} does not '
          'hold (a text_only model)', file=sys.stderr)
  others = sorted(set(unmatched) - set(encoders))
  if others:
    raise CheckpointError(f'{os.fspath(path)!r} does not fit {model.name} '
                          f'({len(others)} leaves match no parameter):\n  ' + '\n  '.join(others))
  model = plan.resolve_model(model.config, model, dtype, model.dtype, model.name, path)
  params = plan.fill(reader, pieces, targets, model.dtype,
                        what=f'Orbax checkpoint {os.path.basename(os.path.abspath(path))}',
                        progress=progress, quantize=quantize,
                        sharder=sharder, specs=model.param_specs())
  return model, params, None
