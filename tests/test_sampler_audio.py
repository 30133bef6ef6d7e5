"""Audio through Gemma4Sampler in the default tests: the official sampler's tokens
recorded by tests/oracle/test_sampler_audio_oracle.py (tiny E2B with a tiny conformer),
replayed exactly; batches (flat and per-prompt clip lists, prompts without audio);
clips past 30 s; other sample rates; few compiled shapes; errors before any compute."""

import json
import os
import re

import numpy as np
import pytest

import gemma4
from gemma4 import audio, multimodal
from tests.test_sampler_images import IMG_A, _sampler, tok  # noqa: F401

CLIP_A = (np.random.default_rng(7).standard_normal(16000) * 0.3).astype(np.float32)
CLIP_B = (np.random.default_rng(8).standard_normal(16000) * 0.3).astype(np.float32)
CLIP_C = (np.random.default_rng(9).standard_normal(8200) * 0.3).astype(np.float32)


@pytest.fixture(scope='module')
def s(tok):  # noqa: F811
  return _sampler('e2b', tok)


def test_audio_tokens_equal_official_golden(s):
  with open(os.path.join(os.path.dirname(__file__), 'golden',
                         'sampler_audio_tiny_gemma4_e2b.json')) as f:
    want = json.load(f)
  assert s.sample('Hear: <|audio|> What is it?', audio=[CLIP_A],
                  return_state=True).tokens.tolist() == want['one']
  assert s.sample('First <|audio|> then <|audio|>. Same?', audio=[CLIP_A, CLIP_B],
                  return_state=True).tokens.tolist() == want['two']
  assert s.sample('See <|image|> and hear <|audio|>.', images=[IMG_A], audio=[CLIP_C],
                  return_state=True).tokens.tolist() == want['image_and_audio']
  t1 = s.sample('Hello there.', return_state=True)
  assert t1.tokens.tolist() == want['turn1']
  t2 = s.sample(' Now hear <|audio|> and say.', audio=[CLIP_C], last_state=t1.state,
                return_state=True)
  assert t2.tokens.tolist() == want['turn2']


def test_batch_rows_equal_each_prompt_alone(s):
  prompts = ['A <|audio|> b', 'no audio here', 'C <|audio|> and <|audio|> <|image|>']
  padded = np.concatenate([CLIP_C, np.ones(3000, np.float32)])
  flat = s.sample(prompts, audio=[CLIP_A, padded, CLIP_B], audio_lengths=[16000, 8200, 16000],
                  images=[IMG_A], return_state=True)
  nested = s.sample(prompts, audio=[[CLIP_A], [], [padded, CLIP_B]],
                    audio_lengths=[[16000], [], [8200, 16000]], images=[[], [], [IMG_A]],
                    return_state=True)
  np.testing.assert_array_equal(flat.tokens, nested.tokens)
  for i, (p, clips, imgs) in enumerate(zip(prompts, [[CLIP_A], [], [CLIP_C, CLIP_B]],
                                           [None, None, [IMG_A]])):
    alone = s.sample(p, audio=clips or None, images=imgs, return_state=True)
    np.testing.assert_array_equal(alone.tokens, flat.tokens[i])


def test_long_clip_is_split_not_cut(tok):  # noqa: F811
  """audio_seq_length=25 makes segments of 1 s: a 2.5 s clip becomes three blocks whose
  soft tokens are each segment's own encoding."""
  s = _sampler('e2b', tok, audio_seq_length=25)
  clip = (np.random.default_rng(3).standard_normal(40000) * 0.3).astype(np.float32)
  segs = audio.prepare(clip, max_segment=16000)
  assert [len(x.samples) for x in segs] == [13334, 13333, 13333]
  out = s.sample('Hear <|audio|>.', audio=[clip], return_state=True)
  assert int(out.state.cache.next_pos[0]) > 3 * (2 + segs[0].num_soft_tokens)
  joined = '<|audio|>' * 3
  parts = s.sample(f'Hear {joined}.', audio=[x.samples for x in segs], return_state=True)
  np.testing.assert_array_equal(out.tokens, parts.tokens)


def test_other_sample_rates_are_resampled(tok):  # noqa: F811
  s8 = _sampler('e2b', tok, audio_sample_rate=8000)
  s16 = _sampler('e2b', tok)
  clip8 = (np.random.default_rng(4).standard_normal(8000) * 0.3).astype(np.float32)
  a = s8.sample('Hear <|audio|>.', audio=[clip8], return_state=True)
  b = s16.sample('Hear <|audio|>.', audio=[audio.resample(clip8, 8000)], return_state=True)
  np.testing.assert_array_equal(a.tokens, b.tokens)


def test_few_compiled_shapes_across_clip_lengths(s):
  s.sample('x <|audio|>', audio=[CLIP_A], max_new_tokens=1)
  before = multimodal.encode_audio._cache_size()
  for n in (400, 3000, 9999, 12345, 15999):
    s.sample('x <|audio|>', audio=[CLIP_A[:n]], max_new_tokens=1)
  assert multimodal.encode_audio._cache_size() == before  # all in the 1 s bucket
  s.sample('x <|audio|> <|audio|>', audio=[CLIP_A, CLIP_B[:5000]], max_new_tokens=1)
  s.sample('x <|audio|>', audio=[np.tile(CLIP_A, 3)], max_new_tokens=1)
  assert multimodal.encode_audio._cache_size() - before <= 2  # two clips; the 3 s bucket


def test_audio_errors_before_compute(s, tok):  # noqa: F811
  with pytest.raises(ValueError, match=re.escape('prompt 0 has 2 <|audio|> placeholders but 1 audio clip given')):
    s.sample('<|audio|> <|audio|>', audio=[CLIP_A])
  with pytest.raises(ValueError, match=re.escape('prompt 1 has 1 <|audio|> placeholder but 0 audio clips')):
    s.sample(['<|audio|>', '<|audio|>'], audio=[[CLIP_A], []])
  with pytest.raises(ValueError, match='no audio was given'):
    s.sample('<|audio|>')
  with pytest.raises(ValueError, match=r'audio_lengths\[0\] is 20000, outside \[0, 16000\]'):
    s.sample('<|audio|>', audio=[CLIP_A], audio_lengths=[20000])
  with pytest.raises(ValueError, match=r'audio_lengths\[0\] is -5'):
    s.sample('<|audio|>', audio=[CLIP_A], audio_lengths=[-5])
  with pytest.raises(ValueError, match='audio clip 0 is empty'):
    s.sample('<|audio|>', audio=[np.zeros(0, np.float32)])
  with pytest.raises(ValueError, match='NaN or infinite'):
    s.sample('<|audio|>', audio=[np.full(1000, np.nan, np.float32)])
  with pytest.raises(ValueError, match='audio_lengths has 2 entries but 1 audio'):
    s.sample('<|audio|>', audio=[CLIP_A], audio_lengths=[100, 200])
  with pytest.raises(ValueError, match='audio_lengths was given without audio'):
    s.sample('hi', audio_lengths=[100])
  big = gemma4.models.tiny('31b', text_only=False)
  no_audio = gemma4.Gemma4Sampler(model=big, params=big.init(0), tokenizer=tok)
  with pytest.raises(ValueError, match="model 'tiny_gemma4_31b' cannot take it: it has no audio encoder"):
    no_audio.sample('<|audio|>', audio=[CLIP_A])
  text_only = gemma4.Gemma4Sampler(model=gemma4.models.tiny('e2b'),
                                   params=gemma4.models.tiny('e2b').init(0), tokenizer=tok)
  with pytest.raises(ValueError, match='built text_only'):
    text_only.sample('<|audio|>', audio=[CLIP_A])
