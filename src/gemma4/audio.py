"""Audio for the Gemma 4 audio encoder (E2B, E4B): NumPy on the host, no JAX.

Clips are mono 16 kHz waveforms. `as_waveform` takes float32/float64 samples in [-1, 1]
or int16 samples (scaled by 1/32768), mono [S] or multichannel [S, C] / [C, S] (mixed
to mono), and rejects empty clips and NaN or infinite samples. A clip at another rate is
resampled by `resample`, or read and resampled by `load` (WAV; FLAC where the optional
`soundfile` package is installed).

Token counts (the official formula, gemma/gm/text/_gemma4_sampler.py): T0 = (n - 321) //
160 + 1 mel frames of 20 ms every 10 ms, then two stride-2 convolutions: ceil(ceil(T0 /
2) / 2). gemma4's encoder marks a clip's frames valid exactly (frames wholly inside its
samples) and zeroes what lies past them between the convolutions, so this count is what
the encoder outputs for a clip, alone or padded in a batch (tests/test_audio.py).

Clips longer than 30 s (480000 samples; 750 soft tokens, the official cap) are split
into consecutive segments of equal length, each encoded on its own and placed as its own
`<|audio>` ... `<audio|>` block in order, instead of being cut.
"""

from __future__ import annotations

import dataclasses
import math
import os
import wave
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
FRAME = 320   # 20 ms window
HOP = 160     # 10 ms hop
MIN_SAMPLES = FRAME + 1  # one mel frame (the official unfold takes 321 samples per frame)
MAX_SEGMENT = 30 * SAMPLE_RATE  # 480000 samples -> 750 soft tokens
MAX_TOKENS = 750

SOFT_TOKEN = -4  # where a clip's soft tokens go in an expanded sequence (the official id)
AUDIO_PLACEHOLDER = 258881  # <|audio|>
_START, _END = 256000, 258883  # <|audio>, <audio|>


def mel_frames(n: int) -> int:
  """Mel frames of n samples: 20 ms windows every 10 ms, wholly inside the clip."""
  return max(0, (n - MIN_SAMPLES) // HOP + 1)


def soft_token_count(n: int, max_segment: int = MAX_SEGMENT) -> int:
  """Soft tokens of one segment of n samples (n <= 480000 gives at most 750)."""
  t = mel_frames(n)
  for _ in range(2):
    t = (t - 1) // 2 + 1 if t > 0 else 0
  return min(t, max(MAX_TOKENS, max_segment // (4 * HOP)))


def segments(n: int, max_segment: int = MAX_SEGMENT) -> list[int]:
  """Lengths of the consecutive segments a clip of n samples is encoded as: one segment
  up to 30 s, else ceil(n / 30 s) segments of (nearly) equal length, none over 30 s."""
  k = max(1, math.ceil(n / max_segment))
  base, extra = divmod(n, k)
  return [base + (1 if i < extra else 0) for i in range(k)]


def as_waveform(clip: Any, index: int = 0) -> np.ndarray:
  """One clip as mono float32 samples in [-1, 1] (see the module docstring)."""
  name = f'audio clip {index}'
  a = np.asarray(clip)
  if a.dtype == np.int16:
    a = a.astype(np.float32) / 32768.0
  elif a.dtype in (np.float32, np.float64):
    a = a.astype(np.float32)
  else:
    raise ValueError(f'{name}: dtype must be float32, float64 or int16, got {a.dtype}')
  if a.ndim == 2:
    if a.shape[1] <= 8 and a.shape[0] > a.shape[1]:
      a = a.mean(axis=1)  # [samples, channels]
    elif a.shape[0] <= 8 and a.shape[1] > a.shape[0]:
      a = a.mean(axis=0)  # [channels, samples]
    else:
      raise ValueError(f'{name}: shape {a.shape} is not [samples] or [samples, channels] '
                       '(at most 8 channels)')
  elif a.ndim != 1:
    raise ValueError(f'{name}: expected [samples] or [samples, channels], got shape {a.shape}')
  if a.size == 0:
    raise ValueError(f'{name} is empty')
  if not np.isfinite(a).all():
    bad = int((~np.isfinite(a)).sum())
    raise ValueError(f'{name} has {bad} NaN or infinite sample{"s" if bad > 1 else ""}')
  peak = float(np.abs(a).max())
  if peak > 2.0:
    raise ValueError(f'{name}: float samples must be in [-1, 1], got a peak of {peak:g} '
                     '(integer samples stored as floats? pass them as int16)')
  return a


def check_length(n: int, index: int = 0, length: int | None = None) -> int:
  """The valid sample count of a clip of `n` samples given `audio_lengths` entry `length`."""
  if length is None:
    length = n
  if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
    raise ValueError(f'audio_lengths[{index}] must be an int, got {length!r}')
  length = int(length)
  if length < 0 or length > n:
    raise ValueError(f'audio_lengths[{index}] is {length}, outside [0, {n}] (the clip has '
                     f'{n} samples)')
  if length < MIN_SAMPLES:
    raise ValueError(f'audio clip {index} has {length} valid samples; at least {MIN_SAMPLES} '
                     f'({MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms at 16 kHz) make one frame')
  return length


@dataclasses.dataclass(frozen=True)
class Segment:
  """Up to 30 s of one clip, encoded on its own: float32 samples and its soft tokens."""

  samples: np.ndarray
  num_soft_tokens: int


def prepare(clip: Any, length: int | None = None, index: int = 0, rate: int = SAMPLE_RATE,
            max_segment: int = MAX_SEGMENT) -> list[Segment]:
  """A clip (its first `length` samples, default all; at `rate` Hz, resampled to 16 kHz)
  as its segments of at most `max_segment` samples."""
  a = as_waveform(clip, index)
  n = check_length(a.shape[0], index, length) if rate == SAMPLE_RATE else None
  if n is None:  # check the length in the caller's samples, then resample
    if length is not None:
      if isinstance(length, bool) or not isinstance(length, (int, np.integer)) \
          or not 0 <= length <= a.shape[0]:
        raise ValueError(f'audio_lengths[{index}] is {length!r}, outside [0, {a.shape[0]}] '
                         f'(the clip has {a.shape[0]} samples)')
      a = a[:int(length)]
    a = resample(a, rate)
    n = check_length(a.shape[0], index)
  a = a[:n]
  out, start = [], 0
  for size in segments(n, max_segment):
    out.append(Segment(a[start:start + size], soft_token_count(size, max_segment)))
    start += size
  return out


def expand_audio_tokens(ids: list[int], clips: list[list[Segment]],
                        prompt_index: int = 0) -> list[int]:
  """Each `<|audio|>` (258881) of one prompt becomes, for each segment of its clip,
  `<|audio>`, N soft-token slots (SOFT_TOKEN), `<audio|>` (the official
  `add_variable_extra_tokens_for_audio`, with one block per 30 s segment)."""
  found = sum(1 for t in ids if t == AUDIO_PLACEHOLDER)
  if found != len(clips):
    raise ValueError(f'prompt {prompt_index} has {found} <|audio|> placeholder'
                     f'{"" if found == 1 else "s"} but {len(clips)} audio clip'
                     f'{"" if len(clips) == 1 else "s"}; they must match')
  out, k = [], 0
  for t in ids:
    if t == AUDIO_PLACEHOLDER:
      for seg in clips[k]:
        out += [_START] + [SOFT_TOKEN] * seg.num_soft_tokens + [_END]
      k += 1
    else:
      out.append(t)
  return out


# --- reading and resampling ------------------------------------------------------------

def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
  """Band-limited resampling of mono float samples from `rate` to `target` Hz.

  Windowed-sinc interpolation (Kaiser window, beta 8.6, 32 zero crossings of the lower
  of the two Nyquist frequencies, cutoff at 0.95 of it). Tested: a 1 kHz tone from
  44.1 kHz is kept within 1e-3, a 9 kHz tone (above the new Nyquist) is removed to
  below 1e-3 instead of aliasing (tests/test_audio.py).
  """
  x = np.asarray(x, np.float64)
  if rate == target:
    return x.astype(np.float32)
  if rate <= 0 or target <= 0:
    raise ValueError(f'sample rates must be positive, got {rate} and {target}')
  g = math.gcd(int(rate), int(target))
  up, down = int(target) // g, int(rate) // g
  n_out = (x.shape[0] * up + down - 1) // down
  cutoff = 0.95 * min(1.0, target / rate)  # of the input Nyquist
  zeros = 32
  half = int(math.ceil(zeros / cutoff))  # taps each side, in input samples
  t = np.arange(n_out) * (rate / target)  # output times in input samples
  base = np.floor(t).astype(np.int64)
  out = np.zeros(n_out)
  window_beta = 8.6
  for k in range(-half + 1, half + 1):  # one tap offset at a time: O(n * taps) memory-light
    idx = base + k
    d = t - idx
    w = cutoff * np.sinc(cutoff * d) * _kaiser(d / half, window_beta)
    ok = (idx >= 0) & (idx < x.shape[0])
    out[ok] += w[ok] * x[idx[ok]]
  return out.astype(np.float32)


def _kaiser(u: np.ndarray, beta: float) -> np.ndarray:
  """Kaiser window at u in [-1, 1] (0 outside)."""
  inside = np.abs(u) <= 1
  v = np.where(inside, np.sqrt(np.clip(1 - u * u, 0, None)), 0.0)
  return np.where(inside, np.i0(beta * v) / np.i0(beta), 0.0)


def load(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """A sound file as mono float32 samples at `sample_rate` (16 kHz for the encoder).

  WAV (8-bit unsigned, 16/24/32-bit integer PCM; float WAV and FLAC through the optional
  `soundfile` package). Multichannel files are mixed to mono; other rates are resampled.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'audio file not found: {path}')
  try:
    with wave.open(path, 'rb') as f:
      channels, width, rate, n = (f.getnchannels(), f.getsampwidth(), f.getframerate(),
                                  f.getnframes())
      raw = f.readframes(n)
    x = _pcm(raw, width).reshape(-1, channels).mean(axis=1)
  except (wave.Error, EOFError) as e:
    try:
      import soundfile
    except ImportError:
      raise ValueError(f'cannot read {path} as PCM WAV ({e}); other formats (FLAC, float '
                       'WAV) need `pip install soundfile`') from e
    try:
      data, rate = soundfile.read(path, dtype='float32', always_2d=True)
    except Exception as e2:  # soundfile raises its own error types
      raise ValueError(f'cannot read audio file {path}: {e2}') from e2
    x = data.mean(axis=1)
  if x.size == 0:
    raise ValueError(f'audio file {path} has no samples')
  return resample(x, int(rate), sample_rate)


def _pcm(raw: bytes, width: int) -> np.ndarray:
  if width == 1:
    return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
  if width == 2:
    return np.frombuffer(raw, '<i2').astype(np.float32) / 32768.0
  if width == 3:
    b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
    v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    v = np.where(v >= 1 << 23, v - (1 << 24), v)
    return v.astype(np.float32) / float(1 << 23)
  if width == 4:
    return (np.frombuffer(raw, '<i4').astype(np.float64) / 2147483648.0).astype(np.float32)
  raise ValueError(f'unsupported WAV sample width: {width} bytes')
