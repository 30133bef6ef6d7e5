"""HF checkpoints with a vision tower: tiny random transformers
Gemma4ForConditionalGeneration models (an E2B-like one with clipped linears, a 31B-like
MoE one with standardized outputs and bidirectional image attention), written with
save_pretrained, load through `gemma4.load_checkpoint`; their soft tokens, and the logits
of a prompt with two images given the same soft tokens, equal transformers' within 1e-4
(float32); end to end (each side its own soft tokens), within 1e-3."""

import functools
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
safetensors_numpy = pytest.importorskip('safetensors.numpy')

import gemma4
from gemma4 import images, media, multimodal
from gemma4.transformer import forward

# These tests check the file -> official tree mapping, so float weights (quantize=None);
# int8 loads are tested in test_quant.py.
load_float = functools.partial(gemma4.load_checkpoint, quantize=None)
from tests.test_checkpoint_hf import DENSE, MOE, VOCAB, randomize

TINY_VISION = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                   position_embedding_size=256)
CLIPPED = dict(TINY_VISION, use_clipped_linears=True)        # E2B/E4B
STANDARDIZED = dict(TINY_VISION, standardize=True)           # 26B-A4B/31B
BUDGET = 70
# An image with padding (fewer patches than the budget) and one that fills it.
IMAGES = [np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8),
          np.random.default_rng(2).integers(0, 256, (480, 336, 3), dtype=np.uint8)]


def _random_multimodal(text, vision, path, seed):
  torch.manual_seed(seed)
  cfg = transformers.Gemma4Config(text_config=text, vision_config=vision, audio_config=None)
  model = transformers.Gemma4ForConditionalGeneration(cfg).eval()
  g = randomize(model, seed)
  with torch.no_grad():
    buffers = dict(model.named_buffers())
    for name, b in buffers.items():
      if name.endswith('std_bias'):
        b.copy_(torch.randn(b.shape, generator=g))
      elif name.endswith('std_scale'):
        b.copy_(1 + 0.2 * torch.rand(b.shape, generator=g))
    # Clip bounds that bite (activations are about unit scale); K's are V's and gate's
    # are up's, as the official tree holds one set for each pair.
    for name, b in buffers.items():
      if name.endswith(('input_min', 'input_max', 'output_min', 'output_max')):
        if '.v_proj.' in name or '.up_proj.' in name:
          continue
        bound = 1.0 + 2.0 * torch.rand((), generator=g)
        b.fill_(-bound if name.endswith('min') else bound)
        twin = name.replace('.k_proj.', '.v_proj.').replace('.gate_proj.', '.up_proj.')
        if twin != name:
          buffers[twin].fill_(float(b))
  model.save_pretrained(path)
  return model


# For bidirectional image attention on local layers the references differ past the
# window: the official library (and gemma4) let an image token see keys of its image
# within `window` on either side, transformers any later key of the image. Real models
# have a window of 1024, so the two agree for images of up to 1024 soft tokens; so here,
# with a window longer than an image (and shorter than the prompt).
MOE_WIDE = dict(MOE, sliding_window=96)


@pytest.fixture(scope='module', params=['clipped', 'standardized'])
def hf(request, tmp_path_factory):
  text, vision = (DENSE, CLIPPED) if request.param == 'clipped' else (MOE_WIDE, STANDARDIZED)
  path = str(tmp_path_factory.mktemp('hfv') / request.param)
  return _random_multimodal(text, vision, path, seed=3), path


def _prompt(patches):
  """[text, <boi>, soft x n1, <eoi>, text, <boi>, soft x n2, <eoi>, text] as our ids
  (SOFT_TOKEN at soft slots) and as transformers' (its image_token_id there)."""
  rng = np.random.default_rng(0)
  ids = list(rng.integers(5, VOCAB, 6))
  for p in patches:
    ids += [7] + [media.IMAGE_SLOT] * p.num_soft_tokens + [8] + list(rng.integers(5, VOCAB, 4))
  return np.asarray([ids], np.int64)


@pytest.mark.slow
def test_vision_tower_loads_and_matches_transformers_within_1e4_end_to_end_1e3(hf):
  """Two images (one padded, one filling the budget 70) in one prompt:
  - soft tokens equal transformers' `get_image_features` within 1e-4 (they reach 4;
    measured 1.9e-5 clipped, 1.4e-5 standardized);
  - with those soft tokens, the logits equal transformers' within 1e-4 (measured 1.8e-5,
    2.7e-5);
  - end to end, within 1e-3 (measured 3.4e-4, 4.3e-4): float32 itself moves these logits
    that much (transformers float32 against its own float64 run: 4.5e-4 on the clipped
    model; gemma4's float32 is closer to that float64 run, 2.7e-4), since each soft
    token's 1e-5 rounding is amplified about 15x by the decoder.
  """
  hf_model, path = hf
  ckpt = load_float(path)
  model, params = ckpt.model, ckpt.params
  assert model.has_vision and model.config.vision.num_layers == 2
  patches = [images.preprocess(x, BUDGET) for x in IMAGES]
  assert [p.num_soft_tokens for p in patches] == [60, 70]  # one padded, one full
  ours = _prompt(patches)
  theirs = np.where(ours == media.IMAGE_SLOT, hf_model.config.image_token_id, ours)
  pixel = torch.tensor(np.stack([p.patches for p in patches]))
  pos = torch.tensor(np.stack([p.positions for p in patches])).long()
  with torch.no_grad():
    feats = hf_model.model.get_image_features(pixel, pos, return_dict=True).pooler_output
    ref = hf_model(input_ids=torch.tensor(theirs), pixel_values=pixel, image_position_ids=pos,
                   mm_token_type_ids=torch.tensor(theirs == hf_model.config.image_token_id).long()
                   ).logits.numpy()
  want = torch.cat(feats).numpy()[None]

  n = sum(p.num_soft_tokens for p in patches)
  soft = multimodal.soft_tokens_for_rows(params, model.config, [patches], n)
  assert np.abs(np.asarray(soft) - want).max() < 1e-4

  tokens = jnp.asarray(ours, jnp.int32)

  def logits(soft_tokens):
    embeds, vision_mask = multimodal.merge_soft_tokens(params, tokens, soft_tokens)
    out, _ = forward(params, model.config, tokens, embeds=embeds, vision_mask=vision_mask,
                     valid=jnp.ones(tokens.shape, bool))
    return np.asarray(out)

  assert np.abs(logits(jnp.asarray(want)) - ref).max() < 1e-4
  assert np.abs(logits(soft) - ref).max() < 1e-3


def test_text_only_model_leaves_the_vision_tower(hf, capsys):
  _, path = hf
  full = load_float(path)
  capsys.readouterr()
  text = load_float(path, model=gemma4.Model(full.model.config, dtype=jnp.float32,
                                                         name='mine'))
  assert 'vision tower (' in capsys.readouterr().err
  assert 'vision_encoder' not in text.params and 'vision_encoder' in full.params
  assert 'mm_input_projection' not in text.params['embedder']
  flat_text, flat_full = gemma4.params.flatten(text.params), gemma4.params.flatten(full.params)
  assert flat_text.keys() < flat_full.keys()  # the decoder, loaded as in the full model
  assert all(np.array_equal(np.asarray(flat_text[k]), np.asarray(flat_full[k])) for k in flat_text)


def test_differing_shared_clip_bounds_are_an_error_before_loading(tmp_path):
  """transformers keeps a copy of K's clip bounds on V and of gate's on up; the official
  tree has one, so copies that differ cannot load."""
  path = str(tmp_path / 'm')
  _random_multimodal(DENSE, CLIPPED, path, seed=4)
  file = os.path.join(path, 'model.safetensors')
  tensors = safetensors_numpy.load_file(file)
  tensors['model.vision_tower.encoder.layers.1.self_attn.v_proj.output_max'] = np.array(9.5, np.float32)
  tensors['model.vision_tower.encoder.layers.0.mlp.up_proj.input_min'] = np.array(-0.5, np.float32)
  safetensors_numpy.save_file(tensors, file)
  with pytest.raises(gemma4.CheckpointError) as e:
    load_float(path)
  msg = str(e.value)
  assert 'differ (2)' in msg and 'layers.1.self_attn.v_proj.output_max = 9.5 but' in msg
  assert 'layers.0.mlp.up_proj.input_min = -0.5 but' in msg


def test_unsupported_vision_config_is_a_clear_error(tmp_path):
  path = str(tmp_path / 'm')
  _random_multimodal(DENSE, CLIPPED, path, seed=5)
  with open(os.path.join(path, 'config.json')) as f:
    raw = json.load(f)
  raw['vision_config']['num_key_value_heads'] = 2
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(raw, f)
  with pytest.raises(ValueError, match='num_key_value_heads 2 \\(expected 4'):
    load_float(path)


def test_missing_vision_tensor_is_named(tmp_path):
  path = str(tmp_path / 'm')
  _random_multimodal(DENSE, STANDARDIZED, path, seed=6)
  file = os.path.join(path, 'model.safetensors')
  tensors = safetensors_numpy.load_file(file)
  del tensors['model.vision_tower.std_scale']
  safetensors_numpy.save_file(tensors, file)
  with pytest.raises(gemma4.CheckpointError,
                     match=r'missing tensor model\.vision_tower\.std_scale .*standardize/scale'):
    load_float(path)
