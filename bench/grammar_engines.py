"""Which grammar engine enforces structured output: llguidance against outlines-core,
side by side on the Gemma 3 270M vocabulary (262144 pieces), on this machine.

For each schema of tests/schemas.py: the time to compile it for the vocabulary, and the
time to compute one next-token mask, median over the steps of a valid instance's tokens
(the instance is a compact JSON document the schema accepts, tokenized by the model's
tokenizer). Engines alternate schema by schema. Coverage: how many schemas each engine
compiles. No torch is imported by either engine.

  .venv/bin/python bench/grammar_engines.py > bench/grammar_engines.txt
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from importlib import metadata

import numpy as np

sys.path.insert(0, '.')
from gemma4 import default_checkpoint_path  # noqa: E402
from gemma4.chat import grammar  # noqa: E402
from gemma4.checkpoints import gguf  # noqa: E402
from tests import schemas  # noqa: E402


def llguidance_engine(tok, end):
  import llguidance
  t0 = time.perf_counter()
  ll = grammar.ll_tokenizer(tok, end)
  setup = time.perf_counter() - t0

  def compile_(schema):
    m = llguidance.LLMatcher(ll, llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema)),
                             log_level=0)
    if m.is_error():  # llguidance reports a schema it cannot take this way, not by raising
      raise ValueError(m.get_error())
    return m

  def step(m, token):
    t = time.perf_counter()
    m.compute_bitmask()
    dt = time.perf_counter() - t
    ok = m.consume_token(token)
    return dt, ok

  return setup, compile_, step


def outlines_engine(tok, end):
  import outlines_core as oc
  t0 = time.perf_counter()
  pieces, special = grammar.token_bytes(tok)
  special = set(special) | set(end)
  vocab = {}
  for i, b in enumerate(pieces):
    if i in special:
      continue
    try:
      s = b.decode('utf-8')
    except UnicodeDecodeError:  # a byte piece: outlines keys tokens by str
      continue
    vocab.setdefault(s, []).append(i)
  v = oc.Vocabulary(end[0], vocab)
  setup = time.perf_counter() - t0

  def compile_(schema):
    regex = oc.json_schema.build_regex_from_schema(json.dumps(schema))
    return oc.Guide(oc.Index(regex, v))

  def step(g, token):
    t = time.perf_counter()
    g.get_tokens()
    dt = time.perf_counter() - t
    try:
      g.advance(token)
      return dt, True
    except Exception:  # noqa: BLE001 (the engine's own refusal)
      return dt, False

  return setup, compile_, step


def main():
  tok = gguf.load_tokenizer(default_checkpoint_path())
  end = (int(tok.special_tokens.EOS), int(tok.special_tokens.END_OF_TURN))
  engines = {'llguidance': llguidance_engine(tok, end), 'outlines-core': outlines_engine(tok, end)}
  print(f'# grammar engines on the Gemma 3 270M vocabulary ({tok.vocab_size} pieces)')
  print(f'# machine: {platform.machine()}, {platform.processor() or "?"}, python {platform.python_version()}')
  print('# versions: ' + ', '.join(f'{p} {metadata.version(p)}' for p in ('llguidance', 'outlines_core')))
  print('# method: per schema, engines alternate; compile = schema to a ready matcher; mask = '
        'median over the steps of a valid instance (compact JSON) of one next-token mask')
  for name, (setup, _, _) in engines.items():
    print(f'# {name}: vocabulary set-up {setup:.2f} s')
  rows = {name: [] for name in engines}
  print(f'{"schema":<24}' + ''.join(f'{n + " compile s":>24}{n + " mask ms":>22}' for n in engines))
  for sname, schema, instance in schemas.SCHEMAS:
    ids = tok.encode(json.dumps(instance, separators=(',', ':'), ensure_ascii=False))
    line = f'{sname:<24}'
    for name, (_, compile_, step) in engines.items():
      t = time.perf_counter()
      try:
        m = compile_(schema)
      except Exception as e:  # noqa: BLE001 (coverage: the engine cannot take the schema)
        line += f'{"failed: " + str(e)[:22]:>24}{"-":>22}'
        rows[name].append(None)
        continue
      c = time.perf_counter() - t
      times = []
      for token in ids:
        dt, ok = step(m, token)
        times.append(dt)
        if not ok:
          break
      ms = statistics.median(times) * 1e3
      rows[name].append((c, ms, ok))
      line += f'{c:>24.3f}{ms:>19.3f}{"" if ok else " !":>3}'
    print(line, flush=True)
  print('# summary (schemas compiled; median compile s; median mask ms; "!" = refused a valid '
        'token of the instance)')
  for name, r in rows.items():
    ok = [x for x in r if x]
    print(f'# {name}: {len(ok)}/{len(r)} compiled, compile {statistics.median(x[0] for x in ok):.3f} s, '
          f'mask {statistics.median(x[1] for x in ok):.3f} ms, '
          f'{sum(1 for x in ok if not x[2])} refused a valid token')


if __name__ == '__main__':
  main()
