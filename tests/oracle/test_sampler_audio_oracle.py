"""Audio through gemma4.Gemma4Sampler against the official gm.text.Gemma4Sampler, live.

Tiny E2B decoder with a tiny conformer (2 layers of width 64, output width 48) and the
tiny vision encoder of tests/oracle/test_sampler_images_oracle.py, same float32 params
(the audio subtree re-keyed as the official 'conformer/stacked_layers_i'), same test
tokenizer. Clip lengths are ones the official float32 frame count gets right, and two
clips in one call have the same length (the official pads clips to the longest and lets
the padding into its second subsampling convolution; gemma4 does not).
Bounds: identical tokens and text, per-step logits within 1e-4 for one clip, two clips
in one prompt, a clip and an image in one prompt; a clip in a later turn equals the
official sampler on the whole history as one prompt (identical tokens, per-step logits
within 1e-4). Another clip moves the first step's logits by more than 1e-3.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from gemma import gm
from gemma.gm.nn.gemma4.audio import _modules as audio_modules

import gemma4
from tests.oracle import official
from tests.oracle.test_audio_oracle import TINY, official_frames, to_official
from tests.oracle.test_sampler_images_oracle import (  # noqa: F401
    IMG_A, SETTINGS, _Pair, _check, later_turn_equals_whole_history, tok_path)
from tests.oracle.test_sampler_oracle import _RECORDED, Recording

pytestmark = pytest.mark.oracle

CLIP_A = (np.random.default_rng(7).standard_normal(16000) * 0.3).astype(np.float32)  # 1 s
CLIP_B = (np.random.default_rng(8).standard_normal(16000) * 0.3).astype(np.float32)
CLIP_C = (np.random.default_rng(9).standard_normal(8200) * 0.3).astype(np.float32)
_GOLDEN: dict = {}


class _AudioPair(_Pair):
  """The image pair of E2B with the tiny conformer added on both sides."""

  def __init__(self, tok_path):
    super().__init__('gemma4_e2b', tok_path)
    assert self.ours_model.has_audio and self.ours_model.config.audio.model_dims == 64
    cfg = dataclasses.replace(self.off_model.config,
                              audio_encoder=audio_modules.ConformerConfig(**TINY))
    self.off_model = official.OFFICIAL['gemma4_e2b'](config=cfg, text_only=False,
                                                     dtype=jnp.float32)
    off_params = dict(self.params)
    off_params['audio_encoder'] = to_official(gemma4.params.flatten(self.params['audio_encoder']))
    self.off_params = off_params
    self.off = gm.text.Gemma4Sampler(model=self.off_model, params=off_params,
                                     tokenizer=gm.text.Gemma4Tokenizer(path=str(tok_path)),
                                     sampling=Recording(), **SETTINGS)

  def both(self, prompt, images=None, audio=None):
    _RECORDED.clear()
    a = self.off.sample(prompt, images=images, audio=audio, return_state=True)
    theirs, _RECORDED[:] = list(_RECORDED), []
    b = self.ours.sample(prompt, images=images, audio=audio, return_state=True)
    return a, b, theirs, list(_RECORDED)


def b_tokens(rest):
  return rest[0].tokens


@pytest.fixture(scope='module')
def pair(tok_path):  # noqa: F811
  return _AudioPair(tok_path)


def test_clip_lengths_are_counted_exactly_by_the_official():
  for clip in (CLIP_A, CLIP_C):
    assert official_frames(len(clip)) == (len(clip) - 321) // 160 + 1


def test_one_clip_identical_within_1e4(pair):
  a, *rest = pair.both('Hear: <|audio|> What is it?', audio=[CLIP_A])
  _check(a, *rest)
  _GOLDEN['one'] = np.asarray(a.tokens).tolist()
  # gemma4 also takes the official tree as is ('conformer/stacked_layers_i' keys).
  same = gemma4.Gemma4Sampler(model=pair.ours_model, params=pair.off_params,
                              tokenizer=pair.ours.tokenizer, **SETTINGS)
  np.testing.assert_array_equal(same.sample('Hear: <|audio|> What is it?', audio=[CLIP_A],
                                            return_state=True).tokens, b_tokens(rest))
  _RECORDED.clear()
  pair.ours.sample('Hear: <|audio|> What is it?', audio=[CLIP_B])
  assert float(np.max(np.abs(_RECORDED[0] - rest[2][0]))) > 1e-3  # the clip matters


def test_two_clips_in_one_prompt_identical_within_1e4(pair):
  a, *rest = pair.both('First <|audio|> then <|audio|>. Same?', audio=[CLIP_A, CLIP_B])
  _check(a, *rest)
  _GOLDEN['two'] = np.asarray(a.tokens).tolist()


def test_clip_and_image_in_one_prompt_identical_within_1e4(pair):
  a, *rest = pair.both('See <|image|> and hear <|audio|>.', images=[IMG_A], audio=[CLIP_C])
  _check(a, *rest)
  _GOLDEN['image_and_audio'] = np.asarray(a.tokens).tolist()


def test_clip_in_a_later_turn_equals_official_on_the_whole_history(pair):
  out1, whole = later_turn_equals_whole_history(pair, 'Hello there.', ' Now hear <|audio|> and say.',
                                                second={'audio': [CLIP_C]})
  _GOLDEN['turn1'] = np.asarray(out1.tokens).tolist()
  _GOLDEN['turn2'] = np.asarray(whole.tokens).tolist()


def test_write_audio_golden(pair):
  path = os.path.join(os.path.dirname(__file__), '..', 'golden', 'sampler_audio_tiny_gemma4_e2b.json')
  if os.environ.get('GEMMA4_WRITE_GOLDEN') == '1':
    with open(path, 'w') as f:
      json.dump(_GOLDEN, f)
  with open(path) as f:
    assert json.load(f) == _GOLDEN
