"""Image preprocessing equals HF transformers' Gemma 4 image processor (Pillow backend),
which shares the official rules: identical resized patches (exact float32 equality),
positions and soft-token counts over a sweep of sizes with the extremes, at every
budget. The live comparison with the official functions is in tests/oracle."""

import re

import numpy as np
import pytest
from PIL import Image

from gemma4 import images, media

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
  out = media.expand_image_tokens(ids, [3, 1])
  assert out == [2, 10, 108, 255999, -2, -2, -2, 258882, 108, 11,
                 108, 255999, -2, 258882, 108, 12]
  assert media.expand_image_tokens([2, 5], []) == [2, 5]
  with pytest.raises(ValueError, match=re.escape('prompt 1 has 2 <|image|> placeholders but 1 image')):
    media.expand_image_tokens(ids, [3], prompt_index=1)
  with pytest.raises(ValueError, match=re.escape('has 0 <|image|> placeholders but 2 images')):
    media.expand_image_tokens([2, 5], [1, 1])


# Every PIL mode converts by its real value range or is refused by name.

def _pixels(image):
  """The converted [H, W, 3] uint8 pixels of one image (PIL or array)."""
  out = images.to_rgb_uint8(image)
  assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[-1] == 3
  return out


def _gray(values):
  return np.repeat(np.asarray(values, np.uint8)[..., None], 3, -1)


def _palette_image(transparency=None, mode='P'):
  p = Image.new('P', (3, 1))
  p.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90])
  p.putdata([0, 1, 2])
  if transparency is not None:
    p.info['transparency'] = transparency
  return p if mode == 'P' else p.convert(mode)


@pytest.mark.parametrize('image, expected', [
    (Image.new('1', (2, 1), 1), _gray([[255, 255]])),
    (Image.fromarray(np.array([[0, 1]], bool)), _gray([[0, 255]])),
    (Image.fromarray(np.array([[0, 7, 255]], np.uint8)), _gray([[0, 7, 255]])),
    (Image.new('LA', (1, 1), (9, 0)), _gray([[9]])),  # alpha dropped
    (Image.frombytes('La', (1, 1), bytes([64, 128])), _gray([[127]])),  # un-premultiplied
    (Image.new('RGB', (1, 1), (1, 2, 3)), np.array([[[1, 2, 3]]])),
    (Image.new('RGBA', (1, 1), (1, 2, 3, 0)), np.array([[[1, 2, 3]]])),  # alpha dropped
    (Image.frombytes('RGBa', (1, 1), bytes([64, 32, 16, 128])), np.array([[[127, 63, 31]]])),
    (Image.new('RGBX', (1, 1), (1, 2, 3, 4)), np.array([[[1, 2, 3]]])),
    (Image.new('CMYK', (1, 1), (0, 255, 255, 0)), np.array([[[255, 0, 0]]])),
    (Image.new('YCbCr', (1, 1), (128, 128, 128)), np.array([[[128, 128, 128]]])),
    (Image.new('HSV', (1, 1), (0, 255, 255)), np.array([[[255, 0, 0]]])),
    (Image.new('LAB', (1, 1), (255, 128, 128)), np.array([[[254, 255, 254]]])),
])
def test_pil_8bit_modes_convert_as_pil_does(image, expected):
  np.testing.assert_array_equal(_pixels(image), expected)


@pytest.mark.parametrize('transparency', [None, 1, bytes([255, 0, 255])])
@pytest.mark.parametrize('mode', ['P', 'PA'])
def test_pil_palette_images_give_the_palette_colours(mode, transparency, recwarn):
  colours = np.array([[[10, 20, 30], [40, 50, 60], [70, 80, 90]]])
  np.testing.assert_array_equal(_pixels(_palette_image(transparency, mode)), colours)
  assert not [w for w in recwarn if 'Palette' in str(w.message)]  # no PIL transparency warning


@pytest.mark.parametrize('mode, dtype', [('I;16', '<u2'), ('I;16L', '<u2'), ('I;16B', '>u2'),
                                         ('I;16N', '=u2'), ('I', '=i4')])
def test_pil_16bit_and_int_modes_scale_by_65535(mode, dtype):
  values = np.array([[0, 1, 128, 129, 257, 32768, 65535]])
  image = Image.frombytes(mode, (values.shape[1], 1), values.astype(dtype).tobytes())
  assert image.mode == mode
  np.testing.assert_array_equal(_pixels(image), _gray([[0, 0, 0, 1, 1, 128, 255]]))


def test_16bit_png_is_not_white(tmp_path):
  path = tmp_path / 'gray16.png'
  Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)).save(path)
  with Image.open(path) as image:
    assert image.mode == 'I;16'
    np.testing.assert_array_equal(_pixels(image), _gray([[0, 128, 255]]))


def test_pil_float_mode_is_read_in_0_1():
  image = Image.fromarray(np.array([[0.0, 0.5, 0.25, 1.0]], np.float32))
  assert image.mode == 'F'
  np.testing.assert_array_equal(_pixels(image), _gray([[0, 128, 64, 255]]))  # np.round


def test_pil_rgb_and_l_unchanged():
  rgb = _image(20, 30)
  assert np.array_equal(_pixels(Image.fromarray(rgb)), rgb)
  assert np.array_equal(_pixels(Image.fromarray(rgb[..., 1])), np.repeat(rgb[..., 1:2], 3, -1))


@pytest.mark.parametrize('image, message', [
    (Image.fromarray(np.array([[-1, 70000]], np.int32)),
     'image 2: a PIL mode I (32-bit integer) image is read as 16-bit and must hold values in '
     '[0, 65535], got [-1, 70000]'),
    (Image.fromarray(np.array([[0.0, 255.0]], np.float32)),
     'image 2: a PIL mode F (float) image must hold values in [0, 1], got [0, 255]'),
    (Image.fromarray(np.array([[0.0, np.nan]], np.float32)), 'image 2 has NaN or infinite'),
    (Image.fromarray(np.array([[-0.5, 0.5]], np.float32)), 'got [-0.5, 0.5]'),
    (Image.new('RGB', (0, 3)), 'image 2 has zero size: 0x3'),
])
def test_pil_images_out_of_range_are_refused(image, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    images.to_rgb_uint8(image, 2)


def test_unknown_pil_mode_is_refused_by_name():
  image = Image.new('RGB', (2, 2))
  image._mode = 'I;32'  # a mode this module does not know (Image.new cannot make one)
  with pytest.raises(ValueError, match=re.escape("image 0: PIL mode 'I;32' is not supported")):
    images.to_rgb_uint8(image)


# Every numpy dtype converts by its real value range or is refused by name.

@pytest.mark.parametrize('array, expected', [
    (np.array([[0, 7, 255]], np.uint8), [[0, 7, 255]]),
    (np.array([[0, 128, 129, 32768, 65535]], np.uint16), [[0, 0, 1, 128, 255]]),
    (np.array([[0, 32768, 65535]], '>u2'), [[0, 128, 255]]),
    (np.array([[False, True]]), [[0, 255]]),
    (np.array([[0.0, 0.5, 1.0]], np.float16), [[0, 128, 255]]),
    (np.array([[0.0, 0.5, 1.0]], np.float32), [[0, 128, 255]]),
    (np.array([[0.0, 0.5, 1.0, 0.2]], np.float64), [[0, 128, 255, 51]]),
])
def test_array_dtypes_convert_by_value_range(array, expected):
  np.testing.assert_array_equal(_pixels(array), _gray(expected))
  rgba = np.repeat(array[..., None], 4, -1)
  np.testing.assert_array_equal(_pixels(rgba), _gray(expected))  # alpha dropped likewise


@pytest.mark.parametrize('dtype', [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64])
def test_other_integer_dtypes_are_refused_with_a_hint(dtype):
  with pytest.raises(ValueError, match=re.escape(
      f'image 4: dtype must be uint8 or float (values in [0, 1]), uint16 or bool, got '
      f'{np.dtype(dtype)}; other integer types are ambiguous: cast 0-255 values with '
      '.astype(np.uint8)')):
    images.to_rgb_uint8(np.zeros((2, 2, 3), dtype), 4)


@pytest.mark.parametrize('image, error, message', [
    (np.zeros((2, 2), np.complex64), ValueError, 'got complex64; complex values are not pixels'),
    (np.array([[1, 'a']], object), ValueError, 'got object; an object array'),
    (np.full((2, 2), np.inf, np.float32), ValueError, 'image 1 has NaN or infinite pixel values'),
    (np.full((2, 2), 1.5, np.float16), ValueError,
     'image 1: a float image must hold values in [0, 1], got [1.5, 1.5] (pass uint8'),
    ('photo.png', TypeError,
     'image 1 must be a numpy array or a PIL image, got str (open a file with PIL.Image.open'),
    (None, TypeError, 'image 1 must be a numpy array or a PIL image, got NoneType'),
    (np.zeros((2, 2, 5), np.uint8), ValueError, 'image 1 must be [H, W], [H, W, 1], [H, W, 3] or '
     '[H, W, 4] (channels last), got shape (2, 2, 5)'),
    ([[1.0, 0.5], [0.5]], ValueError, 'image 1 is not a rectangular array'),
])
def test_bad_arrays_are_refused_by_name(image, error, message):
  with pytest.raises(error, match=re.escape(message)):
    images.to_rgb_uint8(image, 1)
