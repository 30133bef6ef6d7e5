"""safetensors files, read directly: an 8-byte header length, a JSON header, raw
little-endian data. Every header and tensor extent is checked against the file before a
weight is read; the data is memory-mapped, so a tensor is read in row blocks and its
pages are dropped once placed.
"""

from __future__ import annotations

import json
import math
import mmap
import os

import ml_dtypes
import numpy as np

from gemma4.checkpoints import plan

_DTYPES = {'F32': np.float32, 'F16': np.float16, 'BF16': ml_dtypes.bfloat16,
           'F64': np.float64, 'I64': np.int64, 'I32': np.int32, 'U8': np.uint8,
           'BOOL': np.bool_}

_MAX_HEADER = 100_000_000  # the safetensors format's own bound on the JSON header


def _read_header(file: str) -> tuple[dict, int, int]:
  """The JSON header of a safetensors file, its length and the file's size; the declared
  length is checked against the file before anything is allocated."""
  size = os.path.getsize(file)
  fail = lambda problem: plan.damaged(file, 'safetensors', [problem])
  with open(file, 'rb') as f:
    head = f.read(8)
    if len(head) < 8:
      raise fail(f'too short for a safetensors file ({size} bytes, no 8-byte header length)')
    n = int.from_bytes(head, 'little')
    if n > _MAX_HEADER:
      raise fail(f'corrupt: the header length {n} is absurd (the format allows at most '
                 f'{_MAX_HEADER} bytes; the file has {size})')
    if 8 + n > size:
      raise fail(f'truncated: the header needs bytes 8..{8 + n}, the file has {size}')
    text = f.read(n)
  try:
    header = json.loads(text)
  except ValueError as e:  # UnicodeDecodeError included
    raise fail(f'corrupt: the header is not JSON ({e})') from e
  if not isinstance(header, dict):
    raise fail(f'corrupt: the header is a JSON {type(header).__name__}, expected an object')
  return header, n, size


def _is_count(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _entry_problems(name: str, info, data_start: int, size: int) -> list[str]:
  """What is wrong with one tensor entry of a safetensors header (empty when nothing)."""
  if not isinstance(info, dict):
    return [f'corrupt: tensor {name} is {info!r}, expected an object with dtype, shape and '
            'data_offsets']
  missing = [k for k in ('dtype', 'shape', 'data_offsets') if k not in info]
  if missing:
    return [f'corrupt: tensor {name} has no field {", ".join(missing)}']
  dtype, shape, offsets = info['dtype'], info['shape'], info['data_offsets']
  problems = []
  if not isinstance(dtype, str) or dtype not in _DTYPES:
    problems.append(f'tensor {name} has unsupported dtype {dtype!r} (expected one of '
                    f'{", ".join(_DTYPES)})')
  if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
    problems.append(f'corrupt: tensor {name} has field shape {shape!r}, expected a list of '
                    'non-negative integers')
  if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
    problems.append(f'corrupt: tensor {name} has field data_offsets {offsets!r}, expected '
                    '[begin, end], two non-negative integers')
  elif offsets[0] > offsets[1]:
    problems.append(f'corrupt: tensor {name} has data_offsets {offsets}: it ends before it '
                    'begins')
  if problems:
    return problems
  begin, end = offsets
  need = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize
  if end - begin != need:
    problems.append(f'corrupt: tensor {name} has {end - begin} bytes (data_offsets {begin}..{end}) '
                    f'but its shape {tuple(shape)} of {dtype} needs {need}')
  problem = plan.extent_problem(name, data_start + begin, data_start + end, size)
  if problem:
    problems.append(problem)
  return problems


class SafetensorsFiles(plan.Reader):
  """The tensors of one or more .safetensors files, memory-mapped.

  Every header is checked when the files are opened, before a weight is read: each
  tensor's dtype, shape and byte extent (inside the file, as long as its shape needs);
  a damaged file raises one CheckpointError naming it and every bad tensor."""

  def __init__(self, files: list[str]):
    self.entries: dict[str, tuple[np.memmap, str, tuple[int, ...], int, int]] = {}
    self.maps = []
    where: dict[str, str] = {}
    for file in files:
      header, n, size = _read_header(file)
      problems = []
      for name, info in header.items():
        if name != '__metadata__':
          problems += _entry_problems(name, info, 8 + n, size)
      if problems:
        raise plan.damaged(file, 'safetensors', problems)
      twice = sorted(set(header) & set(where) - {'__metadata__'})
      if twice:
        raise plan.CheckpointError(f'{file!r}: tensors also in {where[twice[0]]!r}: '
                                   + ', '.join(twice))
      data = np.memmap(file, np.uint8, 'r', offset=8 + n) if size > 8 + n \
          else np.zeros(0, np.uint8)
      self.maps.append(data)
      for name, info in header.items():
        if name == '__metadata__':
          continue
        begin, end = info['data_offsets']
        self.entries[name] = (data, info['dtype'], tuple(info['shape']), begin, end)
        where[name] = file

  def shapes(self):
    return {k: v[2] for k, v in self.entries.items()}

  def read(self, name, start=None, stop=None):
    data, dtype, shape, begin, end = self.entries[name]
    arr = data[begin:end].view(_DTYPES[dtype]).reshape(shape)
    if start is not None:
      arr = arr[start:stop]
    out = np.array(arr)  # one copy, in the file's dtype; the caller casts
    return out if out.dtype in (np.float32, ml_dtypes.bfloat16) else out.astype(np.float32)

  def release(self):
    for data in self.maps:
      mm = getattr(data, '_mmap', None)
      if mm is not None:
        mm.madvise(mmap.MADV_DONTNEED)


def weight_files(path: str) -> list[str]:
  index = os.path.join(path, 'model.safetensors.index.json')
  if os.path.isfile(index):
    try:
      with open(index) as f:
        raw = json.load(f)
    except ValueError as e:
      raise plan.CheckpointError(f'{index!r} is not readable JSON: {e}') from e
    weight_map = raw.get('weight_map') if isinstance(raw, dict) else None
    if not (isinstance(weight_map, dict)
            and all(isinstance(v, str) for v in weight_map.values())):
      raise plan.CheckpointError(f'{index!r}: field weight_map is missing or not an object of '
                                 'tensor name -> shard file name')
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not os.path.isfile(os.path.join(path, s))]
    if missing:
      raise FileNotFoundError(f'{path!r}: shards listed in model.safetensors.index.json are '
                              f'missing: {", ".join(missing)}')
    return [os.path.join(path, s) for s in shards]
  files = sorted(f for f in os.listdir(path) if f.endswith('.safetensors'))
  if not files:
    raise FileNotFoundError(f'{path!r} has no .safetensors weights')
  return [os.path.join(path, f) for f in files]
