"""The int8 format's quality measures on the real Gemma 3 270M, shared by
tests/test_gemma3_270m.py (which asserts them) and bench/int8_quality.py (which prints
them): greedy agreement with float32's continuation, and perplexity on a fixed text."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import gemma4
from gemma4 import sampling
from gemma4.transformer import forward

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), 'golden')
GOLDEN = json.load(open(os.path.join(GOLDEN_DIR, 'gemma3_270m.json')))
PROMPTS = [c['prompt'] for c in GOLDEN['cases']]
NEW = 64  # tokens of float32's greedy continuation per prompt

_logits = jax.jit(lambda params, cfg, tokens: forward(params, cfg, tokens)[0], static_argnums=1)


def greedy_rows(ckpt, prompts=PROMPTS) -> np.ndarray:
  """The checkpoint's greedy continuation [len(prompts), NEW] of `prompts` (default: the
  golden ones), sampled as one batch."""
  sampler = gemma4.Gemma4Sampler(model=ckpt.model, params=ckpt.params, tokenizer=ckpt.tokenizer,
                                 sampling=sampling.Greedy(), cache_length=128,
                                 max_out_length=NEW, pad_length=(32,))
  return np.asarray(sampler.sample(list(prompts), max_new_tokens=NEW, return_state=True)
                    .state.predicted_tokens)


def agreement(ckpt, params, rows: np.ndarray) -> tuple[int, int]:
  """Fed the prompts and `rows` (float32's greedy continuation), at how many of the
  NEW positions per prompt `params`' argmax is the next token of `rows`: (agreeing,
  all). Every token of `rows` must be real (no end token)."""
  seqs = [ckpt.tokenizer.encode(p, add_bos=True) + row.tolist() for p, row in zip(PROMPTS, rows)]
  width = max(map(len, seqs))
  tokens = jnp.asarray([s + [0] * (width - len(s)) for s in seqs])  # 0: padding at the end
  logits = np.asarray(_logits(params, ckpt.model.config, tokens))
  agree = 0
  for i, (s, row) in enumerate(zip(seqs, rows)):
    assert 0 not in row.tolist()  # no end token: all NEW are real
    start = len(s) - NEW
    agree += int((logits[i, start - 1:len(s) - 1].argmax(-1) == row).sum())
  return agree, NEW * len(PROMPTS)


def perplexity(ckpt, params) -> float:
  """`params`' perplexity on tests/golden/perplexity_text.txt."""
  text = open(os.path.join(GOLDEN_DIR, 'perplexity_text.txt')).read()
  ids = jnp.asarray([ckpt.tokenizer.encode(text, add_bos=True)])
  assert ids.shape[1] > 200
  logp = jax.nn.log_softmax(_logits(params, ckpt.model.config, ids)[0, :-1], axis=-1)
  return float(jnp.exp(-jnp.mean(jnp.take_along_axis(logp, ids[0, 1:, None], -1))))
