"""`load_checkpoint`: one entry point for GGUF files, HF and Orbax directories."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from gemma4 import quant
from gemma4.models import Model
from gemma4.sharding import Sharder
from gemma4.tokenizer import Gemma4Tokenizer

_ORBAX_MARKERS = ('_METADATA', '_CHECKPOINT_METADATA', 'manifest.ocdbt', 'checkpoint')


class Checkpoint(NamedTuple):
  model: Model
  params: dict  # the official parameter tree (decoder weights as int8 QTensors if quantized)
  tokenizer: Gemma4Tokenizer | None  # None where the checkpoint carries none

  @property
  def weights(self) -> str:
    """The weight format, for a status line: 'int8' or the float dtype's name."""
    return quant.describe(self.params)


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


_DTYPES = ('float32', 'bfloat16', 'float16')


def check_dtype(dtype: Any) -> None:
  """Raises unless `dtype` is None or a parameter dtype (float32, bfloat16, float16)."""
  if dtype is None:
    return
  import jax.numpy as jnp
  try:
    name = jnp.dtype(dtype).name
  except (TypeError, ValueError) as e:
    raise TypeError(f'dtype {dtype!r} is not a dtype (expected one of {", ".join(_DTYPES)}, '
                    'or None for the default)') from e
  if name not in _DTYPES:
    raise ValueError(f'dtype {dtype!r} ({name}) is not a parameter dtype (expected one of '
                     f'{", ".join(_DTYPES)}, or None for the default)')


def load_checkpoint(path: str | os.PathLike, model: Model | None = None, *, dtype: Any = None,
                    quantize: str | None = 'auto', progress: bool | None = None,
                    mesh: Any = None, sharding_rules: Any = None) -> Checkpoint:
  """The model, its parameters in the official tree, and the tokenizer of a checkpoint.

  path: an official Orbax checkpoint directory (name the model: `model=Gemma4_E2B()`),
    a HF directory (config.json + safetensors, as the published google/gemma-4-*
    repositories), or a GGUF file (architectures gemma3 and gemma4; every quantization
    type is dequantized).
  model: the expected model; for HF and GGUF it is checked against the checkpoint's
    config, for Orbax it is required.
  dtype: the parameter dtype, float32, bfloat16 or float16 (default: the model's; for HF
    the file's f32 or bf16, for GGUF float32, since dequantized values are not bf16-exact);
    anything else raises before the checkpoint is opened.
  quantize: the decoder weights' format. 'auto' (the default) picks the fastest one that
    keeps quality on the default backend: 'int8' on CPU (per-channel int8 weights,
    float32 activations: bench/RESULTS.md), the float `dtype` elsewhere. 'int8', or
    None for float weights in `dtype` (the official tree exactly). The vision and audio
    encoders, norms and the MoE router always stay in float.
  progress: a progress line on stderr (default: when stderr is a terminal).
  mesh, sharding_rules: a jax.sharding.Mesh (gemma4.sharding.make_mesh) and rules (as
    Gemma4Sampler takes them): each parameter is read into its shards on the mesh, one
    tensor at a time on the host, and tables split along their rows are read only in
    the rows this process's devices hold; no process ever holds the whole model.
  A checkpoint that does not fit raises CheckpointError listing every missing, unused or
  misshaped tensor before any weight is read.
  """
  check_dtype(dtype)
  quantize = quant.resolve_format(quantize)
  if model is not None and not isinstance(model, Model):
    raise TypeError(f'model must be a gemma4 Model (e.g. gemma4.models.Gemma4_E2B()) or None, '
                    f'got {type(model).__name__} {model!r}')
  sharder = Sharder.checked(mesh, sharding_rules)
  kind = layout(path)
  if kind == 'gguf':
    from gemma4.checkpoints import gguf
    return Checkpoint(*gguf.load(path, model, dtype, progress, quantize, sharder))
  if kind == 'hf':
    from gemma4.checkpoints import hf
    return Checkpoint(*hf.load(path, model, dtype, progress, quantize, sharder))
  from gemma4.checkpoints import orbax  # needs orbax-checkpoint, imported only here
  return Checkpoint(*orbax.load(path, model, dtype, progress, quantize, sharder))

