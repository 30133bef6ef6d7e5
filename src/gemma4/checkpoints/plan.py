"""Filling the official parameter tree from checkpoint tensors, one tensor at a time.

A loader (GGUF, HF safetensors) describes its file as `Piece`s: which file tensor goes
to which official parameter (or which slice of it, by leading index), the source shape it
must have, and the NumPy function that rearranges it. `fill` checks the whole plan
before reading a byte (every parameter covered exactly once, every file tensor used or
deliberately dropped, every shape right) and then streams the tensors to the device:
only one tensor (row blocks of it, for the big tables) is ever held on the host beside
the parameters already placed, and each parameter is built in a 64-byte aligned host
buffer that `jax.device_put` aliases on CPU, so a load never holds two copies.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gemma4 import quant
from gemma4.params import flatten, is_encoder, unflatten

# Tensors larger than this are placed on the device in row blocks of about this size.
_BLOCK_BYTES = 64 << 20


class CheckpointError(ValueError):
  """A checkpoint that does not fit the model: names every problem at once."""


_MAX_LISTED = 20  # problems listed in one error; the rest are counted


def damaged(file, kind: str, problems: list[str]) -> CheckpointError:
  """One CheckpointError for a truncated or corrupt `kind` file, naming it and its problems."""
  file = os.fspath(file)
  if len(problems) == 1:
    return CheckpointError(f'{file!r} is a damaged {kind} file: {problems[0]}')
  listed = problems[:_MAX_LISTED]
  if len(problems) > _MAX_LISTED:
    listed.append(f'... and {len(problems) - _MAX_LISTED} more')
  return CheckpointError(f'{file!r} is a damaged {kind} file ({len(problems)} problems):\n  '
                         + '\n  '.join(listed))


def extent_problem(name: str, begin: int, end: int, size: int) -> str | None:
  """What is wrong with tensor `name` lying at bytes [begin, end) of a file of `size`
  bytes, or None when it lies inside the file."""
  if begin > end:
    return f'corrupt: tensor {name} ends (byte {end}) before it begins (byte {begin})'
  if end > size:
    return f'truncated: tensor {name} needs bytes {begin}..{end}, the file has {size}'
  return None


MISSING = object()  # a config field or metadata key that is absent


def is_integer(v) -> bool:
  """An int (not a bool), or a float of integral value, as JSON and GGUF write counts."""
  return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float)
                                                             and v.is_integer())


def is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Piece:
  """One file tensor's place in the official tree.

  source: the tensor's name in the file; shape: the shape it must have there.
  target: the official parameter path ('layer_0/attn/q_einsum/w').
  index: leading indices of the target that this piece fills ((0,) for the gate half of
    `gating_einsum`), () for the whole parameter.
  fn: source array -> target slice (reshape, transpose, offset); identity by default.
  rows: fn maps row blocks of the source (axis 0) to the same row blocks of the target,
    so the tensor can be read and placed in blocks.
  """

  source: str
  shape: tuple[int, ...]
  target: str
  index: tuple[int, ...] = ()
  fn: Callable[[np.ndarray], np.ndarray] | None = None
  rows: bool = False


class Reader:
  """What a loader gives `fill`: tensor shapes, and rows of a tensor as float arrays."""

  def shapes(self) -> dict[str, tuple[int, ...]]:
    raise NotImplementedError

  def read(self, name: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
    """Rows [start, stop) along axis 0 (all when None) as a float32 or bfloat16 array."""
    raise NotImplementedError

  def release(self) -> None:
    """Lets go of file pages read so far (they would otherwise count as resident)."""


def check_plan(pieces: Iterable[Piece], file_shapes: Mapping[str, tuple[int, ...]],
               target_shapes: Mapping[str, tuple[int, ...]], dropped: Mapping[str, str],
               what: str, unused: Mapping[str, str] | None = None) -> None:
  """Raises one CheckpointError listing every tensor or parameter that does not fit.

  unused: parameters deliberately not read from the file (filled with a constant).
  """
  unused = unused or {}
  problems = []
  covered: dict[str, list[tuple[int, ...]]] = {}
  used = set()
  for p in pieces:
    if p.source in used:
      problems.append(f'{p.source}: mapped twice')
    used.add(p.source)
    if p.source not in file_shapes:
      problems.append(f'missing tensor {p.source} (for {p.target}): expected shape {p.shape}')
    elif tuple(file_shapes[p.source]) != tuple(p.shape):
      problems.append(f'wrong shape {p.source} (for {p.target}): got '
                      f'{tuple(file_shapes[p.source])}, expected {tuple(p.shape)}')
    if p.target not in target_shapes:
      problems.append(f'{p.source} maps to unknown parameter {p.target}')
    covered.setdefault(p.target, []).append(p.index)
  for target in unused:
    if target in covered:
      problems.append(f'parameter {target} is both filled from the file and left unused')
  for target, shape in target_shapes.items():
    got = covered.get(target, [])
    if target in unused or got == [()]:
      continue
    if not got:
      problems.append(f'parameter {target} {tuple(shape)} has no tensor in the {what}')
      continue
    depth = max(len(i) for i in got)
    count = np.zeros(tuple(shape[:depth]), np.int64)
    for index in got:
      count[index] += 1
    if () in got or not (count == 1).all():
      problems.append(f'parameter {target} {tuple(shape)} filled by slices {sorted(got)}, '
                      f'expected every slice of its first {depth} axes exactly once')
  left_over = sorted(set(file_shapes) - used - set(dropped))
  problems += [f'unused tensor {n} {tuple(file_shapes[n])}' for n in left_over]
  if problems:
    raise CheckpointError(f'the {what} does not fit the model ({len(problems)} problems):\n  '
                          + '\n  '.join(problems))


class Progress:
  """One line on stderr, rewritten in place on a terminal; silent when disabled."""

  def __init__(self, total_bytes: int, label: str, enabled: bool | None = None):
    self.total, self.done, self.label = total_bytes, 0, label
    self.tty = sys.stderr.isatty()
    self.enabled = self.tty if enabled is None else enabled
    self.t0 = self.last = time.perf_counter()

  def add(self, nbytes: int) -> None:
    self.done += nbytes
    now = time.perf_counter()
    if self.enabled and (now - self.last > 0.5 or self.done >= self.total):
      self.last = now
      end = '\r' if self.tty and self.done < self.total else '\n'
      if self.tty or self.done >= self.total:
        print(f'{self.label}: {self.done / 2**20:,.0f} / {self.total / 2**20:,.0f} MiB '
              f'({now - self.t0:.1f} s)', end=end, file=sys.stderr, flush=True)


def host_buffer(shape: tuple[int, ...], dtype) -> np.ndarray:
  """An uninitialised array aligned to 64 bytes: jax.device_put on CPU then aliases it
  instead of copying, so a parameter exists once, not twice, during a load."""
  dtype = np.dtype(dtype)
  n = int(np.prod(shape)) * dtype.itemsize
  raw = np.empty(n + 64, np.uint8)
  start = (-raw.ctypes.data) % 64
  return raw[start:start + n].view(dtype).reshape(shape)


def put(x: np.ndarray, sharding=None) -> jax.Array:
  """A host array on the default device (aliased on CPU), or, given a sharding, only
  the shards this process's devices hold (the rest of `x` is never read)."""
  if sharding is None:
    return jax.device_put(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def rows_needed(sharding, shape: tuple[int, ...], axis: int = 0) -> list[tuple[int, int]] | None:
  """The [start, stop) ranges along `axis` that this process's shards of an array of
  `shape` cover (merged), or None for all of them (no sharding, or a replica here)."""
  if sharding is None:
    return None
  spans = sorted({(s.indices(shape[axis])[0], s.indices(shape[axis])[1]) for s in
                  (index[axis] for index in sharding.addressable_devices_indices_map(shape).values())})
  merged: list[list[int]] = []
  for a, b in spans:
    if merged and a <= merged[-1][1]:
      merged[-1][1] = max(merged[-1][1], b)
    else:
      merged.append([a, b])
  if merged == [[0, shape[axis]]]:
    return None
  return [(a, b) for a, b in merged]


def _blocks(n: int, step: int, need: list[tuple[int, int]] | None):
  """Row blocks [start, stop) of at most `step` rows covering `need` (all n rows if None)."""
  for a, b in need or [(0, n)]:
    for start in range(a, b, step):
      yield start, min(start + step, b)


def _fill_rows(reader: Reader, piece: Piece, host: np.ndarray, need=None) -> None:
  """Reads a big tensor in row blocks of about _BLOCK_BYTES straight into `host` (only
  the rows in `need`, when given: the pages of the others are never touched)."""
  row_bytes = max(1, host[0].nbytes)
  step = max(1, _BLOCK_BYTES // row_bytes)
  for start, stop in _blocks(host.shape[0], step, need):
    host[start:stop] = _apply(piece, reader.read(piece.source, start, stop))
    reader.release()


def _quantized_rows(reader: Reader, piece: Piece, shape: tuple[int, ...],
                    layout: quant.Layout, sharding=None) -> quant.QTensor:
  """A big table whose row axis leads its layout, read and quantized row block by row
  block into int8: no float copy of the whole table is ever made. With `sharding` (a
  QTensor of shardings), only the rows this process's shards hold are read."""
  out, k = shape[:layout.n_out], int(np.prod(shape[layout.n_out:]))
  c = quant.chunks(k)
  values = host_buffer((c, *out, k // c), np.int8)
  scale = host_buffer(out, np.float32)
  need = None if sharding is None else rows_needed(sharding.scale, out)
  row_elems = max(1, int(np.prod(shape[1:])))
  step = max(1, _BLOCK_BYTES // 4 // (4 * row_elems))  # float temporaries: 16 MiB blocks
  for start, stop in _blocks(shape[0], step, need):
    block = _apply(piece, reader.read(piece.source, start, stop))
    v, sc = quant.quantize_rows(np.asarray(block).reshape(stop - start, *out[1:], k))
    values[:, start:stop] = quant.to_chunks(v)
    scale[start:stop] = sc
    del block, v
    reader.release()
  return quant.QTensor(put(values, sharding and sharding.values),
                       put(scale, sharding and sharding.scale), tuple(shape), layout)


def _apply(piece: Piece, x: np.ndarray) -> np.ndarray:
  return piece.fn(x) if piece.fn is not None else x


def fill(reader: Reader, pieces: list[Piece], target_shapes: Mapping[str, tuple[int, ...]],
         dtype, *, dropped: Mapping[str, str] | None = None,
         unused: Mapping[str, str] | None = None, what: str = 'checkpoint',
         progress: bool | None = None, quantize: str | None = None, sharder=None,
         specs: Mapping | None = None) -> dict:
  """The official parameter tree (nested dicts of jax arrays in `dtype`; encoder
  parameters in float32, as the official library keeps them) from `pieces`.
  quantize: 'int8' makes each decoder weight of `gemma4.quant` an int8 QTensor as it is
  read (big tables row block by row block), so the float weights never exist all at once.
  sharder: a gemma4.sharding.Sharder (with `specs`, the model's parameter specs): each
  parameter goes straight into its shards on the mesh, one tensor at a time on the
  host, and a table split along its rows (the vocabulary) is read only in the rows
  this process's devices hold.

  Checks the plan first (`check_plan`), then reads each tensor once, in file order.
  dropped: file tensors deliberately not used, with the reason.
  unused: parameters the model never reads and the file does not hold: 'zeros' or 'ones'.
  """
  file_shapes = reader.shapes()
  unused = unused or {}
  check_plan(pieces, file_shapes, target_shapes, dropped or {}, what, unused)
  by_target: dict[str, list[Piece]] = {}
  for p in pieces:
    by_target.setdefault(p.target, []).append(p)
  def dtype_of(target):
    return jnp.dtype(jnp.float32 if is_encoder(target) else dtype)
  total = sum(int(np.prod(target_shapes[t])) * dtype_of(t).itemsize for t in by_target)
  bar = Progress(total, f'loading {what}' + (f' as {quantize}' if quantize else ''), progress)  # counts what is read from the file
  flat_specs = flatten(specs) if sharder is not None else {}

  def placement(target, layout):
    """Where `target` goes on the mesh (a QTensor of shardings for int8), or None."""
    if sharder is None:
      return None
    shape = tuple(target_shapes[target])
    leaf = jax.ShapeDtypeStruct(shape, dtype_of(target))
    if layout is not None:
      leaf = quant.abstract(leaf, layout)
    return sharder.leaf(target, flat_specs[target], leaf)

  flat = {}
  for t, how in unused.items():
    value = (np.ones if how == 'ones' else np.zeros)(target_shapes[t], dtype_of(t))
    layout = quant.layout_for(t) if quantize else None
    where = placement(t, layout)
    if layout is not None:
      values, scale = quant.quantize_host(value, layout)
      flat[t] = quant.QTensor(put(values, where and where.values), put(scale, where and where.scale),
                              tuple(value.shape), layout)
    else:
      flat[t] = put(value, where)
  for target, group in by_target.items():
    shape = tuple(target_shapes[target])
    nbytes = int(np.prod(shape)) * dtype_of(target).itemsize
    layout = quant.layout_for(target) if quantize else None
    where = placement(target, layout)
    rows = len(group) == 1 and group[0].rows and nbytes > _BLOCK_BYTES
    if layout is not None and rows and layout.perm[0] == 0:
      flat[target] = _quantized_rows(reader, group[0], shape, layout, where)
      bar.add(nbytes)
      continue
    host = host_buffer(shape, dtype_of(target))
    if rows:
      _fill_rows(reader, group[0], host, None if layout is not None else rows_needed(where, shape))
    else:
      for p in group:
        value = _apply(p, reader.read(p.source))
        if value.shape != host[p.index].shape:  # a mapping bug, not a user error
          raise AssertionError(f'{p.source} -> {target}{list(p.index)}: {value.shape} '
                               f'!= {host[p.index].shape}')
        host[p.index] = value
        del value
      reader.release()
    if layout is not None:
      values, scale = quant.quantize_host(host, layout)
      flat[target] = quant.QTensor(put(values, where and where.values),
                                   put(scale, where and where.scale), shape, layout)
    else:
      flat[target] = put(host, where)
      flat[target].block_until_ready()
    del host
    bar.add(nbytes)
  gc.collect()
  return unflatten(flat)


# Rearrangements of a torch-layout weight ([out, in]) into the official layouts.
def heads_in(n: int, h: int, d: int):
  """[N*H, D] -> [N, D, H] (q/k/v projections)."""
  return lambda x: x.reshape(n, h, d).transpose(0, 2, 1)


def heads_out(n: int, h: int, d: int):
  """[D, N*H] -> [N, H, D] (the attention output projection)."""
  return lambda x: x.reshape(d, n, h).transpose(1, 2, 0)


def transpose(x: np.ndarray) -> np.ndarray:
  return x.T


def resolve_model(cfg, model, dtype, default_dtype, fallback_name: str, path,
                  text_only: bool = True):
  """The model a checkpoint whose config is `cfg` loads into: `model` after checking it
  is that config, else a new Model named after the matching preset (with the encoders
  when text_only is False); in `dtype` when one is asked for (else the model's, or
  `default_dtype` for a new one). A file that says nothing of the encoders fits a model
  whose decoder it is."""
  from gemma4 import models
  from gemma4.config import matching_preset
  if model is not None and cfg.vision is None and cfg.audio is None:
    cfg = dataclasses.replace(cfg, vision=model.config.vision, audio=model.config.audio)
  if model is not None and model.config != cfg:
    raise CheckpointError(f'{os.fspath(path)!r} holds a different model than {model.name}: '
                          + config_diff(model.config, cfg))
  if model is None:
    found = matching_preset(cfg)
    model = models.Model(cfg, dtype=default_dtype, text_only=text_only,
                         name=found[0] if found else fallback_name)
  if dtype is not None and jnp.dtype(dtype) != jnp.dtype(model.dtype):
    model = dataclasses.replace(model, dtype=dtype)
  return model


def config_diff(want, got) -> str:
  """'field is X in the file, Y in the model' for each differing config field."""
  fields = [f.name for f in dataclasses.fields(want) if getattr(want, f.name) != getattr(got, f.name)]
  return ', '.join(f'{k} is {getattr(got, k)!r} in the file, {getattr(want, k)!r} in the model'
                   for k in fields)


def target_shapes(specs: Mapping) -> dict[str, tuple[int, ...]]:
  """Flat 'a/b/c' -> shape of the official tree given by `param_specs`."""
  return {k: tuple(v.shape) for k, v in flatten(specs).items()}
