"""The int8 format's quality on the real Gemma 3 270M, as tests/test_gemma3_270m.py
measures it, printed instead of asserted: fed float32's greedy continuation (5 golden
prompts x 64 tokens), the share of positions where int8's argmax agrees; perplexity on
tests/golden/perplexity_text.txt, int8 against float32; and whether int8's greedy rows
sampled as one batch equal each prompt sampled alone.

Not a test: `.venv/bin/python bench/int8_quality.py` (about 1 minute); its figures are
quoted in bench/quant_split.txt.
"""
import json
import os
import numpy as np, jax, jax.numpy as jnp
import gemma4
from gemma4 import sampling
from gemma4.transformer import forward
T = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'golden', '')
GOLDEN = json.load(open(T + 'gemma3_270m.json'))
ckpt = gemma4.load_default(quantize=None); int8 = gemma4.load_default()
_logits = jax.jit(lambda params, cfg, tokens: forward(params, cfg, tokens)[0], static_argnums=1)
new = 64
prompts = [c['prompt'] for c in GOLDEN['cases']]
sampler = gemma4.Gemma4Sampler(model=ckpt.model, params=ckpt.params, tokenizer=ckpt.tokenizer,
                               sampling=sampling.Greedy(), cache_length=128, max_out_length=new, pad_length=(32,))
rows = np.asarray(sampler.sample(prompts, max_new_tokens=new, return_state=True).state.predicted_tokens)
seqs = [ckpt.tokenizer.encode(p, add_bos=True) + row.tolist() for p, row in zip(prompts, rows)]
width = max(map(len, seqs))
tokens = jnp.asarray([s + [0] * (width - len(s)) for s in seqs])
logits = np.asarray(_logits(int8.params, ckpt.model.config, tokens))
agree = 0
for i, (s, row) in enumerate(zip(seqs, rows)):
    start = len(s) - new
    agree += int((logits[i, start - 1:len(s) - 1].argmax(-1) == row).sum())
text = open(T + 'perplexity_text.txt').read()
ids = jnp.asarray([ckpt.tokenizer.encode(text, add_bos=True)])
def perplexity(params):
    logp = jax.nn.log_softmax(_logits(params, ckpt.model.config, ids)[0, :-1], axis=-1)
    return float(jnp.exp(-jnp.mean(jnp.take_along_axis(logp, ids[0, 1:, None], -1))))
base, got = perplexity(ckpt.params), perplexity(int8.params)
print(f'agreement {agree}/{new*len(prompts)} = {agree/new/len(prompts):.1%}; perplexity f32 {base:.4f} int8 {got:.4f} ({got/base-1:+.2%})')
# int8 sampler batch vs one-by-one (greedy): do rows agree?
s8 = gemma4.Gemma4Sampler(model=int8.model, params=int8.params, tokenizer=int8.tokenizer,
                          sampling=sampling.Greedy(), cache_length=128, max_out_length=new, pad_length=(32,))
batch = np.asarray(s8.sample(prompts, max_new_tokens=new, return_state=True).state.predicted_tokens)
ones = [np.asarray(s8.sample([p], max_new_tokens=new, return_state=True).state.predicted_tokens)[0] for p in prompts]
same = sum(int(np.array_equal(b, o)) for b, o in zip(batch, ones))
first = [int(np.argmax(b != o)) if not np.array_equal(b, o) else None for b, o in zip(batch, ones)]
print(f'int8 greedy: batch of 5 rows equal to one-by-one rows: {same}/5; first difference at {first}')
print('int8 greedy vs f32 greedy tokens equal:', sum(int((b == r).all()) for b, r in zip(ones, rows)), '/5')
