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
import io
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


def _length_arg(length: Any, n: int, index: int) -> int:
  """The valid sample count of a clip of `n` samples given its `audio_lengths` entry."""
  if length is None:
    return n
  if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
    raise ValueError(f'audio_lengths[{index}] must be an int, got {length!r}')
  if not 0 <= int(length) <= n:
    raise ValueError(f'audio_lengths[{index}] is {int(length)}, outside [0, {n}] (the clip has '
                     f'{n} samples)')
  return int(length)


def resampled_length(n: int, rate: int, target: int = SAMPLE_RATE) -> int:
  """Samples that `resample` makes of n samples at `rate`: ceil(n * target / rate)."""
  g = math.gcd(int(rate), int(target))
  up, down = int(target) // g, int(rate) // g
  return (n * up + down - 1) // down


@dataclasses.dataclass(frozen=True)
class Segment:
  """Up to 30 s of one clip, encoded on its own: float32 samples and its soft tokens."""

  samples: np.ndarray
  num_soft_tokens: int


@dataclasses.dataclass(frozen=True)
class Clip:
  """One clip, checked and counted but not yet resampled or cut (that is `segments()`,
  the costly part, done only once every check of a call has passed).

  samples: its valid samples, mono float32 at `rate` Hz.
  sizes: the lengths at 16 kHz of the segments it is encoded as (`segments`).
  """

  samples: np.ndarray
  rate: int
  sizes: tuple[int, ...]
  max_segment: int = MAX_SEGMENT

  @property
  def soft_token_counts(self) -> list[int]:
    return [soft_token_count(s, self.max_segment) for s in self.sizes]

  def segments(self) -> list[Segment]:
    a = resample(self.samples, self.rate) if self.rate != SAMPLE_RATE else self.samples
    out, start = [], 0
    for size, count in zip(self.sizes, self.soft_token_counts):
      out.append(Segment(a[start:start + size], count))
      start += size
    return out


def check_clip(clip: Any, length: int | None = None, index: int = 0, rate: int = SAMPLE_RATE,
               max_segment: int = MAX_SEGMENT) -> Clip:
  """A clip (its first `length` samples, default all; at `rate` Hz) checked: samples,
  length (in the caller's samples), at least one 20 ms frame once at 16 kHz."""
  rate = _check_rate(rate, 'audio_sample_rate')
  if isinstance(max_segment, bool) or not isinstance(max_segment, (int, np.integer)) \
      or max_segment < 4 * HOP:
    raise ValueError(f'max_segment must be an int of at least {4 * HOP} samples (one soft '
                     f'token), got {max_segment!r}')
  a = as_waveform(clip, index)
  a = a[:_length_arg(length, a.shape[0], index)]
  n = resampled_length(a.shape[0], rate)
  if n < MIN_SAMPLES:
    at = f' ({a.shape[0]} at {rate} Hz)' if rate != SAMPLE_RATE else ''
    raise ValueError(f'audio clip {index} has {n} valid samples at 16 kHz{at}; at least '
                     f'{MIN_SAMPLES} ({MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms) make one frame')
  return Clip(a, int(rate), tuple(segments(n, max_segment)), max_segment)


def prepare(clip: Any, length: int | None = None, index: int = 0, rate: int = SAMPLE_RATE,
            max_segment: int = MAX_SEGMENT) -> list[Segment]:
  """A clip (its first `length` samples, default all; at `rate` Hz, resampled to 16 kHz)
  as its segments of at most `max_segment` samples."""
  return check_clip(clip, length, index, rate, max_segment).segments()


# --- reading and resampling ------------------------------------------------------------

def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
  """Band-limited resampling of mono float samples from `rate` to `target` Hz.

  Polyphase FIR filtering (scipy.signal.resample_poly) with a windowed-sinc low-pass:
  Kaiser window (beta 8.6, about 80 dB of stopband), 32 zero crossings each side, cutoff
  at 0.95 of the lower of the two Nyquist frequencies. Output sample k is at input time
  k * rate / target; there are `resampled_length` of them. Tested: within 2e-4 of the
  direct windowed-sinc form it replaced, a 1 kHz tone from 44.1 kHz is kept within 1e-3,
  a 9 kHz tone (above the new Nyquist) removed to below 1e-3 (tests/test_audio.py); 10
  minutes of 44.1 kHz audio take seconds (bench/long_audio.txt).
  """
  from scipy import signal  # a dependency of jax; imported here, where it is needed
  rate, target = _check_rate(rate, 'rate'), _check_rate(target, 'target')
  x = np.asarray(x, np.float64)
  if rate == target:
    return x.astype(np.float32)
  g = math.gcd(int(rate), int(target))
  up, down = int(target) // g, int(rate) // g
  cutoff = 0.95 / max(up, down)  # of the upsampled rate's Nyquist
  half = int(math.ceil(32 / cutoff))  # 32 zero crossings each side, in upsampled samples
  taps = signal.firwin(2 * half + 1, cutoff, window=('kaiser', 8.6))
  out = signal.resample_poly(x, up, down, window=taps)
  return out[:resampled_length(x.shape[0], rate, target)].astype(np.float32)


def load(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """A sound file as mono float32 samples at `sample_rate` (16 kHz for the encoder).

  WAV (8-bit unsigned, 16/24/32-bit integer PCM; float WAV and FLAC through the optional
  `soundfile` package). Multichannel files are mixed to mono; other rates are resampled.
  A file cut short keeps its whole frames.
  """
  _check_rate(sample_rate, 'sample_rate')
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'audio file not found: {path}')
  return _read(path, path, sample_rate)


def decode(data: bytes, sample_rate: int = SAMPLE_RATE, name: str = 'audio data') -> np.ndarray:
  """`load` for the bytes of a sound file (e.g. an API request's base64 `input_audio`)."""
  _check_rate(sample_rate, 'sample_rate')
  if not isinstance(data, (bytes, bytearray)):
    raise TypeError(f'{name} must be bytes, got {type(data).__name__}')
  return _read(io.BytesIO(data), name, sample_rate)


def _read(source, path: str, sample_rate: int) -> np.ndarray:
  """A file name or a binary file object, read as `load` says."""
  try:
    with wave.open(source, 'rb') as f:
      channels, width, rate, n = (f.getnchannels(), f.getsampwidth(), f.getframerate(),
                                  f.getnframes())
      raw = f.readframes(n)
    frame = width * channels
    x = _pcm(raw[:len(raw) // frame * frame], width).reshape(-1, channels).mean(axis=1)
  except (wave.Error, EOFError) as e:
    try:
      import soundfile
    except ImportError:
      raise ValueError(f'cannot read {path} as PCM WAV ({e}); other formats (FLAC, float '
                       'WAV) need `pip install soundfile`') from e
    if hasattr(source, 'seek'):
      source.seek(0)
    try:
      data, rate = soundfile.read(source, dtype='float32', always_2d=True)
    except Exception as e2:  # soundfile raises its own error types
      raise ValueError(f'cannot read audio file {path}: {e2}') from e2
    x = data.mean(axis=1)
  if x.size == 0:
    raise ValueError(f'audio file {path} has no samples')
  return resample(x, int(rate), sample_rate)


def _check_rate(rate, name: str) -> int:
  if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate < 1:
    raise ValueError(f'{name} must be a positive int (Hz), got {rate!r}')
  return int(rate)


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
