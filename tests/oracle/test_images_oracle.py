"""Image preprocessing against the official gemma==4.0.1 functions, live: identical
patches (exact float32), positions and soft-token counts over a size sweep with the
extremes, at every budget, for RGB, grayscale, RGBA and PIL inputs."""

import numpy as np
import pytest
from PIL import Image
from gemma.gm.nn.gemma4.vision import _preprocessing as official

from gemma4 import images, media

pytestmark = pytest.mark.oracle

SIZES = [(1, 1), (3, 900), (900, 3), (4000, 3000), (48, 48), (96, 144), (37, 101),
         (480, 640), (768, 1024)]


def _official(image, budget):
  patches, positions, counts = official.preprocess_and_patchify(
      [image], patch_size=16, max_soft_tokens=budget, pooling_kernel_size=3)
  return np.asarray(patches[0]), np.asarray(positions[0]), int(counts[0])


@pytest.mark.parametrize('budget', images.BUDGETS)
def test_preprocessing_equals_official_exactly(budget):
  rng = np.random.default_rng(budget)
  for h, w in SIZES:
    if (h, w) == (4000, 3000) and budget not in (70, 1120):
      continue
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ours = images.preprocess(img, budget)
    patches, positions, n = _official(img, budget)
    assert ours.num_soft_tokens == n == official.predict_soft_token_count(h, w, max_soft_tokens=budget)
    assert images.target_size(h, w, budget) == official.get_target_dimensions(h, w, max_patches=9 * budget)
    assert np.array_equal(ours.patches, patches), (h, w)
    assert np.array_equal(ours.positions, positions), (h, w)


def test_grayscale_rgba_and_pil_inputs_equal_official():
  rng = np.random.default_rng(0)
  rgba = rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)
  for image in (rgba, rgba[..., 0], rgba[..., :1], Image.fromarray(rgba[..., :3])):
    ours = images.preprocess(image, 280)
    patches, positions, n = _official(image, 280)
    assert ours.num_soft_tokens == n
    assert np.array_equal(ours.patches, patches) and np.array_equal(ours.positions, positions)


def test_expansion_equals_official():
  from gemma.gm.vision import _token_utils
  ids = [2, 10, 258880, 11, 258880, 12, 258880]
  counts = [5, 1, 64]
  theirs = _token_utils.add_variable_extra_tokens_for_images(np.asarray([ids]),
                                                             soft_token_counts=counts)[0]
  assert media.expand_image_tokens(ids, counts) == theirs.tolist()
