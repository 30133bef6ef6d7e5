"""Long media stays bounded. Long prompts are prefilled in chunks (PREFILL_CHUNK tokens,
shrunk here to a few so that tiny prompts cross several chunks) and many images or audio
segments are encoded in batches (MAX_ENCODER_BATCH, shrunk to 2): the sampled tokens
equal the one-pass results exactly and their log-probabilities within 1e-5 (float32;
1e-4 for encoder batches, whose shapes change the encoders' rounding), for batches of
different lengths, later turns, images that attend both ways (31B, never split) and
audio. Peak memory is measured in bench/long_audio.py."""

import numpy as np
import pytest

import gemma4
from gemma4 import multimodal
from gemma4 import sampler as gsampler
from gemma4.sampler import chunk_bounds, image_spans
from tests.test_sampler_audio import CLIP_A, CLIP_C
from tests.test_sampler_images import IMG_A, IMG_B, _sampler, tok  # noqa: F401


def test_chunk_bounds_exact():
  assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
  assert chunk_bounds(4, 4) == [(0, 4)]
  # A span across a boundary moves it back to the span's start ...
  assert chunk_bounds(12, 4, [(3, 6)]) == [(0, 3), (3, 7), (7, 11), (11, 12)]
  # ... or past the span's end when the span starts the chunk (a chunk longer than 4).
  assert chunk_bounds(12, 4, [(0, 6)]) == [(0, 6), (6, 10), (10, 12)]
  # Overlapping spans of two rows are kept whole together.
  assert chunk_bounds(12, 4, [(2, 5), (4, 7)]) == [(0, 2), (2, 7), (7, 11), (11, 12)]
  slots = np.array([[5, -2, -2, 7, -2, 0], [-2, -2, -2, 1, 1, 1]])
  assert image_spans(slots) == [(1, 3), (4, 5), (0, 3)]


def _both(monkeypatch, chunk, run, name='PREFILL_CHUNK', module=gsampler):
  """run() with prefill in one pass, then in chunks of `chunk` tokens (or with another
  module constant set to `chunk`)."""
  whole = run()
  monkeypatch.setattr(module, name, chunk)
  return whole, run()


def _same(a, b, atol=1e-5):
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_allclose(a.logprobs, b.logprobs, atol=atol, rtol=0)
  assert a.text == b.text


def test_text_batch_and_later_turn_in_chunks(monkeypatch, tok):  # noqa: F811
  s = _sampler('e2b', tok, cache_length=128, pad_length=(32, 64))
  prompts = ['Hello world', 'The quick brown fox jumps over the lazy dog and runs far away',
             'Paris is the capital of France and also a large city on the Seine']
  def run():
    first = s.sample(prompts, return_state=True)
    again = [s.sample([' and then'] * 3, last_state=first.state, return_state=True)
             for _ in range(2)]
    return first, again
  (whole, w2), (chunked, c2) = _both(monkeypatch, 8, run)
  assert max(len(tok.encode(p)) for p in prompts) > 8  # every prompt crosses chunks
  _same(whole, chunked)
  _same(w2[0], c2[0])
  _same(c2[0], c2[1])  # the caller's last_state is intact after a chunked later turn


def test_images_that_attend_both_ways_are_never_split(monkeypatch, tok):  # noqa: F811
  s = _sampler('31b', tok)
  assert s.model.config.bidirectional_vision
  prompts = ['A <|image|> b', 'some text first, then C <|image|> and <|image|>']
  run = lambda: s.sample(prompts, images=[[IMG_A], [IMG_B, IMG_A]], return_state=True)
  whole, chunked = _both(monkeypatch, 16, run)  # images of 63-70 soft tokens > 16
  _same(whole, chunked)


def test_audio_and_image_in_chunks(monkeypatch, tok):  # noqa: F811
  s = _sampler('e2b', tok)
  run = lambda: s.sample('See <|image|> and hear <|audio|> then <|audio|>.', images=[IMG_A],
                         audio=[CLIP_A, CLIP_C], return_state=True)
  whole, chunked = _both(monkeypatch, 32, run)
  _same(whole, chunked)


def test_stream_equals_sample_in_chunks(monkeypatch, tok):  # noqa: F811
  monkeypatch.setattr(gsampler, 'PREFILL_CHUNK', 8)
  s = _sampler('e2b', tok, cache_length=128, pad_length=(32, 64))
  prompt = 'The quick brown fox jumps over the lazy dog and runs far away'
  assert ''.join(s.stream(prompt)) == s.sample(prompt)


def test_many_images_and_segments_are_encoded_in_batches(monkeypatch, tok):  # noqa: F811
  """Tokens identical; log-probabilities within 1e-4, not 1e-5: the encoders' float32
  rounding changes with the batch shape (2 images padded to 2, not 4; measured 1.2e-5)."""
  s = _sampler('e2b', tok, audio_seq_length=25)  # 1 s segments: a 2.5 s clip makes 3
  clip = np.concatenate([CLIP_A, CLIP_A, CLIP_A[:8000]])
  run = lambda: s.sample(['A <|image|> <|image|> <|audio|>', 'B <|image|>'],
                         images=[[IMG_A, IMG_B], [IMG_A]], audio=[[clip], []],
                         return_state=True)
  whole, batched = _both(monkeypatch, 2, run, 'MAX_ENCODER_BATCH', multimodal)
  _same(whole, batched, atol=1e-4)


def test_every_check_runs_before_resampling_and_resizing(monkeypatch, tok):  # noqa: F811
  """A call that cannot fit the cache (or has a bad clip after a good one) is refused
  before any clip is resampled or image resized."""
  from gemma4 import audio, images
  calls = []
  monkeypatch.setattr(audio, 'resample', lambda *a, **k: calls.append('resample'))
  monkeypatch.setattr(images, 'preprocess', lambda *a, **k: calls.append('preprocess'))
  s = _sampler('e2b', tok, cache_length=64, audio_sample_rate=44100)
  with pytest.raises(ValueError, match='needs [0-9]+ cache positions .* but cache_length is 64'):
    s.sample('<|image|> <|audio|>', images=[IMG_A], audio=[np.zeros(44100, np.float32)])
  with pytest.raises(ValueError, match='audio clip 1 has 1 NaN or infinite sample'):
    s.sample('<|audio|> <|audio|>', audio=[np.zeros(4410, np.float32),
                                           np.array([0.0] * 4000 + [np.nan], np.float32)])
  assert calls == []
