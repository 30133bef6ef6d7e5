"""`load_checkpoint`: one entry point for Orbax directories, HF directories and GGUF files."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from gemma4.models import Model
from gemma4.tokenizer import Gemma4Tokenizer

_ORBAX_MARKERS = ('_METADATA', '_CHECKPOINT_METADATA', 'manifest.ocdbt', 'checkpoint')


class Checkpoint(NamedTuple):
  model: Model
  params: dict  # the official parameter tree
  tokenizer: Gemma4Tokenizer | None  # None where the checkpoint carries none


def layout(path: str | os.PathLike) -> str:
  """'gguf', 'hf' or 'orbax' for what lies at `path`; a clear error for anything else."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f'checkpoint not found: {path!r}')
  if os.path.isfile(path):
    try:
      with open(path, 'rb') as f:
        magic = f.read(4)
    except OSError as e:
      raise OSError(f'cannot read checkpoint {path!r}: {e.strerror}') from e
    if magic == b'GGUF':
      return 'gguf'
    raise ValueError(f'unknown checkpoint layout: {path!r} is a file but not GGUF (expected a '
                     'GGUF file, a HF directory with config.json, or an Orbax directory)')
  entries = set(os.listdir(path))
  if 'config.json' in entries:
    return 'hf'
  if entries & set(_ORBAX_MARKERS):
    return 'orbax'
  raise ValueError(f'unknown checkpoint layout: {path!r} has neither config.json (HF) nor '
                   f'Orbax metadata ({", ".join(_ORBAX_MARKERS)})')


def load_checkpoint(path: str | os.PathLike, model: Model | None = None, *, dtype: Any = None,
                    progress: bool | None = None) -> Checkpoint:
  """The model, its parameters in the official tree, and the tokenizer of a checkpoint.

  path: an official Orbax checkpoint directory (name the model: `model=Gemma4_E2B()`),
    a HF directory (config.json + safetensors, as the published google/gemma-4-*
    repositories), or a GGUF file (architectures gemma3 and gemma4; every quantization
    type is dequantized).
  model: the expected model; for HF and GGUF it is checked against the checkpoint's
    config, for Orbax it is required.
  dtype: the parameter dtype (default: the model's; for HF the file's f32 or bf16, for
    GGUF float32, since dequantized values are not bf16-exact).
  progress: a progress line on stderr (default: when stderr is a terminal).
  A checkpoint that does not fit raises CheckpointError listing every missing, unused or
  misshaped tensor before any weight is read.
  """
  kind = layout(path)
  if kind == 'gguf':
    from gemma4 import gguf_loader
    return Checkpoint(*gguf_loader.load(path, model, dtype, progress))
  if kind == 'hf':
    from gemma4 import hf_loader
    return Checkpoint(*hf_loader.load(path, model, dtype, progress))
  from gemma4 import orbax_loader
  return Checkpoint(*orbax_loader.load(path, model, dtype, progress))
