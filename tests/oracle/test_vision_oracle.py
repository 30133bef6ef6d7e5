"""The vision encoders against the official gemma==4.0.1 VisionEncoder, live: tiny
encoders of both variants (clipped linears; standardized embeddings), random params
with real clip bounds and norm scales, float32, outputs within 1e-4.

The official encoder lets padding patches into attention (it adds its boolean mask to
the logits); gemma4 masks them as HF transformers does. The comparison therefore uses
images that fill the patch budget exactly (no padding), where both are defined alike;
`test_padding_does_not_leak` shows what gemma4 does differently.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gemma.gm.nn.gemma4.vision import _encoder

from gemma4 import vision
from gemma4.config import VisionConfig

pytestmark = pytest.mark.oracle
jax.config.update('jax_default_matmul_precision', 'highest')


def _configs(clipped):
  kw = dict(d_model=64, num_layers=2, num_heads=4, ffw_hidden=96, pos_emb_shape_yx=(50, 2),
            use_clipped_linears=clipped, standardize_embeddings=not clipped)
  return kw, VisionConfig(**kw)


def _inputs(cols, rows, length, seed=0):
  rng = np.random.default_rng(seed)
  n = cols * rows
  patches = np.zeros((1, length, 768), np.float32)
  patches[0, :n] = rng.uniform(0, 1, (n, 768))
  xs, ys = np.meshgrid(np.arange(cols), np.arange(rows))
  pos = np.full((1, length, 2), -1, np.int32)
  pos[0, :n, 0], pos[0, :n, 1] = xs.ravel(), ys.ravel()
  return jnp.asarray(patches), jnp.asarray(pos)


def _randomize(params, seed=1):
  rng = np.random.default_rng(seed)
  def f(path, a):
    name = jax.tree_util.keystr(path)
    if 'scale' in name:
      return jnp.asarray(1.0 + 0.3 * rng.standard_normal(a.shape), a.dtype)
    if 'bias' in name:
      return jnp.asarray(0.1 * rng.standard_normal(a.shape), a.dtype)
    bounds = {'clip_input_min': -2.0, 'clip_input_max': 2.0,
              'clip_output_min': -3.0, 'clip_output_max': 3.0}
    for k, b in bounds.items():
      if k in name:
        return jnp.full(a.shape, b, a.dtype)
    if 'pos_emb' in name:
      return jnp.asarray(0.5 * rng.standard_normal(a.shape), a.dtype)
    return jnp.asarray(rng.standard_normal(a.shape) * a.shape[-2] ** -0.5, a.dtype)
  return jax.tree_util.tree_map_with_path(f, params)


@pytest.mark.parametrize('clipped', [True, False], ids=['clipped_e2b', 'standardized_31b'])
def test_encoder_equals_official_within_1e4(clipped):
  kw, cfg = _configs(clipped)
  patches, pos = _inputs(9, 6, 54)  # 54 patches = 6 soft tokens, no padding
  ref = _encoder.VisionEncoder(output_length=6, **kw)
  params = _randomize(ref.init(jax.random.key(0), patches, pos)['params'])
  (theirs, their_mask), = ref.apply({'params': params}, patches, pos)
  ours, mask = jax.jit(vision.encode, static_argnums=1)(params, cfg, patches, pos)
  assert np.array_equal(np.asarray(mask), np.asarray(their_mask))
  err = float(jnp.max(jnp.abs(ours - theirs)))
  assert err < 1e-4, (err, float(jnp.max(jnp.abs(theirs))))
  if os.environ.get('GEMMA4_WRITE_GOLDEN') == '1':
    from gemma4.params import flatten
    flat = {'param/' + k: np.asarray(x) for k, x in flatten(params).items()}
    np.savez_compressed(os.path.join(os.path.dirname(__file__), '..', 'golden',
                                     f'vision_{"clipped" if clipped else "standardized"}.npz'),
                        patches=np.asarray(patches), positions=np.asarray(pos),
                        official=np.asarray(theirs), official_mask=np.asarray(their_mask), **flat)
  shapes = jax.tree.map(lambda x: x.shape, params)
  specs = jax.tree.map(lambda s: s.shape, vision.param_specs(cfg),
                       is_leaf=lambda s: isinstance(s, vision.ParamSpec))
  assert shapes == specs


def test_padding_does_not_leak():
  """Changing only the padding pixels leaves gemma4's outputs exactly as they were; the
  official outputs at valid tokens move by more than 1e-2."""
  kw, cfg = _configs(True)
  patches, pos = _inputs(6, 3, 36)  # 18 real patches, 18 padding
  ref = _encoder.VisionEncoder(output_length=4, **kw)
  params = _randomize(ref.init(jax.random.key(0), patches, pos)['params'])
  ours, mask = vision.encode(params, cfg, patches, pos)
  other = patches.at[0, 18:].set(0.9)  # only the padding pixels change
  ours2, _ = vision.encode(params, cfg, other, pos)
  assert float(jnp.max(jnp.abs(ours - ours2))) == 0.0
  apply = jax.jit(ref.apply)  # one compiled program, not op by op
  (theirs, _), = apply({'params': params}, patches, pos)
  (theirs2, _), = apply({'params': params}, other, pos)
  assert float(jnp.max(jnp.abs(theirs - theirs2)[np.asarray(mask)])) > 1e-2  # official leaks


@pytest.mark.parametrize('preset', ['gemma4_e2b', 'gemma4_e4b', 'gemma4_26b_a4b', 'gemma4_31b'])
def test_full_size_tree_with_vision_equals_official(preset):
  """Names, shapes and dtypes of the full-size tree with the vision encoder (and the
  multimodal projection) equal the official eval_shape of an init with an image. The
  official creates audio parameters only when called with audio; they are compared in
  tests/oracle/test_audio_oracle.py and left out here."""
  import gemma4
  from gemma.gm.nn.gemma4 import _transformer
  from gemma4 import images as gimages
  from gemma4 import media
  from gemma4.params import flatten, unwrap
  from tests.oracle import official
  p = gimages.preprocess(np.zeros((336, 480, 3), np.uint8), 280)
  tokens = jnp.asarray([media.expand_image_tokens([2, 258880, 5], [p.num_soft_tokens])])
  vis = _transformer.PreprocessedVisionInput(
      patches=jnp.asarray(p.patches[None]), positions_xy=jnp.asarray(p.positions[None]),
      soft_token_counts=(p.num_soft_tokens,))
  model = official.OFFICIAL[preset](text_only=False)
  theirs = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, images=vis))
  ours = gemma4.models.get_model(preset, text_only=False).eval_shape()
  sig = lambda t: {k: (tuple(v.shape), jnp.dtype(v.dtype).name) for k, v in flatten(unwrap(t)).items()
                   if not k.startswith(('audio_encoder/', 'embedder/audio_'))}
  assert sig(ours) == sig(theirs)
