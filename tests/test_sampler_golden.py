"""gemma4.Gemma4Sampler replays the cases the oracle suite ran against the official
sampler (tests/golden/sampler_*.json): identical tokens and text, greedy and seeded, and
3-turn conversations through last_state (equal to the official run on the whole history)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from tests import golden, tokenizer_util


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  return gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path_factory.mktemp('tok') / 't.model'))


@pytest.mark.parametrize('preset', golden.PRESETS)
def test_sampler_tokens_equal_official(preset, tok):
  cases = json.loads((golden.GOLDEN_DIR / f'sampler_{preset}.json').read_text())
  assert len(cases) == 12
  cfg = gemma4.models.tiny_config(preset)
  model = gemma4.Model(cfg, jnp.float32)
  params = gemma4.init_params(cfg, golden.PARAM_SEED, jnp.float32)
  for name, case in cases.items():
    sampler = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                                   **golden.SAMPLER_SETTINGS, **case['sampler_kw'])
    kw = dict(case['sample_kw'])
    if 'sampling' in case:
      cls, fields = case['sampling']
      kw['sampling'] = getattr(gemma4.sampling, cls)(**fields)
    if 'turns' in case:  # a conversation through last_state; compare its last turn
      out = None
      for prompt, n in zip(case['turns'], case['turn_max_new_tokens']):
        out = sampler.sample(prompt, max_new_tokens=n, return_state=True,
                             last_state=out and out.state)
    else:
      out = sampler.sample(case['prompt'], return_state=True, **kw)
    np.testing.assert_array_equal(out.tokens, np.asarray(case['tokens']), err_msg=name)
    assert out.text == case['text'], name
