"""Images through Gemma4Sampler in the default tests: the official sampler's tokens
recorded by tests/oracle/test_sampler_images_oracle.py (tiny E2B and 31B with tiny
encoders, budget 70), replayed exactly; batches (flat and per-prompt image lists,
prompts without images); errors before any compute."""

import json
import os

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from gemma4 import multimodal
from tests import tokenizer_util

IMG_A = np.random.default_rng(5).integers(0, 256, (336, 480, 3), dtype=np.uint8)
IMG_B = np.random.default_rng(6).integers(0, 256, (480, 336, 3), dtype=np.uint8)
SETTINGS = dict(cache_length=512, max_out_length=8, pad_length=(128, 256, 512),
                max_soft_tokens=70)


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  return gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path_factory.mktemp('tok') / 't.model'))


def _sampler(preset, tok, **kw):
  model = gemma4.models.tiny(preset, text_only=False)
  params = model.init(11)
  params = jax.tree_util.tree_map_with_path(  # the oracle test's clip bounds
      lambda p, x: jnp.full(x.shape, (-1.0 if 'min' in jax.tree_util.keystr(p) else 1.0) * 4.0)
      if 'clip_' in jax.tree_util.keystr(p) else x, params)
  return gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                              sampling=gemma4.sampling.Greedy(), **{**SETTINGS, **kw})


@pytest.mark.parametrize('preset', ['e2b', '31b'])
def test_image_tokens_equal_official_golden(preset, tok):
  with open(os.path.join(os.path.dirname(__file__), 'golden',
                         f'sampler_images_tiny_gemma4_{preset}.json')) as f:
    want = json.load(f)
  s = _sampler(preset, tok)
  one = s.sample('Look: <|image|> What is it?', images=[IMG_A], return_state=True)
  assert one.tokens.tolist() == want['one']
  two = s.sample('First <|image|> then <|image|>. Compare.', images=[IMG_A, IMG_B],
                 return_state=True)
  assert two.tokens.tolist() == want['two']
  t1 = s.sample('Hello there.', return_state=True)
  assert t1.tokens.tolist() == want['turn1']
  t2 = s.sample(' Now see <|image|> and say.', images=[IMG_A], last_state=t1.state,
                return_state=True)
  assert t2.tokens.tolist() == want['turn2']
  i1 = s.sample('Look: <|image|> What is it?', images=[IMG_B], return_state=True)
  assert i1.tokens.tolist() == want['image_turn1']
  i2 = s.sample(' Tell me more.', last_state=i1.state, return_state=True)
  assert i2.tokens.tolist() == want['image_turn2']


def test_batch_rows_equal_each_prompt_alone(tok):
  s = _sampler('31b', tok)
  prompts = ['A <|image|> b', 'no image here', 'C <|image|> and <|image|>']
  flat = s.sample(prompts, images=[IMG_A, IMG_B, IMG_A], return_state=True)
  nested = s.sample(prompts, images=[[IMG_A], [], [IMG_B, IMG_A]], return_state=True)
  np.testing.assert_array_equal(flat.tokens, nested.tokens)
  for i, (p, imgs) in enumerate(zip(prompts, [[IMG_A], [], [IMG_B, IMG_A]])):
    alone = s.sample(p, images=imgs or None, return_state=True)
    np.testing.assert_array_equal(alone.tokens, flat.tokens[i])


def test_few_compiled_shapes_across_image_sizes(tok):
  s = _sampler('e2b', tok)
  sizes = [(336, 480), (100, 700), (640, 90), (50, 50), (480, 336)]
  s.sample('x <|image|>', images=[np.zeros(sizes[0] + (3,), np.uint8)], max_new_tokens=1)
  before = multimodal.encode_images._cache_size()
  for h, w in sizes[1:]:
    s.sample('x <|image|>', images=[np.zeros((h, w, 3), np.uint8)], max_new_tokens=1)
  s.sample('x <|image|> <|image|>', images=[IMG_A, IMG_B], max_new_tokens=1)
  assert multimodal.encode_images._cache_size() - before <= 1  # 1 image, then 2


def test_image_errors_before_compute(tok):
  s = _sampler('e2b', tok)
  with pytest.raises(ValueError, match=re.escape('prompt 0 has 2 <|image|> placeholders but 1 image given')):
    s.sample('<|image|> <|image|>', images=[IMG_A])
  with pytest.raises(ValueError, match=re.escape('prompt 1 has 1 <|image|> placeholder but 0 images')):
    s.sample(['<|image|>', '<|image|>'], images=[[IMG_A], []])
  with pytest.raises(ValueError, match='no images were given'):
    s.sample('<|image|>')
  with pytest.raises(ValueError, match='max_soft_tokens must be one of'):
    s.sample('<|image|>', images=[IMG_A], max_soft_tokens=100)
  with pytest.raises(ValueError, match='zero size'):
    s.sample('<|image|>', images=[np.zeros((0, 4, 3), np.uint8)])
  with pytest.raises(ValueError, match='dtype must be uint8 or float'):
    s.sample('<|image|>', images=[np.zeros((4, 4, 3), np.int32)])
  text_only = gemma4.Gemma4Sampler(model=gemma4.models.tiny('e2b'),
                                   params=gemma4.models.tiny('e2b').init(0), tokenizer=tok)
  with pytest.raises(ValueError, match='has no vision encoder'):
    text_only.sample('<|image|>', images=[IMG_A])
