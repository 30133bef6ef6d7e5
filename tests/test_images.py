"""Image preprocessing equals HF transformers' Gemma 4 image processor (Pillow backend),
which shares the official rules: identical resized patches (exact float32 equality),
positions and soft-token counts over a sweep of sizes with the extremes, at every
budget. The live comparison with the official functions is in tests/oracle."""

import numpy as np
import pytest
from PIL import Image

from gemma4 import images

SIZES = [(1, 1), (3, 900), (900, 3), (4000, 3000), (48, 48), (96, 144), (37, 101),
         (480, 640), (768, 1024)]


def _image(h, w, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def hf_processor():
  pil = pytest.importorskip('transformers.models.gemma4.image_processing_pil_gemma4')
  cache = {}

  def run(image, budget):
    if budget not in cache:
      cache[budget] = pil.Gemma4ImageProcessorPil(max_soft_tokens=budget)
    out = cache[budget](images=[image], input_data_format='channels_last', return_tensors='np')
    return (out['pixel_values'][0], out['image_position_ids'][0],
            int(out['num_soft_tokens_per_image'][0]))
  return run


@pytest.mark.parametrize('budget', images.BUDGETS)
def test_patches_equal_hf_image_processor_exactly(hf_processor, budget):
  for i, (h, w) in enumerate(SIZES):
    if (h, w) == (4000, 3000) and budget not in (70, 1120):
      continue  # the largest input at the two extreme budgets only (resize time)
    img = _image(h, w, i)
    ours = images.preprocess(img, budget)
    patches, positions, n = hf_processor(img, budget)
    assert ours.num_soft_tokens == n == images.soft_token_count(h, w, budget), (h, w)
    assert ours.num_soft_tokens <= budget
    assert ours.patches.shape == patches.shape == (budget * 9, 768)
    assert np.array_equal(ours.patches, patches), (h, w)
    assert np.array_equal(ours.positions, positions), (h, w)


def test_sizes_are_multiples_of_48_within_the_patch_budget():
  for h, w in SIZES + [(5, 7), (1000, 1), (1, 1000), (333, 777)]:
    for budget in images.BUDGETS:
      th, tw = images.target_size(h, w, budget)
      assert th % 48 == 0 and tw % 48 == 0 and th >= 48 and tw >= 48
      assert (th // 16) * (tw // 16) <= 9 * budget
  assert images.target_size(480, 640, 280) == (672, 912)  # 3:4 within one 48-px step
  assert images.target_size(48, 48, 70) == (384, 384)  # small images are upscaled


def test_inputs_grayscale_rgba_float_and_pil_agree():
  rgb = _image(60, 80)
  base = images.preprocess(rgb, 70)
  gray = rgb[..., 0]
  g = images.preprocess(gray, 70)
  assert np.array_equal(g.patches, images.preprocess(np.repeat(gray[..., None], 3, -1), 70).patches)
  assert np.array_equal(images.preprocess(gray[..., None], 70).patches, g.patches)
  rgba = np.concatenate([rgb, np.full((60, 80, 1), 7, np.uint8)], -1)
  assert np.array_equal(images.preprocess(rgba, 70).patches, base.patches)  # alpha dropped
  assert np.array_equal(images.preprocess(rgb / 255.0, 70).patches, base.patches)
  assert np.array_equal(images.preprocess(rgb.astype(np.float32) / 255, 70).patches, base.patches)
  assert np.array_equal(images.preprocess(Image.fromarray(rgb), 70).patches, base.patches)
  assert np.array_equal(images.preprocess(Image.fromarray(rgba, 'RGBA').convert('RGB'), 70).patches,
                        base.patches)


def test_patch_layout_row_major_and_positions():
  p = images.preprocess(_image(96, 144), 1120)
  th, tw = p.size
  gw = tw // 16
  assert p.positions[0].tolist() == [0, 0] and p.positions[1].tolist() == [1, 0]
  assert p.positions[gw].tolist() == [0, 1]
  assert p.positions[p.num_patches - 1].tolist() == [gw - 1, th // 16 - 1]
  assert (p.positions[p.num_patches:] == -1).all() and not p.patches[p.num_patches:].any()


@pytest.mark.parametrize('image, message', [
    (np.zeros((0, 5, 3), np.uint8), 'zero size'),
    (np.zeros((5, 0), np.uint8), 'zero size'),
    (np.zeros((4, 4, 2), np.uint8), r'\[H, W, 3\]'),
    (np.zeros((2, 4, 4, 3), np.uint8), 'got shape'),
    (np.zeros((4, 4, 3), np.int16), 'dtype must be uint8 or float.*int16'),
    (np.full((4, 4, 3), 2.0), r'values in \[0, 1\], got \[2, 2\]'),
    (np.full((4, 4, 3), np.nan), 'NaN'),
])
def test_bad_images_raise_clear_errors(image, message):
  with pytest.raises(ValueError, match=message):
    images.preprocess(image, 70)


@pytest.mark.parametrize('budget', [0, 100, 1121, 280.0, True, '280'])
def test_budget_must_be_one_of_five(budget):
  with pytest.raises(ValueError, match='must be one of 70, 140, 280, 560, 1120'):
    images.preprocess(_image(10, 10), budget)


def test_expand_image_tokens_per_prompt_counts():
  ids = [2, 10, 258880, 11, 258880, 12]
  out = images.expand_image_tokens(ids, [3, 1])
  assert out == [2, 10, 108, 255999, -2, -2, -2, 258882, 108, 11,
                 108, 255999, -2, 258882, 108, 12]
  assert images.expand_image_tokens([2, 5], []) == [2, 5]
  with pytest.raises(ValueError, match='prompt 1 has 2 <|image|> placeholders but 1 image'):
    images.expand_image_tokens(ids, [3], prompt_index=1)
  with pytest.raises(ValueError, match='has 0 <|image|> placeholders but 2 images'):
    images.expand_image_tokens([2, 5], [1, 1])
