"""Decode tokens/s of the E2B-shaped model (bench/e2b_shaped.py, int8) with the gemma4 of
a given source tree: `PYTHONPATH=<tree>/src .venv/bin/python bench/tree_decode.py <tree>`, run
for two trees in turn (fresh processes, alternating); (64 - 4) tokens over the time of a
64-token call less a 4-token call, median of 3. Output of the run against 9b331a4 (before
the split prefill) kept in bench/tree_decode.txt."""
import os, sys, time
os.environ['GEMMA4_COMPILE_CACHE'] = 'off'
tree = sys.argv[1]
sys.path.insert(0, tree + '/bench'); sys.path.insert(0, tree)
import jax.numpy as jnp, gemma4, e2b_shaped, speed
assert gemma4.__file__.startswith(tree)
model, params, tok = e2b_shaped.build(10, 'int8')
s = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tok, sampling=gemma4.sampling.Greedy(),
                         cache_length=1088, max_out_length=65, pad_length=(16, 128, 1024), forbidden_tokens=[1, 106, 50])
s.sample(speed.SHORT, max_new_tokens=64)
def t(n):
  a = time.perf_counter(); s.sample(speed.SHORT, max_new_tokens=n); return time.perf_counter() - a
r = []
for _ in range(3):
  r.append(60 / (t(64) - t(4)))
r.sort(); print(tree, 'decode tok/s median %.1f (%s)' % (r[1], ' '.join('%.1f' % x for x in r)), flush=True)
