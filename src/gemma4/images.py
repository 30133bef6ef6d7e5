"""Image preprocessing for the Gemma 4 vision encoders: NumPy and Pillow, no JAX.

Each image is resized on its own, keeping its aspect ratio, so that both sides are
multiples of patch_size * pooling_kernel_size (48) and it holds at most
pooling_kernel_size**2 * budget patches of 16x16; pixels are scaled to [0, 1]; the
patches are listed row by row with their (column, row) positions and padded to the
budget's fixed length with zeros at position (-1, -1). The rules are the official
library's (gemma/gm/nn/gemma4/vision/_preprocessing.py, gemma==4.0.1), which HF
transformers' image processor shares; the resize is Pillow's bicubic on uint8 pixels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from PIL import Image

BUDGETS = (70, 140, 280, 560, 1120)  # soft tokens per image, as HF validates them
PATCH = 16
POOL = 3


def check_budget(budget: Any) -> int:
  if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget not in BUDGETS:
    raise ValueError(f'max_soft_tokens must be one of {", ".join(map(str, BUDGETS))}, '
                     f'got {budget!r}')
  return int(budget)


def target_size(height: int, width: int, budget: int, patch: int = PATCH,
                pool: int = POOL) -> tuple[int, int]:
  """(height, width) an image is resized to: the official `get_target_dimensions`."""
  max_patches = budget * pool ** 2
  side = pool * patch
  if height * width == 0:
    return side, side
  factor = math.sqrt(max_patches * patch ** 2 / (height * width))
  th = int(math.floor(factor * height / side)) * side
  tw = int(math.floor(factor * width / side)) * side
  longest = (max_patches // pool ** 2) * side
  if th == 0 and tw == 0:
    return side, side
  if th == 0:  # very wide: one row of pooling windows
    return side, min(max(1, int(math.floor(width / height))) * side, longest)
  if tw == 0:  # very tall
    return min(max(1, int(math.floor(height / width))) * side, longest), side
  return th, tw


def soft_token_count(height: int, width: int, budget: int, patch: int = PATCH,
                     pool: int = POOL) -> int:
  """Soft tokens an image of this size gives at this budget (after resize and pooling)."""
  th, tw = target_size(height, width, budget, patch, pool)
  return (th // patch) * (tw // patch) // pool ** 2


def to_rgb_uint8(image: Any) -> np.ndarray:
  """An [H, W, 3] uint8 array from a PIL image or an array: uint8, or float in [0, 1];
  [H, W] or [H, W, 1] (grayscale), [H, W, 3] (RGB) or [H, W, 4] (RGBA: the alpha channel
  is dropped, as the official library does). Raises ValueError naming what is wrong."""
  if isinstance(image, Image.Image):
    if image.width == 0 or image.height == 0:
      raise ValueError(f'image has zero size: {image.width}x{image.height} (width x height)')
    return np.asarray(image.convert('RGB'))
  arr = np.asarray(image)
  if arr.ndim == 2:
    arr = arr[..., None]
  if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
    raise ValueError(f'image must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (channels '
                     f'last), got shape {arr.shape}')
  if arr.shape[0] == 0 or arr.shape[1] == 0:
    raise ValueError(f'image has zero size: shape {arr.shape}')
  if arr.dtype == np.uint8:
    pass
  elif np.issubdtype(arr.dtype, np.floating):
    if not np.all(np.isfinite(arr)):
      raise ValueError('image has NaN or infinite pixel values')
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
      raise ValueError(f'a float image must hold values in [0, 1], got [{lo:g}, {hi:g}] '
                       '(pass uint8 for 0-255 pixels)')
    arr = np.round(arr * 255.0).astype(np.uint8)
  else:
    raise ValueError(f'image dtype must be uint8 or float (values in [0, 1]), got {arr.dtype}')
  if arr.shape[-1] == 1:
    arr = np.repeat(arr, 3, axis=-1)
  return np.ascontiguousarray(arr[..., :3])


@dataclasses.dataclass(frozen=True)
class Patches:
  """One preprocessed image.

  patches: [budget * pool**2, patch**2 * 3] float32 in [0, 1], row-major patches, each
    flattened (row, column, channel); rows past `num_patches` are zero padding.
  positions: [budget * pool**2, 2] int32 (column, row) of each patch; (-1, -1) padding.
  num_soft_tokens: the soft tokens this image becomes after pooling.
  size: (height, width) after the resize.
  """

  patches: np.ndarray
  positions: np.ndarray
  num_soft_tokens: int
  size: tuple[int, int]

  @property
  def num_patches(self) -> int:
    return self.size[0] // PATCH * (self.size[1] // PATCH)


def preprocess(image: Any, budget: int = 1120, patch: int = PATCH, pool: int = POOL) -> Patches:
  """Resize, scale to [0, 1] and patchify one image for the given soft-token budget."""
  budget = check_budget(budget)
  rgb = to_rgb_uint8(image)
  h, w = rgb.shape[:2]
  th, tw = target_size(h, w, budget, patch, pool)
  if (th, tw) != (h, w):
    rgb = np.asarray(Image.fromarray(rgb).resize((tw, th), resample=Image.BICUBIC))
  pixels = rgb.astype(np.float32) / 255.0
  gh, gw = th // patch, tw // patch
  grid = pixels.reshape(gh, patch, gw, patch, 3).transpose(0, 2, 1, 3, 4)
  n = gh * gw
  length = budget * pool ** 2
  patches = np.zeros((length, patch * patch * 3), np.float32)
  patches[:n] = grid.reshape(n, -1)
  positions = np.full((length, 2), -1, np.int32)
  rows, cols = np.divmod(np.arange(n), gw)
  positions[:n, 0], positions[:n, 1] = cols, rows
  return Patches(patches, positions, n // pool ** 2, (th, tw))


SOFT_TOKEN = -2  # where an image's soft tokens go in an expanded sequence (the official id)
IMAGE_PLACEHOLDER = 258880  # <|image|>
_START, _END, _DOUBLE_NEWLINE = 255999, 258882, 108


def expand_image_tokens(ids: list[int], soft_token_counts: list[int],
                        prompt_index: int = 0) -> list[int]:
  """Each `<|image|>` (258880) of one prompt becomes `\\n\\n`, `<|image>`, N soft-token
  slots (SOFT_TOKEN), `<image|>`, `\\n\\n`, with N that image's own count (the official
  `add_variable_extra_tokens_for_images`, one prompt at a time)."""
  found = sum(1 for t in ids if t == IMAGE_PLACEHOLDER)
  if found != len(soft_token_counts):
    raise ValueError(f'prompt {prompt_index} has {found} <|image|> placeholder'
                     f'{"" if found == 1 else "s"} but {len(soft_token_counts)} '
                     f'image{"" if len(soft_token_counts) == 1 else "s"}; they must match')
  out, k = [], 0
  for t in ids:
    if t == IMAGE_PLACEHOLDER:
      out += [_DOUBLE_NEWLINE, _START] + [SOFT_TOKEN] * soft_token_counts[k] + [_END, _DOUBLE_NEWLINE]
      k += 1
    else:
      out.append(t)
  return out
