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
import os
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


# PIL modes PIL's own convert('RGB') turns into RGB by their meaning: 8-bit channels,
# alpha (LA, PA, RGBA) dropped as the official library does, premultiplied alpha
# (La, RGBa) undone first, CMYK / YCbCr / LAB / HSV by PIL's colour conversion.
_PIL_CONVERTED = ('1', 'L', 'LA', 'La', 'P', 'PA', 'RGB', 'RGBA', 'RGBa', 'RGBX', 'CMYK',
                  'YCbCr', 'LAB', 'HSV')
_PIL_16BIT = ('I;16', 'I;16L', 'I;16B', 'I;16N')  # unsigned 16-bit grayscale
_PIL_MODES = _PIL_CONVERTED + _PIL_16BIT + ('I', 'F')


def _from_16bit(arr: np.ndarray) -> np.ndarray:
  """Unsigned 16-bit values (any byte order) -> uint8, v * 255 / 65535 rounded to nearest
  (never an exact half: 65535 is odd)."""
  return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _from_unit_float(arr: np.ndarray, index: int, what: str, hint: str) -> np.ndarray:
  """Float values in [0, 1] -> uint8, round(v * 255) (half to even, as np.round)."""
  if not np.all(np.isfinite(arr)):
    raise ValueError(f'image {index} has NaN or infinite pixel values ({what})')
  lo, hi = float(arr.min()), float(arr.max())
  if lo < 0.0 or hi > 1.0:
    raise ValueError(f'image {index}: {what} must hold values in [0, 1], got '
                     f'[{lo:g}, {hi:g}] ({hint})')
  return np.round(arr * 255.0).astype(np.uint8)


def _pil_to_rgb(image: Image.Image, index: int) -> np.ndarray:
  mode = image.mode
  if image.width == 0 or image.height == 0:
    raise ValueError(f'image {index} has zero size: {image.width}x{image.height} '
                     '(width x height)')
  if mode in _PIL_CONVERTED:
    if mode == 'P' and 'transparency' in image.info:
      image = image.convert('RGBA')  # PIL's own route for a palette with transparency
    elif mode == 'La':
      image = image.convert('LA')  # undo the premultiplied alpha (no La -> RGB in PIL)
    return np.asarray(image.convert('RGB'))
  if mode in _PIL_16BIT:
    gray = _from_16bit(np.asarray(image))
  elif mode == 'I':  # 32-bit signed: read as 16-bit where it fits (16-bit PNGs may open so)
    arr = np.asarray(image)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:
      raise ValueError(f'image {index}: a PIL mode I (32-bit integer) image is read as 16-bit '
                       f'and must hold values in [0, 65535], got [{lo}, {hi}] (convert it '
                       'to L, I;16 or a float array in [0, 1] first)')
    gray = _from_16bit(arr)
  elif mode == 'F':
    gray = _from_unit_float(np.asarray(image), index, 'a PIL mode F (float) image',
                            'divide by 255 for 0-255 values')
  else:
    raise ValueError(f'image {index}: PIL mode {mode!r} is not supported (supported: '
                     f'{", ".join(_PIL_MODES)}); convert it first, e.g. image.convert("RGB")')
  return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))


def to_rgb_uint8(image: Any, index: int = 0) -> np.ndarray:
  """An [H, W, 3] uint8 array from one image, `index` its position (for messages).

  A PIL image of any of its modes (Image.MODES): 8-bit modes by PIL's convert('RGB')
  (alpha dropped, as the official library does; P, CMYK, YCbCr, LAB, HSV by PIL's
  conversion), 16-bit I;16* as v * 255 / 65535, mode I likewise when its values are in
  [0, 65535], mode F when they are in [0, 1]. Or an array [H, W] / [H, W, 1]
  (grayscale), [H, W, 3] (RGB) or [H, W, 4] (RGBA: alpha dropped) of uint8 (as is),
  uint16 (v * 255 / 65535), bool (0 / 255) or float in [0, 1] (round(v * 255)). Anything
  else raises TypeError or ValueError naming the image, the value and what is expected."""
  if isinstance(image, Image.Image):
    return _pil_to_rgb(image, index)
  if not isinstance(image, (list, tuple, memoryview)) and not any(
      hasattr(image, a) for a in ('__array__', '__array_interface__', '__array_struct__')):
    raise TypeError(f'image {index} must be a numpy array or a PIL image, got '
                    f'{type(image).__name__}' +
                    (' (open a file with PIL.Image.open first)'
                     if isinstance(image, (str, bytes, os.PathLike)) else ''))
  try:
    arr = np.asarray(image)
  except ValueError as e:
    raise ValueError(f'image {index} is not a rectangular array: {e}') from e
  if arr.ndim == 2:
    arr = arr[..., None]
  if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
    raise ValueError(f'image {index} must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] '
                     f'(channels last), got shape {arr.shape}')
  if arr.shape[0] == 0 or arr.shape[1] == 0:
    raise ValueError(f'image {index} has zero size: shape {arr.shape}')
  kind, size = arr.dtype.kind, arr.dtype.itemsize
  if kind == 'u' and size == 1:
    pass
  elif kind == 'u' and size == 2:
    arr = _from_16bit(arr)
  elif kind == 'b':
    arr = arr.astype(np.uint8) * np.uint8(255)
  elif kind == 'f':
    arr = _from_unit_float(arr, index, 'a float image', 'pass uint8 for 0-255 pixels')
  else:
    if kind in 'iu':
      hint = ('; other integer types are ambiguous: cast 0-255 values with '
              '.astype(np.uint8), 0-65535 values with .astype(np.uint16)')
    elif kind == 'c':
      hint = '; complex values are not pixels'
    elif kind == 'O':
      hint = '; an object array (mixed or non-numeric items) is not an image'
    else:
      hint = ''
    raise ValueError(f'image {index}: dtype must be uint8 or float (values in [0, 1]), '
                     f'uint16 or bool, got {arr.dtype}{hint}')
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
