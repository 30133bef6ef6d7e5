"""Golden fixtures of the official decoder's logits: what they hold and how they are read.

The oracle suite writes them (GEMMA4_WRITE_GOLDEN=1) from the official gemma==4.0.1 run
on gemma4's seeded tiny params; the default tests compare gemma4 with them, so parity
is checked without the oracle's environment.
"""

from __future__ import annotations

import pathlib

import numpy as np

GOLDEN_DIR = pathlib.Path(__file__).parent / 'golden'
PRESETS = ('gemma4_e2b', 'gemma4_e4b', 'gemma4_26b_a4b', 'gemma4_31b')
PARAM_SEED = 0
PROMPT_LEN = 48
PAD_ROW_LEN = 36  # the second row is right-padded with id 0 after this many tokens
NUM_COLS = 256
SAMPLER_SETTINGS = dict(cache_length=128, max_out_length=16, pad_length=(16, 32))
SAMPLER_PROMPTS = ['Hello world', 'The quick brown fox jumps over the lazy dog',
                   'What is the capital of France?']


def prompt_tokens(vocab: int, seed: int = 1) -> np.ndarray:
  """[2, 48] int32 ids; row 1 ends in padding (id 0)."""
  toks = np.random.default_rng(seed).integers(1, vocab, (2, PROMPT_LEN)).astype(np.int32)
  toks[1, PAD_ROW_LEN:] = 0
  return toks


def vision_tokens(tokens: np.ndarray) -> np.ndarray:
  """The prompt with two images' soft tokens (id -2, the official placeholder): row 0
  at 5..14 (longer than the window of 8) and 20..25; row 1 at 3..8."""
  toks = tokens.copy()
  toks[0, 5:15] = -2
  toks[0, 20:26] = -2
  toks[1, 3:9] = -2
  return toks


def valid_positions(tokens: np.ndarray) -> np.ndarray:
  return tokens != 0


def summarize(logits: np.ndarray, vocab: int, argmax_ids: np.ndarray | None = None) -> dict:
  """Slices kept of a [2, 48, V] logits array: 256 fixed columns plus every position's
  argmax column, and each position's logsumexp over the whole vocabulary."""
  logits = np.asarray(logits, np.float32)
  if argmax_ids is None:
    argmax_ids = logits.argmax(-1)
  cols = np.random.default_rng(2).choice(vocab, NUM_COLS, replace=False)
  cols = np.unique(np.concatenate([cols, argmax_ids.ravel()]))
  lf = logits.astype(np.float64)
  m = lf.max(-1, keepdims=True)
  lse = (m[..., 0] + np.log(np.exp(lf - m).sum(-1))).astype(np.float32)
  return {'cols': cols, 'logits_cols': logits[..., cols], 'lse': lse,
          'argmax': logits.argmax(-1)}


def path(preset: str) -> pathlib.Path:
  return GOLDEN_DIR / f'decoder_{preset}.npz'


def load(preset: str) -> dict:
  with np.load(path(preset)) as f:
    return dict(f)
