"""Decode speed of the conversation layer's controls, side by side on the real Gemma 3
270M (int8, the CPU default), on this machine.

Engines (all gemma4, one process, alternating in each round, medians over rounds):
  plain        Gemma4Sampler.stream_tokens, the pipelined decode (the reference)
  hook         the same with an allowed_tokens hook that allows everything (the cost of
               a host-side hook: the steps are no longer pipelined)
  json         a JSON-schema answer (llguidance masks, tests/schemas-like long array)
  penalties    repetition 1.1, presence 0.5, frequency 0.5 and a logit bias
Rate: tokens after the first over the time after the first (compiling excluded by a warm
call of each engine before timing). Also `sample()`, the jitted loop, with and without
stop strings that never occur (the automaton runs on every token): rate = (N - 1) /
(t(N new tokens) - t(1 new token)). Also: what leaving a thought out of the history
costs the next turn (the re-prefill from the turn's clean point), against a turn after a
reply without a thought.

  .venv/bin/python bench/chat_decode.py [--rounds 3] > bench/chat_decode.txt
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from importlib import metadata

sys.path.insert(0, '.')
import gemma4  # noqa: E402
from gemma4 import chat  # noqa: E402
from gemma4.chat import grammar  # noqa: E402

PROMPT = 'A list of the names of forty famous scientists, as a JSON array of strings:'
SCHEMA = {'type': 'array', 'items': {'type': 'string', 'maxLength': 40}, 'minItems': 40,
          'maxItems': 40}
N = 160


def rate(ids) -> tuple[float, int]:
  t0, n = None, 0
  for _ in ids:
    n += 1
    if t0 is None:
      t0 = time.perf_counter()
  return (n - 1) / (time.perf_counter() - t0), n


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--rounds', type=int, default=3)
  args = ap.parse_args()
  ck = gemma4.load_default()
  s = gemma4.Gemma4Sampler(model=ck.model, params=ck.params, tokenizer=ck.tokenizer,
                           cache_length=1024, max_out_length=N, pad_length=(64, 128))
  end = s.end_tokens

  def engines():
    return {
        'plain': lambda: s.stream_tokens(PROMPT, max_new_tokens=N),
        'hook': lambda: s.stream_tokens(PROMPT, max_new_tokens=N, allowed_tokens=lambda ids: None),
        'json': lambda: s.stream_tokens(PROMPT, max_new_tokens=N, allowed_tokens=grammar.Constraint(
            ck.tokenizer, SCHEMA, end)),
        'penalties': lambda: s.stream_tokens(PROMPT, max_new_tokens=N, repetition_penalty=1.1,
                                             presence_penalty=0.5, frequency_penalty=0.5,
                                             logit_bias={' the': -2.0}),
    }
  print('# decode speed of the conversation controls, Gemma 3 270M int8 (bench/chat_decode.py)')
  print(f'# machine: {platform.machine()}, python {platform.python_version()}, jax '
        f'{metadata.version("jax")}, llguidance {metadata.version("llguidance")}')
  print(f'# method: {args.rounds} rounds, engines alternate within a round, a warm call each '
        f'first; rate = (tokens - 1) / time after the first token; up to {N} tokens')
  for make in engines().values():  # compile every program first
    rate(make())
  rows = {k: [] for k in engines()}
  lengths = {}
  for _ in range(args.rounds):
    for name, make in engines().items():
      r, n = rate(make())
      rows[name].append(r)
      lengths[name] = n
  base = statistics.median(rows['plain'])
  print(f'{"engine":<12}{"tokens":>8}{"tok/s median":>14}{"min-max":>16}{"x plain":>9}')
  for name, r in rows.items():
    m = statistics.median(r)
    print(f'{name:<12}{lengths[name]:>8}{m:>14.1f}{f"{min(r):.1f}-{max(r):.1f}":>16}{m / base:>9.2f}')

  # sample(stop=): the automaton steps inside the jitted loop; strings that never occur,
  # so both decode all N tokens.
  never = ['<never>', '#####', 'zqzqzq']
  def timed(**kw):
    t = time.perf_counter()
    s.sample(PROMPT, **kw)
    return time.perf_counter() - t
  calls = {'sample': {}, 'sample+stop': {'stop': never}}
  for kw in calls.values():  # compile
    timed(max_new_tokens=N, **kw)
  got = {k: [] for k in calls}
  for _ in range(args.rounds):
    for name, kw in calls.items():
      got[name].append((N - 1) / (timed(max_new_tokens=N, **kw) - timed(max_new_tokens=1, **kw)))
  print(f'# sample(): the jitted loop, {N} tokens, stop={never} (never found) vs none')
  base = statistics.median(got['sample'])
  for name, r in got.items():
    m = statistics.median(r)
    print(f'{name:<12}{N:>8}{m:>14.1f}{f"{min(r):.1f}-{max(r):.1f}":>16}{m / base:>9.2f}')

  # When the history must be rewritten (a thought left out of it; here, on Gemma 3's
  # format, a reply whose text the template trims), the next turn re-prefills from the
  # turn's clean point: the user message and the reply as the history now writes it.
  tok = ck.tokenizer
  print('# the next turn when the cache holds a reply the history writes otherwise (here: '
        'a reply with a leading space, which the Gemma 3 template trims; a Gemma 4 thought '
        'left out works the same way), against one it holds as written')
  text = ' '.join(['Paris is the capital of France and a city of art.'] * 6)
  times = {'rewritten': [], 'as written': []}
  for _ in range(args.rounds):
    for name in times:
      c = chat.ChatSampler(model=ck.model, params=ck.params, tokenizer=tok, multi_turn=True,
                           cache_length=1024, max_out_length=N, pad_length=(64, 128, 256))
      c.chat('Hello there, how are you today?', max_new_tokens=4)
      ids = tok.encode((' ' if name == 'rewritten' else '') + text) + [end[0]]
      c.chat('What is the capital of France?', max_new_tokens=len(ids),
             allowed_tokens=lambda so_far, ids=ids: [ids[len(so_far)]])
      t = time.perf_counter()
      c.chat('And of Italy?', max_new_tokens=1)
      times[name].append(time.perf_counter() - t)
  print(f'# reply: {len(ids)} tokens')
  for name, t in times.items():
    print(f'next turn, {name:<12}{statistics.median(t):>8.3f} s  ({min(t):.3f}-{max(t):.3f})')


if __name__ == '__main__':
  main()
