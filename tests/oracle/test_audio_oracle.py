"""The audio front end and conformer against the official gemma==4.0.1 AudioTokenizer,
live: log-mel features within 1e-5, a tiny conformer's outputs within 1e-4 (random
params with real clip bounds and norm scales, float32), token counts, and the full-size
parameter tree.

The official encoder counts a clip's valid mel frames in float32 (floor(len / (S /
T0))), which for some lengths drops the last real frame; gemma4 counts them exactly.
The comparisons use lengths where the official count is exact (most lengths), and
`test_official_float_mask_drops_a_frame` shows the others.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gemma.gm.nn.gemma4.audio import _model, _modules

import gemma4
from gemma4 import audio, conformer
from gemma4.config import AudioConfig

pytestmark = pytest.mark.oracle

TINY = dict(num_layers=2, model_dims=64, lm_model_dims=48, atten_num_heads=4)
# 1 s, 0.5 s, odd lengths (n0 = 2 and 3 mod 4 mel frames), 3 s, one frame.
LENGTHS = (16000, 8000, 8200, 5128, 48000, 321, 999)


def official_frames(n: int) -> int:
  """The official float32 count of valid mel frames of a clip alone."""
  t0 = (n - 321) // 160 + 1
  rate = np.float32(n / t0)
  return int(np.floor(np.float32(n) / rate))


def to_official(flat: dict) -> dict:
  """gemma4's audio tree (conformer/stacked_layers_i nested) as the official one (a flat
  'conformer/stacked_layers_i' key)."""
  out = {}
  for k, v in flat.items():
    parts = k.split('/')
    if parts[0] == 'conformer':
      parts = [parts[0] + '/' + parts[1]] + parts[2:]
    d = out
    for p in parts[:-1]:
      d = d.setdefault(p, {})
    d[parts[-1]] = v
  return out


def _flat(tree, prefix=()):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, prefix + (k,)))
    else:
      out['/'.join(prefix + (k,))] = v
  return out


def random_params(a: AudioConfig, seed=1) -> dict:
  """gemma4's flat audio tree with clip bounds of +-3, norm scales 1 + 0.1 normal."""
  rng = np.random.default_rng(seed)
  out = {}
  for k, spec in gemma4.params.flatten(conformer.param_specs(a)).items():
    if 'clip_' in k:
      v = np.float32((-1 if k.endswith('min') else 1) * 3.0)
    elif spec.init == 'ones':
      v = 1 + 0.1 * rng.standard_normal(spec.shape)
    elif spec.init == 'zeros':
      v = 0.1 * rng.standard_normal(spec.shape)
    else:
      fan = int(np.prod([spec.shape[i] for i in spec.fan_in_axes]))
      v = rng.standard_normal(spec.shape) * fan ** -0.5
    out[k] = jnp.asarray(v, jnp.float32)
  return out


@pytest.fixture(scope='module')
def tiny():
  a = AudioConfig(**TINY)
  off = _model.AudioTokenizer(config=_modules.ConformerConfig(**TINY))
  flat = random_params(a)
  return a, off, to_official(flat), gemma4.params.unflatten(flat)


def _clip(n, seed=0):
  return np.random.default_rng(seed).standard_normal((1, n)).astype(np.float32) * 0.3


def test_full_size_tree_equals_official_eval_shape():
  for preset in ('gemma4_e2b', 'gemma4_e4b'):
    a = gemma4.get_preset(preset).audio
    off = _model.AudioTokenizer(config=_modules.ConformerConfig())
    shapes = jax.eval_shape(lambda: off.init(jax.random.PRNGKey(0), jnp.zeros((1, 16000)),
                                             jnp.asarray([16000])))['params']
    want = {k: (tuple(v.shape), str(v.dtype)) for k, v in _flat(shapes).items()}
    mine = gemma4.models.get_model(preset, text_only=False).eval_shape()
    got = {k: (tuple(v.shape), str(v.dtype)) for k, v in
           _flat(to_official(gemma4.params.flatten(mine['audio_encoder']))).items()}
    assert got == want
    assert mine['embedder']['audio_input_projection']['w'].shape == (a.lm_model_dims,
                                                                     gemma4.get_preset(preset).embed_dim)


@pytest.mark.parametrize('n', LENGTHS + (1283, 2247))
def test_features_equal_official_within_1e5(n):
  x = _clip(n, n)
  want = _modules.GemaxMelFilterbank().apply({}, jnp.asarray(x))
  got, valid = conformer.log_mel(jnp.asarray(x), jnp.asarray([n]))
  assert got.shape == want.shape and int(valid.sum()) == (n - 321) // 160 + 1
  assert float(jnp.abs(got - want).max()) <= 1e-5


@pytest.mark.parametrize('n', LENGTHS)
def test_encoder_equals_official_within_1e4(tiny, n):
  a, off, p_off, p_ours = tiny
  assert official_frames(n) == (n - 321) // 160 + 1  # a length the official counts exactly
  x = _clip(n, n)
  want, pad = off.apply({'params': p_off}, jnp.asarray(x), jnp.asarray([n]))
  got, valid = conformer.encode(p_ours, a, jnp.asarray(x), jnp.asarray([n]))
  count = audio.soft_token_count(n)
  assert int(valid.sum()) == int((~pad).sum()) == count  # the sampler's count is the output's
  assert float(jnp.abs(got[:, :count] - want[:, :count]).max()) <= 1e-4


def test_padded_in_a_batch_equals_alone_within_1e5(tiny):
  """gemma4 encodes a clip the same alone or padded beside a longer one (the official
  does not, for lengths with 2 mod 4 mel frames: it lets the padding into the second
  convolution)."""
  a, _, _, p_ours = tiny
  n = 8200  # 50 mel frames: 2 mod 4
  alone, _ = conformer.encode(p_ours, a, jnp.asarray(_clip(n, 1)), jnp.asarray([n]))
  batch = np.zeros((2, 32000), np.float32)
  batch[0, :n], batch[1] = _clip(n, 1)[0], _clip(32000, 2)[0]
  padded, valid = conformer.encode(p_ours, a, jnp.asarray(batch), jnp.asarray([n, 32000]))
  k = audio.soft_token_count(n)
  assert int(valid[0].sum()) == k
  assert float(jnp.abs(padded[0, :k] - alone[0, :k]).max()) <= 1e-5


@pytest.mark.parametrize('n', (1283, 2247))
def test_official_float_mask_drops_a_frame(tiny, n):
  """For these lengths the official float32 frame count drops the last real frame: its
  encoder then outputs one token fewer than its sampler's count (2247) or a different
  last token (1283). gemma4 keeps the frame: its output has the sampler's count."""
  a, off, p_off, p_ours = tiny
  assert official_frames(n) == (n - 321) // 160  # one short
  x = _clip(n, n)
  _, pad = off.apply({'params': p_off}, jnp.asarray(x), jnp.asarray([n]))
  _, valid = conformer.encode(p_ours, a, jnp.asarray(x), jnp.asarray([n]))
  assert int(valid.sum()) == audio.soft_token_count(n)
  if n == 2247:
    assert int((~pad).sum()) == audio.soft_token_count(n) - 1
