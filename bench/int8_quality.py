"""The int8 format's quality on the real Gemma 3 270M, measured as
tests/test_gemma3_270m.py measures it (tests/gemma3_270m_quality.py) and printed instead
of asserted: fed float32's greedy continuation (5 golden prompts x 64 tokens), the share
of positions where int8's argmax agrees; perplexity on tests/golden/perplexity_text.txt,
int8 against float32; and whether int8's greedy rows sampled as one batch equal each
prompt sampled alone.

Not a test: `.venv/bin/python bench/int8_quality.py` (about 1 minute); its figures are
quoted in bench/quant_split.txt.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.*

import gemma4  # noqa: E402
from tests import gemma3_270m_quality as quality  # noqa: E402


def main():
  f32, int8 = gemma4.load_default(quantize=None), gemma4.load_default()
  rows = quality.greedy_rows(f32)
  agree, total = quality.agreement(f32, int8.params, rows)
  base, got = quality.perplexity(f32, f32.params), quality.perplexity(f32, int8.params)
  print(f'agreement {agree}/{total} = {agree / total:.1%}; perplexity float32 {base:.4f}, '
        f'int8 {got:.4f} ({got / base - 1:+.2%})')
  batch = quality.greedy_rows(int8)
  ones = [quality.greedy_rows(int8, [prompt])[0] for prompt in quality.PROMPTS]
  same = sum(int(np.array_equal(b, o)) for b, o in zip(batch, ones))
  print(f'int8 greedy: the batch of {len(ones)} rows equals each prompt alone in {same}/{len(ones)}')
  print(f'int8 greedy rows equal to float32 greedy rows: '
        f'{sum(int(np.array_equal(b, r)) for b, r in zip(ones, rows))}/{len(rows)}')


if __name__ == '__main__':
  main()
