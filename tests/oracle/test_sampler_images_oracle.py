"""Images through gemma4.Gemma4Sampler against the official gm.text.Gemma4Sampler, live.

Tiny decoders of E2B (clipped-linear encoder, causal soft tokens) and 31B (standardized
encoder, bidirectional soft tokens on local layers), each with a tiny encoder of its
variant whose `output_length` equals the budget (70; the official encoder is right
there), same float32 params, same test tokenizer. Images fill the patch budget exactly
(336x480 and 480x336: 630 patches, 70 soft tokens), as the official encoder lets
padding patches leak into attention (tests/oracle/test_vision_oracle.py).
Bounds: identical tokens and text, per-step logits within 1e-4; a later turn with an
image, and a text turn after an image turn, equal the official sampler on the whole
history as one prompt (identical tokens, per-step logits within 1e-4). Another image
moves the first step's logits by more than 1e-3.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gemma import gm
from gemma.gm.nn.gemma4.vision import _encoder

import gemma4
from tests import tokenizer_util
from tests.oracle import official
from tests.oracle.test_sampler_oracle import _RECORDED, Recording

pytestmark = pytest.mark.oracle
official.use_head_router()

BUDGET = 70
SETTINGS = dict(cache_length=512, max_out_length=8, pad_length=(128, 256, 512),
                max_soft_tokens=BUDGET)
IMG_A = np.random.default_rng(5).integers(0, 256, (336, 480, 3), dtype=np.uint8)
IMG_B = np.random.default_rng(6).integers(0, 256, (480, 336, 3), dtype=np.uint8)


class _Pair:
  def __init__(self, preset, tok_path):
    self.ours_model = gemma4.models.tiny(preset, text_only=False)
    v = self.ours_model.config.vision
    enc = _encoder.VisionEncoder(
        d_model=v.d_model, num_layers=v.num_layers, num_heads=v.num_heads,
        ffw_hidden=v.ffw_hidden, pos_emb_shape_yx=v.pos_emb_shape_yx, output_length=BUDGET,
        use_clipped_linears=v.use_clipped_linears, standardize_embeddings=v.standardize_embeddings)
    cfg = dataclasses.replace(official.tiny_official_config(preset), vision_encoder=enc)
    self.off_model = official.OFFICIAL[preset](config=cfg, text_only=False, dtype=jnp.float32)
    self.params = self.ours_model.init(11)
    rng = np.random.default_rng(3)  # real clip bounds instead of +-inf
    self.params = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.full(x.shape, (-1.0 if 'min' in jax.tree_util.keystr(p) else 1.0) * 4.0)
        if 'clip_' in jax.tree_util.keystr(p) else x, self.params)
    del rng
    self.off = gm.text.Gemma4Sampler(model=self.off_model, params=self.params,
                                     tokenizer=gm.text.Gemma4Tokenizer(path=str(tok_path)),
                                     sampling=Recording(), **SETTINGS)
    self.ours = gemma4.Gemma4Sampler(model=self.ours_model, params=self.params,
                                     tokenizer=gemma4.Gemma4Tokenizer(tok_path),
                                     sampling=Recording(), **SETTINGS)

  def both(self, prompt, images):
    _RECORDED.clear()
    a = self.off.sample(prompt, images=images, return_state=True)
    theirs, _RECORDED[:] = list(_RECORDED), []
    b = self.ours.sample(prompt, images=images, return_state=True)
    mine = list(_RECORDED)
    return a, b, theirs, mine


_PAIRS: dict = {}
_GOLDEN: dict = {}


@pytest.fixture(scope='module')
def tok_path(tmp_path_factory):
  return tokenizer_util.build(tmp_path_factory.mktemp('tok') / 'gemma4_test.model')


@pytest.fixture(params=['gemma4_e2b', 'gemma4_31b'])
def pair(request, tok_path):
  if request.param not in _PAIRS:
    _PAIRS[request.param] = _Pair(request.param, tok_path)
  return _PAIRS[request.param]


def _check(a, b, theirs, mine):
  np.testing.assert_array_equal(np.asarray(a.tokens), b.tokens)
  assert a.text == b.text
  assert len(theirs) == len(mine) > 0
  worst = max(float(np.max(np.abs(x - y))) for x, y in zip(theirs, mine))
  assert worst <= 1e-4, worst


def _record(pair, name, a):
  _GOLDEN.setdefault(pair.ours_model.name, {})[name] = np.asarray(a.tokens).tolist()


def test_one_image_identical_within_1e4(pair):
  a, b, theirs, mine = pair.both('Look: <|image|> What is it?', [IMG_A])
  _check(a, b, theirs, mine)
  _record(pair, 'one', a)
  _RECORDED.clear()
  pair.ours.sample('Look: <|image|> What is it?', images=[IMG_B])
  assert float(np.max(np.abs(_RECORDED[0] - mine[0]))) > 1e-3  # the image matters


def test_two_images_in_one_prompt_identical_within_1e4(pair):
  a, *rest = pair.both('First <|image|> then <|image|>. Compare.', [IMG_A, IMG_B])
  _check(a, *rest)
  _record(pair, 'two', a)


def later_turn_equals_whole_history(pair, t1, t2, first=None, second=None):
  """Turn 1 (media `first`), then turn 2 (media `second`) through last_state, against
  the official sampler on the whole history as one prompt: identical tokens, per-step
  logits within 1e-4. first/second: sample() keyword arguments. Returns both turns."""
  out1 = pair.ours.sample(t1, return_state=True, **(first or {}))
  _RECORDED.clear()
  out2 = pair.ours.sample(t2, last_state=out1.state, return_state=True, **(second or {}))
  mine = list(_RECORDED)
  history = t1 + pair.ours.tokenizer.decode(out1.tokens[:np.count_nonzero(out1.tokens) - 1]) + t2
  media = {k: (first or {}).get(k, []) + (second or {}).get(k, [])
           for k in set(first or {}) | set(second or {})}
  _RECORDED.clear()
  whole = pair.off.sample(history, return_state=True, **media)
  theirs = list(_RECORDED)
  np.testing.assert_array_equal(np.asarray(whole.tokens), out2.tokens)
  worst = max(float(np.max(np.abs(x - y))) for x, y in zip(theirs, mine))
  assert worst <= 1e-4, worst
  return out1, whole


def test_image_in_a_later_turn_equals_official_on_the_whole_history(pair):
  """Turn 1 text, turn 2 with an image through last_state (the official last_state path
  fails for 31B), against the official sampler on the whole history as one prompt."""
  out1, whole = later_turn_equals_whole_history(pair, 'Hello there.', ' Now see <|image|> and say.',
                                                second={'images': [IMG_A]})
  _record(pair, 'turn1', out1)
  _record(pair, 'turn2', whole)


def test_text_after_an_image_turn_equals_official_on_the_whole_history(pair):
  """Turn 1 with an image, turn 2 text through last_state (the image stays in the
  cache), against the official sampler on the whole history as one prompt."""
  out1, whole = later_turn_equals_whole_history(pair, 'Look: <|image|> What is it?',
                                                ' Tell me more.', first={'images': [IMG_B]})
  _record(pair, 'image_turn1', out1)
  _record(pair, 'image_turn2', whole)


def test_write_images_golden(pair):
  path = os.path.join(os.path.dirname(__file__), '..', 'golden', f'sampler_images_{pair.ours_model.name}.json')
  if os.environ.get('GEMMA4_WRITE_GOLDEN') == '1':
    with open(path, 'w') as f:
      json.dump(_GOLDEN[pair.ours_model.name], f)
  with open(path) as f:
    assert json.load(f) == _GOLDEN[pair.ours_model.name]
