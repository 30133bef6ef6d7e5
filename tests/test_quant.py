"""The int8 weight format (gemma4.quant): the dequantisation error of every tensor is at
most half a quantisation step of its row (scale / 2, plus 1e-4 of it for float32 rounding); the decoder on int8 weights equals
the decoder on their dequantised float32 values within 2e-4 (logits of order 10) for
every family, prefill and decode, the MoE experts on both of their paths; a load that
quantizes as it reads gives exactly the tensors of `quantize_params` on the float load
(HF here; GGUF and quality on the real model: tests/test_gemma3_270m.py)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gemma4
from gemma4 import quant
from gemma4.params import flatten
from tests.params_util import assert_same_params
from gemma4.transformer import forward as _forward

forward = jax.jit(_forward, static_argnums=1, static_argnames='last_only')

PRESETS = ['gemma3_270m', 'e2b', '26b_a4b', '31b']


def _dequantized(params):
  return jax.tree.map(lambda x: x.dequantize() if quant.is_quantized(x) else x, params,
                      is_leaf=quant.is_quantized)


@functools.lru_cache(maxsize=None)
def _tiny(preset):
  model = gemma4.models.tiny(preset)
  # A vocabulary of 1024: the kernels do not depend on it, and compiles are faster.
  model = dataclasses.replace(model, config=dataclasses.replace(model.config, vocab_size=1024))
  params = model.init(0)
  return model, params, quant.quantize_params(params)


@pytest.mark.parametrize('preset', PRESETS)
def test_every_weight_dequantizes_within_half_a_step_of_its_row(preset):
  _, params, q = _tiny(preset)
  flat, qflat = flatten(params), flatten(q)
  quantized = [k for k in qflat if quant.is_quantized(qflat[k])]
  assert {quant.layout_for(k) is not None for k in flat} == {True, False}
  assert sorted(quantized) == sorted(k for k in flat if quant.layout_for(k) is not None)
  for k in quantized:
    t = qflat[k]
    assert t.shape == flat[k].shape and t.values.dtype == jnp.int8
    w = np.transpose(np.asarray(flat[k], np.float32), t.layout.perm)
    err = np.abs(w - np.transpose(np.asarray(t.dequantize()), t.layout.perm))
    half_step = np.asarray(t.scale)[(...,) + (None,) * (w.ndim - t.layout.n_out)] / 2
    assert np.all(err <= half_step * (1 + 1e-4)), k  # 1e-4: float32 rounding at a tie


def test_chunks_split_long_rows_into_equal_contiguous_parts():
  assert [quant.chunks(k) for k in (640, 2048, 4096, 5376, 6144, 12288)] == [1, 1, 2, 3, 3, 6]
  w = np.random.default_rng(0).standard_normal((3, 6144)).astype(np.float32)
  t = quant.quantize(w, quant.Layout((0, 1), 1))
  assert t.values.shape == (3, 3, 2048)
  x = np.random.default_rng(1).standard_normal((2, 6144)).astype(np.float32)
  np.testing.assert_allclose(quant.dot(jnp.asarray(x), t), x @ np.asarray(t.dequantize()).T,
                             rtol=1e-5, atol=1e-4)


def test_dot_equals_the_dequantized_product_within_1e_5_for_every_row_count():
  """One row (materialized), a few, ROW_BLOCK, the row-blocked range (65-256 rows, a
  partial last block included) and beyond it; one and three column chunks, each with
  one output axis and with two (as the gate/up [2, F, D] weights); leading axes kept. Relative to the
  largest output, against a float64 product."""
  rng = np.random.default_rng(2)
  for k, out, layout in ((640, (96,), quant.Layout((0, 1), 1)),
                         (6144, (96,), quant.Layout((0, 1), 1)),
                         (640, (2, 48), quant.Layout((0, 1, 2), 2)),
                         (6144, (2, 48), quant.Layout((0, 1, 2), 2))):
    w = rng.standard_normal((*out, k)).astype(np.float32)
    t = quant.quantize(w, layout)
    ref_w = np.asarray(t.dequantize(), np.float64).reshape(96, k)
    for m in (1, 3, quant.ROW_BLOCK, quant.ROW_BLOCK + 1, 130, 4 * quant.ROW_BLOCK,
              4 * quant.ROW_BLOCK + 3):
      x = rng.standard_normal((m, k)).astype(np.float32)
      want = x @ ref_w.T
      got = np.asarray(jax.jit(quant.dot)(jnp.asarray(x)[None], t))[0]
      assert got.shape == (m, *out)
      got = got.reshape(m, 96)
      assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (k, out, m)


@pytest.mark.parametrize('preset', PRESETS)
def test_int8_decoder_equals_dequantized_float32_within_2e_4(preset):
  model, _, q = _tiny(preset)
  d = _dequantized(q)
  tokens = jnp.asarray([[2, 818, 1000, 5, 77, 9] * 12]) % 1024  # 72: MoE prefill dequantizes
  cache = model.init_cache(1, 80, jnp.float32)
  want, cd = forward(d, model.config, tokens, cache=cache)
  got, cq = forward(q, model.config, tokens, cache=cache)
  assert float(jnp.max(jnp.abs(want))) > 5
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)
  want, _ = forward(d, model.config, tokens[:, :1], cache=cd)
  got, _ = forward(q, model.config, tokens[:, :1], cache=cq)  # MoE: experts gathered
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=0)


def test_sampler_on_int8_params_uses_a_float32_cache_and_matches_the_dequantized_run(tmp_path):
  from tests import tokenizer_util
  tokenizer = gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path / 't.model'))
  model = gemma4.models.tiny('e2b')  # the tokenizer's vocabulary
  q = quant.quantize_params(model.init(0))
  runs = []
  for params in (q, _dequantized(q)):
    s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tokenizer,
                             sampling=gemma4.sampling.Greedy(), cache_length=64)
    out = s.sample('Hello there', max_new_tokens=8, return_state=True)
    assert out.state.cache.k[0].dtype == jnp.float32
    runs.append(np.asarray(out.state.predicted_tokens))
  np.testing.assert_array_equal(runs[0], runs[1])


def test_check_params_names_a_quantized_weight_in_the_wrong_layout():
  model, params, q = _tiny('gemma3_270m')
  bad = dict(q, layer_0=dict(q['layer_0'], attn=dict(q['layer_0']['attn'])))
  w = params['layer_0']['attn']['q_einsum']['w']
  bad['layer_0']['attn']['q_einsum'] = {'w': quant.quantize(w, quant.Layout((0, 1, 2), 2))}
  with pytest.raises(ValueError, match=r'wrong layout layer_0/attn/q_einsum/w: an int8 weight'):
    model.check_params(bad)


@pytest.mark.parametrize('value', ['int4', 'INT8', 8, True, ''])
def test_an_unknown_format_is_refused_before_the_file_is_opened(value):
  with pytest.raises(ValueError, match=rf"quantize={value!r} is not a weight format \(expected "
                                       r"'auto', 'int8' or None"):
    gemma4.load_checkpoint('/nonexistent/checkpoint', quantize=value)


def test_auto_is_int8_on_cpu():
  assert jax.default_backend() == 'cpu'
  assert quant.resolve_format('auto') == 'int8' and quant.resolve_format(None) is None


@pytest.mark.parametrize('kind', ['DENSE', 'MOE'])
def test_int8_hf_load_equals_quantize_params_of_the_float_load(tmp_path, monkeypatch, kind):
  hf_tests = pytest.importorskip('tests.test_checkpoint_hf')
  path = str(tmp_path / kind)
  hf_tests.random_hf(getattr(hf_tests, kind), path)
  monkeypatch.setattr('gemma4.checkpoints.plan._BLOCK_BYTES', 4096)  # tables in row blocks
  f = gemma4.load_checkpoint(path, quantize=None, progress=False)
  q = gemma4.load_checkpoint(path, quantize='int8', progress=False)
  assert (q.weights, f.weights) == ('int8', 'float32')
  assert_same_params(q.params, quant.quantize_params(f.params))
