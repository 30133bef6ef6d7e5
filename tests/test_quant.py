"""The int8 weight format (gemma4.quant): the dequantisation error of every tensor is at
most half a quantisation step of its row (scale / 2, plus 1e-4 of it for float32 rounding); the decoder on int8 weights equals
the decoder on their dequantised float32 values for every family, prefill within 3e-4 of
the largest logit (activations split into int8 parts) and decode within 2e-4 (logits of
order 10), the MoE experts on both of their paths; a load that
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


def _split_bound(x, ref_w):
  """What `quant.dot` may differ by from x @ ref_w.T (float64) for rows split into int8
  parts: each element of row i within a_i / (2 LO) (a_i = max |row| / 127), so output
  (i, j) within a_i / (2 LO) * sum_k |w_jk|, plus 1e-6 of sum_k |x_ik w_jk| for float32
  rounding."""
  a = np.abs(x).max(axis=1, keepdims=True) / 127
  return a / (2 * quant.LO) * np.abs(ref_w).sum(1) + 1e-6 * (np.abs(x) @ np.abs(ref_w).T)


def test_chunks_split_long_rows_into_equal_contiguous_parts():
  assert [quant.chunks(k) for k in (640, 2048, 4096, 5376, 6144, 12288)] == [1, 1, 2, 3, 3, 6]
  w = np.random.default_rng(0).standard_normal((3, 6144)).astype(np.float32)
  t = quant.quantize(w, quant.Layout((0, 1), 1))
  assert t.values.shape == (3, 3, 2048)
  ref_w = np.asarray(t.dequantize(), np.float64)
  x = np.random.default_rng(1).standard_normal((2, 6144)).astype(np.float32)
  got = np.asarray(quant.dot(jnp.asarray(x), t))
  assert np.all(np.abs(got - x @ ref_w.T) <= _split_bound(x, ref_w))
  got = np.asarray(quant.dot(jnp.asarray(x[:1]), t))
  np.testing.assert_allclose(got, x[:1] @ ref_w.T, rtol=1e-5, atol=1e-4)


def test_split_rows_are_int8_and_within_a_over_2_lo_of_their_row():
  """Every element of a split row is within a / (2 LO) of a (hi + lo / LO), 1e-6 of a
  for float32 rounding; parts within +-127; a zero row gives zeros and a = 1."""
  rng = np.random.default_rng(3)
  x = rng.standard_normal((5, 700)).astype(np.float32) * np.float32([[1e-3], [1], [30], [1e4], [0]])
  x[2, 7] = -x[2].__abs__().max() * 1.5  # the largest magnitude negative
  hi, lo, a = (np.asarray(v) for v in jax.jit(quant.split_rows)(jnp.asarray(x)))
  assert hi.dtype == lo.dtype == np.int8 and a.shape == (5, 1)
  assert np.abs(hi.astype(int)).max() <= 127 and np.abs(lo.astype(int)).max() <= 127
  assert hi[2, 7] == -127 and np.all(hi[4] == 0) and np.all(lo[4] == 0) and a[4, 0] == 1
  back = a.astype(np.float64) * (hi + lo / quant.LO)
  assert np.all(np.abs(back - x) <= a * (1 / (2 * quant.LO) + 1e-6))


def test_dot_equals_the_dequantized_product_for_every_row_count():
  """One row within 1e-5 of the largest output (float32 products); two or more rows
  (split into int8 parts) within `_split_bound`, and each row's result equal to the
  row's own (one-of-two-rows) result bit for bit, whatever the other rows. One and three
  column chunks, each with one output axis and with two (as the gate/up [2, F, D]
  weights); leading axes kept. Against a float64 product."""
  rng = np.random.default_rng(2)
  for k, out, layout in ((640, (96,), quant.Layout((0, 1), 1)),
                         (6144, (96,), quant.Layout((0, 1), 1)),
                         (640, (2, 48), quant.Layout((0, 1, 2), 2)),
                         (6144, (2, 48), quant.Layout((0, 1, 2), 2))):
    w = rng.standard_normal((*out, k)).astype(np.float32)
    t = quant.quantize(w, layout)
    ref_w = np.asarray(t.dequantize(), np.float64).reshape(96, k)
    x = rng.standard_normal((260, k)).astype(np.float32) * rng.uniform(0.1, 10, (260, 1))
    x = x.astype(np.float32)
    pairs = np.asarray(jax.jit(quant.dot)(jnp.asarray(x).reshape(130, 2, k), t)).reshape(260, 96)
    for m in (1, 2, 3, 64, 65, 130, 260):
      want = x[:m] @ ref_w.T
      got = np.asarray(jax.jit(quant.dot)(jnp.asarray(x[:m])[None], t))[0]
      assert got.shape == (m, *out)
      got = got.reshape(m, 96)
      if m == 1:
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (k, out)
      else:
        assert np.all(np.abs(got - want) <= _split_bound(x[:m], ref_w)), (k, out, m)
        np.testing.assert_array_equal(got, pairs[:m])


def test_dot_refuses_more_columns_than_an_int32_sum_holds():
  t = quant.QTensor(jnp.zeros((70, 2, 2048), jnp.int8), jnp.ones((2,)), (2, 70 * 2048),
                    quant.Layout((0, 1), 1))
  with pytest.raises(ValueError, match=r'an int8 weight contracting 143360 columns: at most '
                                       rf'{quant.MAX_K} fit an int32 sum'):
    jax.eval_shape(quant.dot, jax.ShapeDtypeStruct((2, 143360), jnp.float32), t)


@pytest.mark.parametrize('preset', PRESETS)
def test_int8_decoder_equals_dequantized_float32_prefill_3e_4_decode_2e_4(preset):
  """Prefill (72 rows: activations split into int8 parts, 15 bits) within 3e-4 of the
  largest logit (of order 10; measured 0.6-2.3e-3 absolute); decode from the same cache
  (one row, float32 activations) within 2e-4 absolute, as before the split."""
  model, _, q = _tiny(preset)
  d = _dequantized(q)
  tokens = jnp.asarray([[2, 818, 1000, 5, 77, 9] * 12]) % 1024  # 72: MoE prefill dequantizes
  cache = model.init_cache(1, 80, jnp.float32)
  want, cd = forward(d, model.config, tokens, cache=cache)
  got, _ = forward(q, model.config, tokens, cache=cache)
  top = float(jnp.max(jnp.abs(want)))
  assert top > 5
  np.testing.assert_allclose(got, want, atol=3e-4 * top, rtol=0)
  want, _ = forward(d, model.config, tokens[:, :1], cache=cd)
  got, _ = forward(q, model.config, tokens[:, :1], cache=cd)  # MoE: experts gathered
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
