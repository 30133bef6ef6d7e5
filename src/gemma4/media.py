"""Media in prompts, host side (NumPy, no JAX): what images and audio share.

`images_per_prompt` / `audio_per_prompt` check a call's media and group them by prompt
(one list per prompt, or one flat list in placeholder order), counting each prompt's
`<|image|>` / `<|audio|>` placeholders; nothing costly is done yet. Each placeholder then
becomes its block of tokens around soft-token slots (IMAGE_SLOT / AUDIO_SLOT, the
official ids -2 and -4), and `slot_index` lays a batch's encoder outputs out in the order
of each row's slots. Token ids come from the tokenizer's table; the pixels and waveforms
are prepared by `gemma4.images` and `gemma4.audio`, and encoded and merged into the
embeddings by `gemma4.multimodal`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gemma4 import audio as _audio
from gemma4 import images as _images
from gemma4.tokenizer import SpecialTokens

IMAGE_SLOT = -2  # where an image's soft tokens go in an expanded sequence (the official id)
AUDIO_SLOT = -4  # where a clip's soft tokens go (the official id)
DOUBLE_NEWLINE = 108  # '\n\n', a normal piece of the Gemma 4 vocabulary


def count(ids: Sequence[int], placeholder: int) -> int:
  return sum(1 for t in ids if t == placeholder)


def _plural(n: int, noun: str) -> str:
  return f'{n} {noun}{"" if n == 1 else "s"}'


def expand(ids: Sequence[int], placeholder: int, blocks: Sequence[Sequence[int]], tag: str,
           noun: str, prompt_index: int = 0) -> list[int]:
  """ids with the k-th `placeholder` replaced by blocks[k]; the counts must match."""
  found = count(ids, placeholder)
  if found != len(blocks):
    raise ValueError(f'prompt {prompt_index} has {_plural(found, tag + " placeholder")} but '
                     f'{_plural(len(blocks), noun)}; they must match')
  out, k = [], 0
  for t in ids:
    if t == placeholder:
      out += list(blocks[k])
      k += 1
    else:
      out.append(t)
  return out


def image_block(num_soft_tokens: int) -> list[int]:
  """`\\n\\n`, `<|image>`, N slots, `<image|>`, `\\n\\n` (the official layout)."""
  return ([DOUBLE_NEWLINE, SpecialTokens.START_OF_IMAGE] + [IMAGE_SLOT] * num_soft_tokens
          + [SpecialTokens.END_OF_IMAGE, DOUBLE_NEWLINE])


def audio_block(segment_tokens: Sequence[int]) -> list[int]:
  """`<|audio>`, N slots, `<audio|>` for each 30 s segment of one clip, in order."""
  out = []
  for n in segment_tokens:
    out += [SpecialTokens.START_OF_AUDIO] + [AUDIO_SLOT] * n + [SpecialTokens.END_OF_AUDIO]
  return out


def expand_image_tokens(ids: Sequence[int], soft_token_counts: Sequence[int],
                        prompt_index: int = 0) -> list[int]:
  """Each `<|image|>` of one prompt becomes its image's block (`image_block`), with N
  that image's own count (the official `add_variable_extra_tokens_for_images`)."""
  return expand(ids, SpecialTokens.IMAGE_PLACEHOLDER, [image_block(n) for n in soft_token_counts],
                '<|image|>', 'image', prompt_index)


def expand_audio_tokens(ids: Sequence[int], clips: Sequence[Sequence[int]],
                        prompt_index: int = 0) -> list[int]:
  """Each `<|audio|>` of one prompt becomes one `<|audio>`...`<audio|>` block per segment
  of its clip; clips[k] lists the soft tokens of clip k's segments (the official
  `add_variable_extra_tokens_for_audio`, with one block per 30 s segment)."""
  return expand(ids, SpecialTokens.AUDIO_PLACEHOLDER, [audio_block(c) for c in clips],
                '<|audio|>', 'audio clip', prompt_index)


def per_prompt(items: list, n_slots: list[int], tag: str, noun: str) -> tuple[list[list], bool]:
  """Media items grouped by prompt, and whether they came one list per prompt: one list
  (or tuple) per prompt, else one flat list in placeholder order. Counts that do not
  match the `tag` placeholders are an error naming them."""
  if len(items) == len(n_slots) and all(isinstance(x, (list, tuple)) for x in items):
    groups = [list(x) for x in items]
    for i, (g, n) in enumerate(zip(groups, n_slots)):
      if len(g) != n:
        raise ValueError(f'prompt {i} has {_plural(n, tag + " placeholder")} but '
                         f'{_plural(len(g), noun)}')
    return groups, True
  nested = [i for i, x in enumerate(items) if isinstance(x, (list, tuple))]
  if nested:
    raise ValueError(f'{noun}s: item {nested[0]} is a {type(items[nested[0]]).__name__}; give one '
                     f'list per prompt ({len(n_slots)} lists for {len(n_slots)} prompts) or one '
                     f'flat list of {noun}s in placeholder order')
  if len(items) != sum(n_slots):
    where = (f'prompt 0 has {_plural(n_slots[0], tag + " placeholder")}' if len(n_slots) == 1
             else f'the prompts have {_plural(sum(n_slots), tag + " placeholder")} in all '
                  f'({", ".join(map(str, n_slots))} per prompt)')
    raise ValueError(f'{where} but {_plural(len(items), noun)} given')
  starts = np.cumsum([0] + n_slots)
  return [items[a:b] for a, b in zip(starts[:-1], starts[1:])], False


def slot_index(rows: Sequence[Sequence[int]], per_item: int, length: int) -> np.ndarray:
  """[B, length] int32: for row b, the flat index (item * per_item + j) of the encoder
  output that fills each of its slots in order. rows[b] lists the soft-token count of
  each of row b's items; items are numbered across rows in order (0 past a row's slots)."""
  index = np.zeros((len(rows), length), np.int32)
  k = 0
  for b, counts in enumerate(rows):
    taken = [i * per_item + j for i, n in enumerate(counts, start=k) for j in range(n)]
    index[b, :len(taken)] = taken
    k += len(counts)
  return index


def images_per_prompt(ids: list[list[int]], images) -> list[list[np.ndarray]] | None:
  """Each prompt's images as checked RGB uint8 arrays, grouped by its `<|image|>`
  placeholders (None without images): every count and pixel checked, nothing resized."""
  n_slots = [count(row, SpecialTokens.IMAGE_PLACEHOLDER) for row in ids]
  if images is None:
    if any(n_slots):
      row = next(i for i, n in enumerate(n_slots) if n)
      raise ValueError(f'prompt {row} has {n_slots[row]} <|image|> placeholder(s) but no '
                       'images were given')
    return None
  if isinstance(images, np.ndarray) and images.ndim in (2, 3):
    raise TypeError(f'images must be a list of images, got one array of shape {images.shape}; '
                    'wrap it in a list: images=[image]')
  if not isinstance(images, (list, tuple, np.ndarray)):
    raise TypeError(f'images must be a list of images (numpy arrays or PIL images), one list '
                    f'per prompt or one flat list; got {type(images).__name__}')
  groups, _ = per_prompt(list(images), n_slots, '<|image|>', 'image')
  out, index = [], 0
  for g in groups:
    row = []
    for img in g:
      row.append(_images.to_rgb_uint8(img, index))
      index += 1
    out.append(row)
  return out


def audio_per_prompt(ids: list[list[int]], audio, audio_lengths, rate: int, max_segment: int
                     ) -> list[list[_audio.Clip]] | None:
  """Each prompt's clips (at `rate` Hz), grouped by its `<|audio|>` placeholders with
  their `audio_lengths`, checked and counted but not resampled (None without audio)."""
  n_slots = [count(row, SpecialTokens.AUDIO_PLACEHOLDER) for row in ids]
  if audio is None:
    if audio_lengths is not None:
      raise ValueError('audio_lengths was given without audio')
    if any(n_slots):
      row = next(i for i, n in enumerate(n_slots) if n)
      raise ValueError(f'prompt {row} has {n_slots[row]} <|audio|> placeholder(s) but no '
                       'audio was given')
    return None
  if isinstance(audio, np.ndarray):
    if audio.ndim == 1:
      audio = [audio]
    else:
      raise TypeError(f'audio must be a list of clips, got one array of shape {audio.shape}: '
                      'pass [clip] for one (multichannel) clip, or list(array) for several '
                      'mono clips')
  if not isinstance(audio, (list, tuple)):
    raise TypeError(f'audio must be a list of clips (numpy arrays), one list per prompt or '
                    f'one flat list; got {type(audio).__name__}')
  audio = list(audio)
  groups, nested = per_prompt(audio, n_slots, '<|audio|>', 'audio clip')
  n_clips = sum(len(g) for g in groups)
  if isinstance(audio_lengths, (int, np.integer)) and not isinstance(audio_lengths, bool):
    if n_clips != 1:
      raise ValueError(f'audio_lengths is one int ({audio_lengths}) but {n_clips} clips were '
                       'given: give one length per clip')
    audio_lengths = [[audio_lengths]] if nested else [audio_lengths]
  if audio_lengths is None:
    lengths = [[None] * len(g) for g in groups]
  elif not isinstance(audio_lengths, (list, tuple, np.ndarray)):
    raise TypeError(f'audio_lengths must be a list of ints (one per clip), got '
                    f'{type(audio_lengths).__name__}')
  elif nested:
    lengths = [list(x) if isinstance(x, (list, tuple, np.ndarray)) else [x] for x in audio_lengths]
    if [len(x) for x in lengths] != [len(g) for g in groups]:
      raise ValueError('audio_lengths must have one list per prompt, one entry per clip: '
                       f'got sizes {[len(x) for x in lengths]} for clips {[len(g) for g in groups]}')
  else:
    if len(audio_lengths) != n_clips:
      raise ValueError(f'audio_lengths has {len(audio_lengths)} entries but {n_clips} audio '
                       'clip(s) were given')
    lengths, _ = per_prompt(list(audio_lengths), n_slots, '', '')
  out, index = [], 0
  for g, ls in zip(groups, lengths):
    row = []
    for clip, length in zip(g, ls):
      row.append(_audio.check_clip(clip, length, index, rate, max_segment))
      index += 1
    out.append(row)
  return out
