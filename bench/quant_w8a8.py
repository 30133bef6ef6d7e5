"""Dynamic int8 activations (W8A8) on XLA CPU: faster products for 2+ rows, but does the
real model keep its quality? Two parts, one run.

Speed: M rows times an int8 weight [out, in] with one float32 scale per row (gemma4's
format), three ways:
  gemma4        gemma4.quant.dot (weight-only int8: float32 activations; compiled with
                quant.COMPILER_OPTIONS for M >= 2, as the sampler compiles)
  w8a8          each row of x scaled to int8 (scale max|x| / 127), int8 x int8 summed in
                int32 (lax.dot_general, preferred_element_type=int32), then both scales;
                compiled without the option
  w8a8 + option the same, compiled with quant.COMPILER_OPTIONS
  w8a8 g128     one activation scale per 128 columns of a row: int8 x int8 in int32 per
                group (a dot_general batched over the groups), groups summed in float32
Median of warm calls, alternating forms per round (bench/timing.py).

Quality: the same rule as tests/test_gemma3_270m.py for the int8 format (the real Gemma
3 270M; float32's greedy continuation of 5 prompts, 64 tokens each: the share of 320
positions where the quantized model's argmax agrees; perplexity on
tests/golden/perplexity_text.txt against float32's), for weight-only int8 and for int8
weights with int8 activations in every product, one scale per row or per group of
128 or 32 columns (emulated: each activation rounded to its int8 step, round(x / a) *
a, then gemma4.quant.dot as it is; the int32 form differs from it by float32 rounding
only). The format's bar: >= 95% and <= +1%.

Not a test: `.venv/bin/python bench/quant_w8a8.py`; output kept in bench/quant_w8a8.txt.

Recorded before the change of bench/quant_split.py: quant.dot then multiplied two or more
float32 rows by the converted weight (the `gemma4` column). It now splits each row into
two int8 parts (15 bits, which keep the format's quality where one part per row did not),
so a rerun's `gemma4` column measures that, under the option it runs 7-10x slower with.
"""

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests.* for the golden prompts

import gemma4  # noqa: E402
from gemma4 import quant, sampling  # noqa: E402
from gemma4.transformer import forward  # noqa: E402
from timing import alternating_ms  # noqa: E402

# The library-fusion option (quant.COMPILER_OPTIONS until bench/quant_split.py's change;
# now part of compilation.FLOAT_OPTIONS).
LIBRARY_DOT = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT'}

ROUNDS, CALLS = 3, 5
SHAPES = [(2048, 640), (640, 2048), (6144, 1536), (1536, 6144), (262144, 640)]
ROWS = (2, 8, 64, 256, 1024)


def w8a8(x, w8, s):
  a = jnp.max(jnp.abs(x), axis=-1, keepdims=True) / 127.0
  a = jnp.where(a == 0, 1.0, a)
  xq = jnp.round(x / a).astype(jnp.int8)
  y = jax.lax.dot_general(xq, w8, (((1,), (1,)), ((), ())), preferred_element_type=jnp.int32)
  return y.astype(jnp.float32) * a * s


def w8a8_groups(x, w8, s, group=128):
  m, k = x.shape
  g = x.reshape(m, k // group, group)
  a = jnp.max(jnp.abs(g), axis=-1, keepdims=True) / 127.0
  a = jnp.where(a == 0, 1.0, a)
  xq = jnp.round(g / a).astype(jnp.int8)
  y = jax.lax.dot_general(xq, w8.reshape(-1, k // group, group), (((2,), (2,)), ((1,), (1,))),
                          preferred_element_type=jnp.int32)  # [groups, m, out]
  return jnp.einsum('gmo,mg->mo', y.astype(jnp.float32), a[..., 0]) * s


def speed(out):
  rng = np.random.default_rng(0)
  print('## Speed\n', file=out)
  print(f'JAX {jax.__version__} on {jax.default_backend()}, {ROUNDS} rounds x {CALLS} warm '
        'calls, ms: median (min-max of round medians)\n', file=out)
  print('| weight [out, in] | rows | gemma4 (weight-only) | w8a8 | w8a8 + option | w8a8 g128 | '
        'w8a8 / gemma4 |', file=out)
  print('|---|---|---|---|---|---|---|', file=out)
  for o, k in SHAPES:
    q = quant.quantize(jnp.asarray(rng.standard_normal((k, o), dtype=np.float32)),
                       quant.Layout((1, 0), 1))
    w8 = jnp.concatenate(list(q.values), axis=-1)  # the chunks as one [out, in] int8 weight
    for m in ROWS:
      if o * m > 262144 * 64:
        continue
      x = jnp.asarray(rng.standard_normal((m, k), dtype=np.float32))
      ours = jax.jit(quant.dot).lower(x, q).compile(compiler_options=LIBRARY_DOT)
      plain = jax.jit(w8a8).lower(x, w8, q.scale).compile()
      opt = jax.jit(w8a8).lower(x, w8, q.scale).compile(compiler_options=LIBRARY_DOT)
      groups = jax.jit(w8a8_groups).lower(x, w8, q.scale).compile()
      per = alternating_ms({'gemma4': (ours, (x, q)), 'w8a8': (plain, (x, w8, q.scale)),
                            'opt': (opt, (x, w8, q.scale)), 'g128': (groups, (x, w8, q.scale))},
                           ROUNDS, CALLS)
      med = {n: float(np.median(v)) for n, v in per.items()}
      cell = lambda n: f'{med[n]:.2f} ({min(per[n]):.2f}-{max(per[n]):.2f})'
      print(f'| {o} x {k} | {m} | {cell("gemma4")} | {cell("w8a8")} | {cell("opt")} | {cell("g128")} | '
            f'{med["w8a8"] / med["gemma4"]:.2f}x |', file=out, flush=True)


def quality(out):
  golden = json.load(open(os.path.join(os.path.dirname(HERE), 'tests', 'golden', 'gemma3_270m.json')))
  text = open(os.path.join(os.path.dirname(HERE), 'tests', 'golden', 'perplexity_text.txt')).read()
  f32, int8 = gemma4.load_default(quantize=None), gemma4.load_default()
  cfg, tok = f32.model.config, f32.tokenizer
  weight_only = quant.dot

  def int8_activations(group=None):
    def dot(x, q):  # x [..., K]: one scale per row (all of K) or per group of K
      g = x.reshape(*x.shape[:-1], -1, x.shape[-1] if group is None else group)
      a = jnp.max(jnp.abs(g), axis=-1, keepdims=True) / 127.0
      a = jnp.where(a == 0, 1.0, a)
      return weight_only((jnp.round(g / a) * a).reshape(x.shape), q)
    return dot

  new, prompts = 64, [c['prompt'] for c in golden['cases']]
  s = gemma4.Gemma4Sampler(model=f32.model, params=f32.params, tokenizer=tok,
                           sampling=sampling.Greedy(), cache_length=128, max_out_length=new,
                           pad_length=(32,))
  rows = np.asarray(s.sample(prompts, max_new_tokens=new, return_state=True).state.predicted_tokens)
  seqs = [tok.encode(p, add_bos=True) + r.tolist() for p, r in zip(prompts, rows)]
  width = max(map(len, seqs))
  tokens = jnp.asarray([q + [0] * (width - len(q)) for q in seqs])
  ids = jnp.asarray([tok.encode(text, add_bos=True)])

  def measure(params, dot):
    quant.dot = dot  # the layers call quant.dot; a fresh jit traces the form in
    try:
      logits_of = jax.jit(lambda p, t: forward(p, cfg, t)[0])
      logits = np.asarray(logits_of(params, tokens))
      logp = jax.nn.log_softmax(logits_of(params, ids)[0, :-1], -1)
    finally:
      quant.dot = weight_only
    agree = sum(int((logits[i, len(q) - new - 1:len(q) - 1].argmax(-1) == r).sum())
                for i, (q, r) in enumerate(zip(seqs, rows)))
    return agree, float(jnp.exp(-jnp.mean(jnp.take_along_axis(logp, ids[0, 1:, None], -1))))

  _, base = measure(f32.params, weight_only)
  print('\n## Quality on the real Gemma 3 270M (bar: >= 95% agreement, <= +1% perplexity)\n',
        file=out)
  print(f'float32 perplexity {base:.4f}\n', file=out)
  print('| format | greedy agreement with float32 | perplexity | vs float32 |', file=out)
  print('|---|---|---|---|', file=out)
  for name, dot in (('int8 weights (gemma4 today)', weight_only),
                    ('int8 weights x int8 activations, a scale per row', int8_activations()),
                    ('... a scale per 128 columns', int8_activations(128)),
                    ('... a scale per 32 columns', int8_activations(32))):
    agree, ppl = measure(int8.params, dot)
    print(f'| {name} | {agree} / {new * len(prompts)} = {agree / (new * len(prompts)):.1%} | '
          f'{ppl:.4f} | {ppl / base - 1:+.2%} |', file=out, flush=True)


if __name__ == '__main__':
  speed(sys.stdout)
  quality(sys.stdout)
