"""The sampler on a mesh of 8 simulated CPU devices equals the sampler on one device.

Models: each preset's tiny config (E2B, E4B, 26B-A4B, 31B) widened (tests/multidevice/
cases.py); their 1-2 KV heads stay whole, as the default rules say. Meshes: 1x8 and 2x4 (data x tensor), and 8 experts-wide for the MoE.

Bounds: greedy tokens identical; logits of every position of prompt + output within
1e-5 relative to the logits' scale (max |a - b| <= 1e-5 * max |a|; float32, the reductions
split over devices add in another order)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import gemma4
from gemma4 import memory, quant, sharding
from gemma4.transformer import forward
from tests import tokenizer_util
from tests.multidevice.cases import CHAT_SETTINGS, PROMPTS, SETTINGS, TURNS, wide

MESHES = {'1x8': dict(tensor=8), '2x4': dict(data=2, tensor=4), 'experts8': dict(expert=8)}
CASES = [(p, m) for p in ('E2B', 'E4B', '31B') for m in ('1x8', '2x4')] + [
    ('26B_A4B', m) for m in ('1x8', '2x4', 'experts8')]


@pytest.fixture(scope='module')
def tok(tmp_path_factory):
  return gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path_factory.mktemp('tok') / 't.model'))


_REF: dict = {}


def reference(preset, tok):
  """The one-device run of `preset` (params, tokens), computed once per preset."""
  if preset not in _REF:
    model = wide(preset)
    params = model.init(3)
    out = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, **SETTINGS).sample(
        PROMPTS, max_new_tokens=8, return_state=True)
    _REF[preset] = (model, params, out)
  return _REF[preset]


def within(a, b, bound=1e-5):
  a, b = np.asarray(a), np.asarray(b)
  return float(np.max(np.abs(a - b))) <= bound * float(np.max(np.abs(a)))


@pytest.mark.parametrize('preset,mesh_name', CASES)
def test_greedy_tokens_identical_and_logits_within_1e_5_of_their_scale(preset, mesh_name, tok):
  model, params, want = reference(preset, tok)
  mesh = sharding.make_mesh(**MESHES[mesh_name])
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, mesh=mesh, **SETTINGS)
  got = s.sample(PROMPTS, max_new_tokens=8, return_state=True)
  np.testing.assert_array_equal(got.tokens, want.tokens)
  assert got.text == want.text
  # Teacher-forced logits of prompt + output, sharded params vs one device.
  ids = [tok.encode(p, add_bos=True) + list(t) for p, t in zip(PROMPTS, want.tokens)]
  n = max(map(len, ids))
  seq = jnp.asarray([row + [0] * (n - len(row)) for row in ids], jnp.int32)
  one, _ = model.apply(params, seq)
  many, _ = model.apply(s.params, jax.device_put(seq, NamedSharding(mesh, P())))
  assert within(one, many), (float(jnp.max(jnp.abs(one - many))), float(jnp.max(jnp.abs(one))))


def test_int8_weights_on_a_mesh_give_the_one_device_int8_tokens(tok):
  model, params, _ = reference('E2B', tok)
  q = quant.quantize_params(params)
  want = gemma4.Gemma4Sampler(model=model, params=q, tokenizer=tok, **SETTINGS).sample(PROMPTS)
  mesh = sharding.make_mesh(data=2, tensor=4)
  s = gemma4.Gemma4Sampler(model=model, params=q, tokenizer=tok, mesh=mesh, **SETTINGS)
  assert s.sample(PROMPTS) == want
  emb = s.params['embedder']['input_embedding']  # [C=1, V, D] int8, V split 4 ways
  assert emb.values.addressable_shards[0].data.shape == (1, 262144 // 4, 64)
  lin = s.params['layer_0']['mlp']['linear']  # [F=128, D] as values [1, D, F]: F split
  assert lin.values.addressable_shards[0].data.shape == (1, 64, 32)


def test_a_split_down_projection_is_not_gathered_whole_for_a_few_rows():
  """31B's down projection ([F=21504 | D=5376], 12 chunks of 1792 columns, each chunk's
  columns split 8 ways as the rules split F) times 4 and 64 rows on a mesh: nothing is
  all-gathered but activations (a merged view of the chunks, as an all-pairs product
  of chunks takes, made the partitioner gather the weight whole)."""
  import re
  mesh = sharding.make_mesh(tensor=8)
  layout = quant.layout_for('layer_0/mlp/linear')
  w = quant.abstract(jax.ShapeDtypeStruct((21504, 5376), jnp.float32), layout)
  specs = quant.QTensor(NamedSharding(mesh, P(None, None, 'tensor')), NamedSharding(mesh, P()),
                        w.shape, w.layout)
  w = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), w, specs)
  assert w.values.shape == (12, 5376, 1792)
  for m in (4, 64):
    x = jax.ShapeDtypeStruct((m, 21504), jnp.float32, sharding=NamedSharding(mesh, P(None, 'tensor')))
    hlo = jax.jit(quant.dot).lower(x, w).compile().as_text()
    gathered = re.findall(r'= (\w+)\[([\d,]*)\][^ ]* all-gather\(', hlo)
    assert gathered, m
    for dtype, dims in gathered:  # at most both int8 parts of every row, gathered
      assert int(np.prod([int(d) for d in dims.split(',')])) <= 2 * m * 21504, (m, gathered)


def _shard(x):
  return x.addressable_shards[0].data.shape


def test_params_and_cache_are_split_as_the_rules_say(tok):
  """Shard shapes on the 2x4 mesh, written out by hand from the default rules."""
  model, params, _ = reference('E4B', tok)
  mesh = sharding.make_mesh(data=2, tensor=4)
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, mesh=mesh, **SETTINGS)
  p = s.params
  assert _shard(p['embedder']['input_embedding']) == (262144 // 4, 64)  # vocab / 4
  assert _shard(p['embedder']['per_layer_embeddings']) == (262144 // 4, 6, 16)
  assert _shard(p['layer_0']['attn']['q_einsum']['w']) == (2, 64, 16)  # 8 heads / 4
  assert _shard(p['layer_0']['attn']['attn_vec_einsum']['w']) == (2, 16, 64)
  assert _shard(p['layer_0']['mlp']['gating_einsum']) == (2, 128 // 4, 64)  # mlp / 4
  assert _shard(p['layer_0']['mlp']['linear']) == (128 // 4, 64)
  # 2 KV heads on a 4-way axis: kept whole (replicated), as the rules state.
  assert _shard(p['layer_0']['attn']['kv_einsum']['w']) == (2, 2, 64, 16)
  assert _shard(p['final_norm']['scale']) == (64,)
  out = s.sample(PROMPTS, max_new_tokens=2, return_state=True)
  cache = out.state.cache
  assert _shard(cache.k[0]) == (1, 8, 2, 16)  # 2 rows over data=2; 8-slot ring
  assert _shard(cache.v[2]) == (1, 2, 32, 96)  # global layer, slots last
  assert _shard(cache.pos['global']) == (1, 96)
  assert _shard(cache.next_pos) == (1,)
  # No device holds the whole model: the largest tensor is a quarter per device.
  total = sum(x.nbytes for x in jax.tree.leaves(p))
  per_device = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(p))
  assert per_device < 0.4 * total


def test_moe_experts_are_split_over_the_expert_axis(tok):
  model, params, _ = reference('26B_A4B', tok)
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                           mesh=sharding.make_mesh(expert=8), **SETTINGS)
  mlp = s.params['layer_0']['mlp']
  assert _shard(mlp['gating_einsum']['w']) == (1, 2, 24, 64)  # 8 experts / 8
  assert _shard(mlp['linear']['w']) == (1, 24, 64)
  assert _shard(mlp['router_logits']['w']) == (64, 8)  # the router stays whole


def test_images_and_audio_on_a_mesh_give_the_one_device_tokens(tok):
  model = wide('E2B', text_only=False)
  params = model.init(11)
  img = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
  clip = (np.random.default_rng(7).standard_normal(8000) * 0.3).astype(np.float32)
  kw = dict(cache_length=256, max_out_length=6, pad_length=(128, 256), max_soft_tokens=70)
  prompt = 'See <|image|> and hear <|audio|>.'
  want = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, **kw).sample(
      prompt, images=[img], audio=[clip], return_state=True)
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok,
                           mesh=sharding.make_mesh(data=2, tensor=4), **kw)
  got = s.sample(prompt, images=[img], audio=[clip], return_state=True)
  np.testing.assert_array_equal(got.tokens, want.tokens)


def test_three_turn_chat_on_a_mesh_equals_one_device(tok):
  model, params, _ = reference('31B', tok)

  def run(**kw):
    chat = gemma4.ChatSampler(model=model, params=params, tokenizer=tok, multi_turn=True,
                              **CHAT_SETTINGS, **kw)
    return [str(chat.chat(t, max_new_tokens=6)) for t in TURNS]

  assert run(mesh=sharding.make_mesh(data=2, tensor=4)) == run()


def test_a_prompt_sharding_that_cannot_split_the_batch_is_an_error_naming_both(tok):
  model, params, _ = reference('E2B', tok)
  mesh = sharding.make_mesh(data=2, tensor=4)
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, mesh=mesh, **SETTINGS)
  rows = NamedSharding(mesh, P('data'))
  with pytest.raises(ValueError, match=r"cannot place the prompt batch of 3 rows \(tokens \(3, 32\)\)"):
    s.sample(['a', 'b', 'c'], sharding=rows)
  other = NamedSharding(sharding.make_mesh(data=2, devices=jax.devices()[:2]), P('data'))
  with pytest.raises(ValueError, match=r"on 2 devices other than the sampler mesh's 8"):
    s.sample(['a', 'b'], sharding=other)
  assert s.sample(['a', 'b'], sharding=rows) == s.sample(['a', 'b'])  # the official meaning


def test_rules_that_map_two_axes_of_one_weight_to_one_mesh_axis_are_refused(tok):
  model, params, _ = reference('E2B', tok)
  mesh = sharding.make_mesh(tensor=8)
  with pytest.raises(ValueError, match=r"map 'vocab' and 'embed' of embedder/input_embedding "
                                       r"both to mesh axis 'tensor'"):
    gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, mesh=mesh,
                         sharding_rules={'embed': 'tensor'}, **SETTINGS)


def test_plan_notes_each_axis_kept_whole():
  model = wide('E2B')
  notes = sharding.plan(model.param_specs(), model.eval_shape(), sharding.make_mesh(tensor=8)).notes
  assert "layer_0/attn/kv_einsum/w: kv_heads (1) kept whole, 'tensor' has 8 devices" in notes
  assert all('kv_heads' in n for n in notes), notes


def _device0_bytes(tree) -> int:
  return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('preset,weights,mesh_name', [
    ('E4B', 'float32', '2x4'), ('E2B', 'int8', '1x8'), ('26B_A4B', 'float32', 'experts8'),
    ('31B', 'int8', '2x4')])
def test_memory_plan_equals_the_bytes_device_0_holds(preset, weights, mesh_name, tok):
  """memory.plan's parameter and KV cache bytes per device == the bytes of device 0's
  shards in a real sampler on that mesh, exactly."""
  model, params, _ = reference(preset, tok)
  if weights == 'int8':
    params = quant.quantize_params(params)
  mesh = sharding.make_mesh(**MESHES[mesh_name])
  s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, mesh=mesh, **SETTINGS)
  cache = s.sample(PROMPTS, max_new_tokens=2, return_state=True).state.cache
  want = memory.plan(model, mesh, dtype='float32', quantize=None if weights == 'float32' else weights,
                     cache_length=SETTINGS['cache_length'], batch_size=len(PROMPTS))
  assert want.params == _device0_bytes(s.params)
  assert want.kv_cache == _device0_bytes(cache)


@pytest.mark.parametrize('preset,mesh_name', [
    ('E2B', '2x4'), ('26B_A4B', '2x4'), ('26B_A4B', 'experts8'), ('31B', '1x8')])
def test_activation_estimate_covers_what_xla_allocates_for_a_prefill_chunk(preset, mesh_name):
  """XLA's temporary bytes for one compiled prefill chunk (2 rows x 64 tokens into a
  256-token cache, float32, sharded) <= memory.plan's activations <= 3x them."""
  model = wide(preset)
  mesh = sharding.make_mesh(**MESHES[mesh_name])
  sharder = sharding.Sharder.of(mesh)
  b, t, length = 2, 64, 256

  def placed(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        tree, shardings)

  shapes = model.eval_shape()
  params = placed(shapes, sharder.plan(model.param_specs(), shapes).shardings)
  cache = jax.eval_shape(lambda: model.init_cache(b, length, jnp.float32))
  cache = placed(cache, sharder.cache_shardings(cache))
  rows = jax.ShapeDtypeStruct((b, t), jnp.int32, sharding=sharder.batch((b, t)))
  valid = jax.ShapeDtypeStruct((b, t), jnp.bool_, sharding=sharder.batch((b, t)))
  chunk = jax.jit(lambda p, x, v, c: forward(p, model.config, x, valid=v, cache=c, last_only=True),
                  donate_argnums=3)
  temp = chunk.lower(params, rows, valid, cache).compile().memory_analysis().temp_size_in_bytes
  estimate = memory.plan(model, mesh, dtype='float32', cache_length=length, batch_size=b,
                         chunk=t).activations
  assert temp <= estimate <= 3 * temp, (temp, estimate)
