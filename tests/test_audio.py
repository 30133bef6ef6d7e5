"""Audio on the host and the front end: token counts against the encoder's real output
over a sweep of lengths, HF transformers' feature extractor, resampling, WAV reading,
segments past 30 s, and clear errors."""

import os
import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from gemma4 import audio, conformer, media
from gemma4.tokenizer import SpecialTokens


@pytest.fixture(scope='module')
def tiny_audio():
  model = gemma4.models.tiny('e2b', text_only=False)
  return model.config.audio, model.init(0)['audio_encoder']


def test_soft_token_count_is_what_the_encoder_outputs(tiny_audio):
  """A sweep of lengths in one padded batch: the encoder's valid output rows equal
  `soft_token_count` (the official formula) for every length, each mel-frame residue
  mod 4 included. HF's formula (a left pad of half a frame: one more mel frame) gives
  one token more whenever the frame count is 0 mod 4, which this encoder does not
  output."""
  a, params = tiny_audio
  lengths = [321, 480, 481, 641, 801, 961, 1121, 1283, 1600, 2247, 2260, 5121, 5128,
             8000, 8200, 8361, 8521, 15999, 16000, 16161, 23456, 31999, 32000]
  waves = np.random.default_rng(0).standard_normal((len(lengths), 32000)).astype(np.float32) * .1
  _, valid = jax.jit(conformer.encode, static_argnums=1)(params, a, jnp.asarray(waves),
                                                         jnp.asarray(lengths))
  got = np.asarray(valid.sum(axis=1)).tolist()
  assert got == [audio.soft_token_count(n) for n in lengths]
  hf = [-(-(-(-((n + 160 - 321) // 160 + 1) // 2)) // 2) for n in lengths]
  assert any(h != g for h, g in zip(hf, got))  # the two formulas do differ
  frames = [(n - 321) // 160 + 1 for n in lengths]
  assert {f % 4 for f in frames} == {0, 1, 2, 3}


def test_features_equal_hf_extractor_with_the_official_window_within_5e5():
  """HF transformers' Gemma 4 feature extractor differs from the official front end in
  two ways: it prepends half a frame of zeros (so its frame i + 1 is the official frame
  i) and uses the periodic Hann window 0.5 - 0.5 cos(2 pi n / 320) instead of the
  official 0.5 - 0.5 cos(2 pi (n + 0.5) / 320). With its window set to the official one,
  its frames 1.. equal gemma4's within 5e-5 (HF computes in float64, gemma4 and the
  official in float32, and the log amplifies it where the mel energy is near 0.001;
  gemma4 equals the official within 1e-5), and its mask counts one frame more."""
  transformers = pytest.importorskip('transformers')
  fe = transformers.Gemma4AudioFeatureExtractor()
  fe.window = conformer.window()
  for n, seed in ((16000, 0), (8200, 1), (12345, 2)):
    clip = (np.random.default_rng(seed).standard_normal(n) * 0.3).astype(np.float32)
    out = fe([clip], sampling_rate=16000, return_tensors='np', pad_to_multiple_of=None)
    theirs, mask = out['input_features'][0], out['input_features_mask'][0]
    ours, valid = conformer.log_mel(jnp.asarray(clip[None]), jnp.asarray([n]))
    ours, k = np.asarray(ours[0]), int(valid.sum())
    assert int(mask.sum()) == k + 1
    assert np.abs(theirs[1:k + 1] - ours[:k]).max() <= 5e-5
  fe_default = transformers.Gemma4AudioFeatureExtractor()
  theirs = fe_default([clip], sampling_rate=16000, return_tensors='np')['input_features'][0]
  assert np.abs(theirs[1:k + 1] - ours[:k]).max() > 1e-2  # the window does matter


def test_long_clips_split_into_equal_segments_of_at_most_30_s():
  n = 70 * 16000 + 5
  sizes = audio.segments(n)
  assert len(sizes) == 3 and sum(sizes) == n and max(sizes) <= 480000
  assert max(sizes) - min(sizes) <= 1
  assert audio.segments(480000) == [480000] and audio.soft_token_count(480000) == 750
  segs = audio.prepare(np.zeros(n, np.float32))
  ids = media.expand_audio_tokens([2, SpecialTokens.AUDIO_PLACEHOLDER, 7], [[s.num_soft_tokens for s in segs]])
  blocks = [i for i, t in enumerate(ids) if t == 256000]
  assert len(blocks) == 3 and ids.count(media.AUDIO_SLOT) == sum(s.num_soft_tokens for s in segs)
  assert ids[0] == 2 and ids[-1] == 7 and ids.count(258883) == 3


def test_int16_stereo_and_lengths():
  rng = np.random.default_rng(0)
  x = rng.integers(-30000, 30000, (4000, 2), dtype=np.int16)
  mono = audio.as_waveform(x)
  np.testing.assert_allclose(mono, x.astype(np.float32).mean(axis=1) / 32768.0, rtol=1e-6)
  np.testing.assert_array_equal(audio.as_waveform(x.T), mono)  # [channels, samples]
  segs = audio.prepare(np.concatenate([mono, np.zeros(999, np.float32)]), length=4000)
  assert segs[0].samples.shape == (4000,) and np.array_equal(segs[0].samples, mono)


@pytest.mark.parametrize('clip, kw, message', [
    (np.zeros(0, np.float32), {}, 'audio clip 0 is empty'),
    (np.array([0.1] * 799 + [np.nan], np.float32), {}, 'has 1 NaN or infinite sample$'),
    (np.array([np.inf] * 400, np.float32), {}, '400 NaN or infinite samples'),
    (np.zeros(800, np.int32), {}, 'dtype must be float32, float64 or int16, got int32'),
    (np.full(800, 300.0, np.float32), {}, 'peak of 300'),
    (np.zeros((800, 20), np.float32), {}, 'at most 8 channels'),
    (np.zeros(800, np.float32), {'length': 900}, r'audio_lengths\[0\] is 900, outside \[0, 800\]'),
    (np.zeros(800, np.float32), {'length': -1}, r'audio_lengths\[0\] is -1'),
    (np.zeros(300, np.float32), {}, 'has 300 valid samples at 16 kHz; at least 321'),
])
def test_bad_clips_raise_clear_errors(clip, kw, message):
  with pytest.raises(ValueError, match=message):
    audio.prepare(clip, **kw)


def test_resample_within_2e_4_of_the_direct_windowed_sinc_it_replaced():
  """tests/golden/resample.npz holds the output of the direct (per-tap) windowed-sinc
  resampler that scipy's polyphase filter replaced (gemma4 before 2026-12), on 0.25 s of
  tones and noise: 44.1 kHz and 22.05 kHz to 16 kHz, every sample within 2e-4 (measured
  1.5e-5 and 1.4e-4), lengths equal (ceil(n * 16000 / rate))."""
  g = np.load(os.path.join(os.path.dirname(__file__), 'golden', 'resample.npz'))
  for rate, want, x in ((44100, g['y_44100'], g['x']), (22050, g['y_22050'], g['x'][:8000])):
    got = audio.resample(x, rate)
    assert got.shape == want.shape == (audio.resampled_length(x.shape[0], rate),)
    assert np.abs(got - want).max() <= 2e-4


def test_resample_lengths_follow_resampled_length():
  for rate in (8000, 11025, 22050, 44100, 48000, 96000):
    for n in (1, 7, 1000, 44101):
      assert audio.resample(np.zeros(n, np.float32), rate).shape == (audio.resampled_length(n, rate),)
  with pytest.raises(ValueError, match='rate must be a positive int'):
    audio.resample(np.zeros(10), 0)


def test_resample_keeps_a_tone_and_load_reads_wav(tmp_path):
  rate = 44100
  t = np.arange(rate) / rate
  tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
  out = audio.resample(tone, rate)
  assert out.shape == (16000,)
  want = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
  assert np.abs(out[200:-200] - want[200:-200]).max() < 1e-3
  # A tone above the new Nyquist (9 kHz) is filtered out, not aliased to 7 kHz.
  high = audio.resample(0.5 * np.sin(2 * np.pi * 9000 * t), rate)
  assert np.abs(high[200:-200]).max() < 1e-3
  # A stereo int16 WAV at 22.05 kHz: mixed to mono, resampled.
  pcm = (np.stack([0.5 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)] * 2, 1)
         * 32767).astype('<i2')
  with wave.open(str(tmp_path / 'a.wav'), 'wb') as f:
    f.setnchannels(2)
    f.setsampwidth(2)
    f.setframerate(22050)
    f.writeframes(pcm.tobytes())
  got = audio.load(tmp_path / 'a.wav')
  want = audio.resample(pcm.astype(np.float32).mean(1) / 32768.0, 22050)
  assert got.shape == (16000,) and np.abs(got - want).max() < 1e-6
  with pytest.raises(FileNotFoundError, match='audio file not found'):
    audio.load(tmp_path / 'missing.wav')
  (tmp_path / 'bad.wav').write_bytes(b'not a wav file at all')
  with pytest.raises(ValueError, match='bad.wav'):
    audio.load(tmp_path / 'bad.wav')
