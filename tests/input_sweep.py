"""Unusual inputs to every public argument of gemma4, as data (issue 11).

Each `Case` targets one argument of the public API, calls it through a `Ctx` (a tiny
E2B model with its vision and audio encoders, a test tokenizer, small files written on
demand) and states what must happen:

  'error'   a ValueError or TypeError (FileNotFoundError / OSError for missing files,
            gemma4.CheckpointError, a ValueError, for damaged ones) whose message names
            the argument or the value (`names`: any one of them, case-insensitive);
  'ok'      accepted, with the right result (`check` raises AssertionError otherwise);
  'either'  accepted with the right result, or refused as for 'error' (inputs where both
            are defensible: only a crash or a wrong result is a failure).

`classify` runs one case under a time limit and names the outcome:

  OK      the expectation is met;
  SILENT  an error was expected but the call was accepted, or an accepted call gave a
          wrong result;
  RAW     another exception type (AttributeError, KeyError, IndexError, OverflowError,
          ZeroDivisionError, RuntimeError, XlaRuntimeError, ...), a ValueError/TypeError
          whose message names neither the argument nor the value, or, for the CLI, a
          traceback, an exit status other than 1 or not one `gemma4: error:` line;
  HANG    over the time limit;
  OVER    an 'ok' case refused.

Only the public API is used (gemma4.Gemma4Sampler and its sample/stream,
gemma4.sampling, gemma4.models, Model.init/apply/init_cache, gemma4.load_checkpoint,
gemma4.Gemma4Tokenizer, gemma4.audio.load/resample/prepare, the `gemma4` command), so the
same cases run on any checkout: scripts/input_sweep.py compares the code before issue
11 (13243c6) with the current one, tests/test_input_sweep.py asserts every case is OK.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import wave
from collections.abc import Callable
from typing import Any

import numpy as np

CLASSES = ('OK', 'SILENT', 'RAW', 'HANG', 'OVER')
TIME_LIMIT = 60.0  # seconds per case
CLI_TIMEOUT = 90.0  # seconds per `gemma4` process (its case gets 10 s more: CLI_LIMIT)
CLI_LIMIT = CLI_TIMEOUT + 10

PROMPT = 'Hello world'
IMAGE_PROMPT = 'Look: <|image|>'
AUDIO_PROMPT = 'Hear: <|audio|>'
VOCAB = 262144


# --- cases --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
  """One unusual input. `arg` names the argument ('Gemma4Sampler.cache_length',
  'sample.rng', 'cli --seed'); an error's message must contain one of `names` (default:
  the argument's own name, the part after the last '.' or space)."""

  id: str
  arg: str
  run: Callable[['Ctx'], Any]
  expect: str  # 'error', 'ok' or 'either'
  names: tuple[str, ...] = ()
  errors: tuple[type, ...] = (ValueError, TypeError)
  check: Callable[['Ctx', Any], Any] | None = None
  cli: bool = False  # a `gemma4` process (slow: each imports jax)
  slow: bool = False  # in the script only, not in the default test

  @property
  def wanted_names(self) -> tuple[str, ...]:
    if self.names:
      return self.names
    return (self.arg.replace(' ', '.').rsplit('.', 1)[-1],)


@dataclasses.dataclass(frozen=True)
class Result:
  id: str
  arg: str
  expect: str
  cls: str
  detail: str
  seconds: float


class _Timeout(BaseException):
  """Raised by the alarm; a BaseException so that no `except Exception` swallows it."""


@dataclasses.dataclass(frozen=True)
class CliRun:
  """What a `gemma4` process did."""

  rc: int
  out: str
  err: str


def _one_line(e: BaseException) -> str:
  msg = ' '.join(str(e).split())
  return f'{type(e).__name__}: {msg[:300]}'


def _names_in(text: str, names: tuple[str, ...]) -> bool:
  """Whether `text` names one of `names` as a word of its own (case-insensitive, a
  plural 's' allowed): 'sampling' is not named by 'SamplingMethod.check()', nor 'rate'
  by 'audio_sample_rate' (name that one in full)."""
  for n in names:
    before = r'(?<![\w])' if n[:1].isalnum() or n[:1] == '_' else ''
    after = r's?(?![\w])' if n[-1:].isalnum() or n[-1:] == '_' else ''
    if re.search(before + re.escape(n) + after, text, re.IGNORECASE):
      return True
  return False


def _classify_cli(case: Case, run: CliRun) -> tuple[str, str]:
  lines = run.err.splitlines()
  errors = [line for line in lines if line.startswith('gemma4: error: ')]
  others = [line for line in lines if line not in errors and not line.startswith(('gemma4: ', '  '))]
  tail = ' | '.join(lines[-3:])[:300]
  if case.expect == 'ok':
    if run.rc == 0:
      return 'OK', ''
    return ('RAW' if 'Traceback' in run.err else 'OVER'), f'exit {run.rc}: {tail}'
  if 'Traceback' in run.err:
    last = next((line for line in reversed(lines) if line.strip()), '')
    return 'RAW', f'exit {run.rc}, traceback: {last[:300]}'
  if run.rc == 0:
    return 'SILENT', f'exit 0: {tail}'
  if run.rc != 1 or len(errors) != 1 or others:
    return 'RAW', f'exit {run.rc}, not one error line: {tail}'
  if not _names_in(errors[0], case.wanted_names):
    return 'RAW', f'names none of {list(case.wanted_names)}: {errors[0][:300]}'
  return 'OK', errors[0][:300]


def _classify(case: Case, ctx: 'Ctx') -> tuple[str, str]:
  try:
    value = case.run(ctx)
  except _Timeout:
    raise
  except Exception as e:  # noqa: BLE001 - every exception is classified
    if case.expect == 'ok':
      if isinstance(e, (ValueError, TypeError, OSError)) and not _is_jax_error(e):
        return 'OVER', _one_line(e)
      return 'RAW', _one_line(e)
    if not isinstance(e, case.errors) or _is_jax_error(e):
      return 'RAW', _one_line(e)
    if not _names_in(str(e), case.wanted_names):
      return 'RAW', f'names none of {list(case.wanted_names)}: {_one_line(e)}'
    return 'OK', _one_line(e)
  if isinstance(value, CliRun):
    return _classify_cli(case, value)
  if case.expect == 'error':
    return 'SILENT', f'accepted: {_short(value)}'
  if case.check is not None:
    try:
      if case.check(ctx, value) is False:
        return 'SILENT', f'wrong result: {_short(value)}'
    except _Timeout:
      raise
    except AssertionError as e:
      return 'SILENT', f'wrong result: {" ".join(str(e).split())[:300] or _short(value)}'
    except Exception as e:  # noqa: BLE001 - the result could not even be checked
      return 'SILENT', f'wrong result ({_one_line(e)}): {_short(value)}'
  return 'OK', ''


def _is_jax_error(e: BaseException) -> bool:
  """JAX's own errors (XlaRuntimeError, tracer errors, ...): raw whatever their base."""
  mod = type(e).__module__ or ''
  return mod.startswith(('jax', 'jaxlib')) and type(e).__name__ not in ('ValueError', 'TypeError')


def _short(value: Any) -> str:
  text = value.text if hasattr(value, 'text') and hasattr(value, 'state') else value
  r = ' '.join(repr(text).split())
  return r if len(r) <= 120 else r[:117] + '...'


def classify(case: Case, ctx: 'Ctx', limit: float = TIME_LIMIT) -> Result:
  """Runs one case under `limit` seconds (SIGALRM, main thread) and classifies it."""
  if case.cli:  # a process that loads a model and samples may take longer
    limit = max(limit, CLI_LIMIT)
  t0 = time.perf_counter()
  old = signal.signal(signal.SIGALRM, _alarm)
  signal.setitimer(signal.ITIMER_REAL, limit)
  try:
    cls, detail = _classify(case, ctx)
  except _Timeout:
    cls, detail = 'HANG', f'over {limit:g} s'
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)
  return Result(case.id, case.arg, case.expect, cls, detail, time.perf_counter() - t0)


def _alarm(signum, frame):
  raise _Timeout()


# --- the context: a tiny model, a tokenizer, files ----------------------------------------

class Ctx:
  """What the cases call: built lazily, once, and shared (the tiny model's compiled
  programs are reused across cases with the same shapes)."""

  def __init__(self, root: str | os.PathLike | None = None):
    self.root = pathlib.Path(root or tempfile.mkdtemp(prefix='gemma4-sweep-'))
    self._memo: dict = {}

  def memo(self, key, make: Callable[[], Any]):
    if key not in self._memo:
      self._memo[key] = make()
    return self._memo[key]

  # the tokenizer and models
  @property
  def tok_path(self) -> pathlib.Path:
    from tests import tokenizer_util
    cache = pathlib.Path(tempfile.gettempdir()) / 'gemma4-input-sweep'
    cache.mkdir(exist_ok=True)
    return self.memo('tok_path', lambda: tokenizer_util.build(cache / 'tokenizer.model'))

  @property
  def tok(self):
    import gemma4
    return self.memo('tok', lambda: gemma4.Gemma4Tokenizer(self.tok_path))

  @property
  def model(self):
    import gemma4
    return self.memo('model', lambda: gemma4.models.tiny('e2b', text_only=False))

  @property
  def params(self):
    return self.memo('params', lambda: self.model.init(0))

  @property
  def text_model(self):
    import gemma4
    return self.memo('text_model', lambda: gemma4.models.tiny('gemma3_270m'))

  @property
  def text_params(self):
    return self.memo('text_params', lambda: self.text_model.init(0))

  def sampler(self, **kw):
    import gemma4
    args = dict(model=self.model, params=self.params, tokenizer=self.tok, cache_length=256,
                max_out_length=4, pad_length=(32, 128, 256), max_soft_tokens=70)
    args.update(kw)
    return gemma4.Gemma4Sampler(**args)

  @property
  def s(self):
    return self.memo('s', self.sampler)

  def out(self, prompt=PROMPT, sampler=None, **kw):
    """sample(..., return_state=True), max_new_tokens 2 unless given."""
    kw.setdefault('max_new_tokens', 2)
    return (sampler or self.s).sample(prompt, return_state=True, **kw)

  @property
  def base(self):
    """The greedy 2 tokens of PROMPT."""
    return self.memo('base', lambda: self.out())

  def turn1(self):
    """A fresh first turn (its own state: a case may spoil what it is given)."""
    return self.out()

  def first_token_text(self) -> str:
    """The text of the first greedy token of PROMPT: one piece, one token."""
    t = int(self.base.tokens[0])
    text = self.tok.decode([t])
    assert self.tok.encode(text) == [t], (t, text)
    return text

  # media
  @property
  def img(self) -> np.ndarray:
    return self.memo('img', lambda: np.random.default_rng(0).integers(
        0, 256, (20, 30, 3), dtype=np.uint8))

  @property
  def gray(self) -> np.ndarray:
    return self.memo('gray', lambda: np.random.default_rng(1).integers(
        0, 256, (20, 30), dtype=np.uint8))

  @property
  def binary(self) -> np.ndarray:
    return self.memo('binary', lambda: np.random.default_rng(2).integers(0, 2, (20, 30)) > 0)

  def img_out(self, images, prompt=IMAGE_PROMPT, **kw):
    kw.setdefault('max_new_tokens', 1)
    return self.out(prompt, images=images, **kw)

  def img_ref(self, rgb: np.ndarray):
    """The output for one RGB uint8 image (the reference of equivalent inputs)."""
    rgb = np.ascontiguousarray(rgb, np.uint8)
    return self.memo(('img_ref', rgb.shape, rgb.tobytes()), lambda: self.img_out([rgb]))

  @property
  def clip(self) -> np.ndarray:
    return self.memo('clip', lambda: (0.3 * np.sin(np.arange(16000) * 0.05)
                                      + 0.1 * np.random.default_rng(3).standard_normal(16000)
                                      ).astype(np.float32))

  def aud_out(self, audio, prompt=AUDIO_PROMPT, sampler=None, **kw):
    kw.setdefault('max_new_tokens', 1)
    return self.out(prompt, sampler=sampler, audio=audio, **kw)

  def aud_ref(self, clip: np.ndarray):
    clip = np.ascontiguousarray(clip, np.float32)
    return self.memo(('aud_ref', clip.shape, clip.tobytes()), lambda: self.aud_out([clip]))

  @property
  def logits(self):
    import jax.numpy as jnp
    return self.memo('logits', lambda: jnp.asarray(
        np.random.default_rng(4).standard_normal((2, 50)).astype(np.float32) * 3))

  @property
  def key(self):
    import jax
    return self.memo('key', lambda: jax.random.key(0))

  # files
  def path(self, name: str) -> pathlib.Path:
    p = self.root / name
    p.parent.mkdir(parents=True, exist_ok=True)
    return p

  def dir(self, name: str) -> pathlib.Path:
    p = self.path(name)
    p.mkdir(exist_ok=True)
    return p

  def file(self, name: str, data: bytes | str) -> pathlib.Path:
    p = self.path(name)
    if isinstance(data, str):
      data = data.encode()
    p.write_bytes(data)
    return p

  def hf_dir(self, name: str, config: Any = None, damage: Callable | None = None) -> pathlib.Path:
    """A tiny HF directory (gemma4_text, 2 layers, vocabulary 64): config.json (a dict,
    or raw text) and model.safetensors; `damage(file)` then spoils the weights file."""
    def make():
      d = self.path(name)
      d.mkdir(exist_ok=True)
      cfg = HF_CONFIG if config is None else config
      (d / 'config.json').write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
      _write_safetensors(d / 'model.safetensors', _hf_tensors())
      if damage is not None:
        damage(d / 'model.safetensors')
      return d
    return self.memo(('hf', name), make)

  @property
  def gguf_file(self) -> pathlib.Path:
    return self.memo('gguf', lambda: _write_gguf(self.path('tiny.gguf')))

  def gguf_cut(self, name: str, size: int) -> pathlib.Path:
    data = self.gguf_file.read_bytes()
    return self.memo(('gguf_cut', name), lambda: self.file(name, data[:size]))

  def wav(self, name: str, samples: np.ndarray, rate: int = 16000, width: int = 2,
          channels: int = 1, cut: int | None = None) -> pathlib.Path:
    """A PCM WAV of integer `samples` [n, channels] (already in the width's range);
    `cut` keeps that many bytes of the file."""
    p = self.path(name)
    with wave.open(str(p), 'wb') as f:
      f.setnchannels(channels)
      f.setsampwidth(width)
      f.setframerate(rate)
      f.writeframes(_pcm_bytes(samples, width))
    if cut is not None:
      p.write_bytes(p.read_bytes()[:cut])
    return p

  def cli(self, *argv: str, stdin: str | None = None) -> CliRun:
    """`python -m gemma4 ARGV` in a fresh process (the gemma4 of this process's
    sys.path first, so that the sweep of another checkout runs its CLI; this process's
    persistent XLA cache, if any; stdin empty unless given). Over CLI_TIMEOUT: HANG."""
    import gemma4
    import jax
    src = str(pathlib.Path(gemma4.__file__).resolve().parent.parent)
    env = dict(os.environ, JAX_PLATFORMS='cpu',
               PYTHONPATH=os.pathsep.join([src] + [p for p in os.environ.get(
                   'PYTHONPATH', '').split(os.pathsep) if p]))
    cache = jax.config.jax_compilation_cache_dir
    if cache:
      env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=str(
          jax.config.jax_persistent_cache_min_compile_time_secs))
    io = dict(input=stdin) if stdin is not None else dict(stdin=subprocess.DEVNULL)
    try:
      p = subprocess.run([sys.executable, '-m', 'gemma4', *argv], capture_output=True,
                         text=True, timeout=CLI_TIMEOUT, cwd=self.root, env=env, **io)
    except subprocess.TimeoutExpired as e:
      raise _Timeout() from e
    return CliRun(p.returncode, p.stdout, p.stderr)


# HF: the config of a tiny gemma4_text model and its tensors (every weight the loader maps)
HF_CONFIG = dict(model_type='gemma4_text', vocab_size=64, hidden_size=16, intermediate_size=32,
                 num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                 global_head_dim=8, layer_types=['sliding_attention', 'full_attention'],
                 sliding_window=4, final_logit_softcapping=30.0)

_HF_LAYER = {'input_layernorm.weight': (16,), 'self_attn.q_proj.weight': (16, 16),
             'self_attn.o_proj.weight': (16, 16), 'self_attn.q_norm.weight': (8,),
             'post_attention_layernorm.weight': (16,),
             'post_feedforward_layernorm.weight': (16,), 'self_attn.k_norm.weight': (8,),
             'self_attn.k_proj.weight': (8, 16), 'self_attn.v_proj.weight': (8, 16),
             'layer_scalar': (1,), 'mlp.gate_proj.weight': (32, 16),
             'mlp.up_proj.weight': (32, 16), 'mlp.down_proj.weight': (16, 32),
             'pre_feedforward_layernorm.weight': (16,)}


def _hf_tensors() -> dict:
  shapes = {'model.embed_tokens.weight': (64, 16), 'model.norm.weight': (16,)}
  for i in range(2):
    shapes.update({f'model.layers.{i}.{k}': v for k, v in _HF_LAYER.items()})
  rng = np.random.default_rng(5)
  return {k: (0.1 * rng.standard_normal(v)).astype(np.float32) for k, v in shapes.items()}


def _write_safetensors(path, tensors: dict) -> None:
  """The safetensors format by hand: 8-byte header length, JSON header, raw data."""
  header, offset = {'__metadata__': {'format': 'pt'}}, 0
  for name, x in tensors.items():
    header[name] = {'dtype': 'F32', 'shape': list(x.shape),
                    'data_offsets': [offset, offset + x.nbytes]}
    offset += x.nbytes
  text = json.dumps(header).encode()
  with open(path, 'wb') as f:
    f.write(len(text).to_bytes(8, 'little'))
    f.write(text)
    for x in tensors.values():
      f.write(np.ascontiguousarray(x).tobytes())


def _truncate(by: int):
  def damage(file):
    data = file.read_bytes()
    file.write_bytes(data[:len(data) - by])
  return damage


def _header_length(n: int):
  def damage(file):
    data = file.read_bytes()
    file.write_bytes(n.to_bytes(8, 'little') + data[8:])
  return damage


# GGUF: a tiny gemma3 file written with the gguf package (6 blocks of width 64, vocab 320)
_GGUF_META = {'embedding_length': 64, 'block_count': 6, 'feed_forward_length': 128,
              'attention.head_count': 4, 'attention.head_count_kv': 1,
              'attention.key_length': 16, 'attention.value_length': 16,
              'attention.sliding_window': 8, 'rope.freq_base': 1_000_000.0,
              'attention.layer_norm_rms_epsilon': 1e-6, 'context_length': 512}
_GGUF_BLOCK = {'attn_norm.weight': (64,), 'attn_q.weight': (64, 64),
               'attn_output.weight': (64, 64), 'attn_q_norm.weight': (16,),
               'post_attention_norm.weight': (64,), 'post_ffw_norm.weight': (64,),
               'attn_k_norm.weight': (16,), 'attn_k.weight': (16, 64),
               'attn_v.weight': (16, 64), 'ffn_gate.weight': (128, 64),
               'ffn_up.weight': (128, 64), 'ffn_down.weight': (64, 128),
               'ffn_norm.weight': (64,)}


def _write_gguf(path: pathlib.Path) -> pathlib.Path:
  import gguf
  n = 320
  tokens = ['<pad>', '<eos>', '<bos>', '<unk>', '<mask>'] + [f'<0x{i:02X}>' for i in range(256)]
  types = [3, 3, 3, 2, 3] + [6] * 256
  letters = ['\u2581' + c for c in 'abcdefghij'] + list('abcdefghij')
  tokens += letters + [f'<f{i}>' for i in range(n - len(tokens) - len(letters))]
  types += [1] * len(letters) + [4] * (n - len(types) - len(letters))
  w = gguf.GGUFWriter(str(path), 'gemma3')
  for key, value in _GGUF_META.items():
    (w.add_uint32 if isinstance(value, int) else w.add_float32)(f'gemma3.{key}', value)
  w.add_tokenizer_model('llama')
  w.add_token_list(tokens)
  w.add_token_scores([-float(i) for i in range(n)])
  w.add_token_types(types)
  w.add_bos_token_id(2)
  w.add_eos_token_id(1)
  w.add_unk_token_id(3)
  w.add_pad_token_id(0)
  rng = np.random.default_rng(6)
  shapes = {'token_embd.weight': (n, 64), 'output_norm.weight': (64,)}
  for i in range(6):
    shapes.update({f'blk.{i}.{k}': v for k, v in _GGUF_BLOCK.items()})
  for name, shape in shapes.items():
    w.add_tensor(name, (0.1 * rng.standard_normal(shape)).astype(np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


def _pcm_bytes(samples: np.ndarray, width: int) -> bytes:
  s = np.asarray(samples)
  if width == 1:
    return s.astype(np.uint8).tobytes()
  if width == 2:
    return s.astype('<i2').tobytes()
  if width == 3:
    v = s.astype(np.int64).reshape(-1) & 0xFFFFFF
    return np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], -1).astype(np.uint8).tobytes()
  return s.astype('<i4').tobytes()


# --- checks -------------------------------------------------------------------------------

def same_out(a, b, atol: float = 0.0) -> None:
  """Two SamplerOutputs with the same tokens and the same log-probabilities: exactly by
  default (the same pixels or samples reach the encoder through the same program),
  within `atol` where the program differs (another padded prompt length)."""
  assert np.array_equal(a.tokens, b.tokens), f'tokens {a.tokens} != {b.tokens}'
  assert np.allclose(a.logprobs, b.logprobs, rtol=0, atol=atol), (
      f'logprobs {a.logprobs} != {b.logprobs}')


def _eq(want: Callable[['Ctx'], Any], atol: float = 0.0):
  """A check: the result equals want(ctx) as a SamplerOutput (tokens, log-probs)."""
  def check(ctx, value):
    same_out(value, want(ctx), atol)
  return check


def _text_is(want: Callable[['Ctx'], str]):
  def check(ctx, value):
    assert value == want(ctx), f'{value!r} != {want(ctx)!r}'
  return check


def _is_str(ctx, value):
  assert isinstance(value, str), type(value).__name__


def _argmax(ctx, value):
  want = np.argmax(np.asarray(ctx.logits), -1)
  assert np.array_equal(np.asarray(value), want), f'{np.asarray(value)} != argmax {want}'


def _same_tokens(ctx, pair):
  a, b = pair
  assert np.array_equal(a.tokens, b.tokens), f'{a.tokens} != {b.tokens}'


def _differ(ctx, pair):
  a, b = pair
  assert not np.array_equal(a.tokens, b.tokens), f'the same tokens {a.tokens}'


# --- the cases ----------------------------------------------------------------------------

def _e(cases, id, arg, run, names=(), errors=(ValueError, TypeError), slow=False):
  cases.append(Case(id, arg, run, 'error', tuple(names), errors, slow=slow))


def _ok(cases, id, arg, run, check=None, slow=False):
  cases.append(Case(id, arg, run, 'ok', check=check, slow=slow))


def _either(cases, id, arg, run, check=None, names=(), errors=(ValueError, TypeError),
            slow=False):
  cases.append(Case(id, arg, run, 'either', tuple(names), errors, check=check, slow=slow))


FILE_ERRORS = (ValueError, TypeError, OSError)


def _sampler_cases(c: list) -> None:
  S = 'Gemma4Sampler.'
  import gemma4

  def make(**kw):
    return lambda ctx: ctx.sampler(**kw)

  # model
  _e(c, 'model-none', S + 'model', make(model=None))
  _e(c, 'model-str', S + 'model', make(model='gemma4_e2b'))
  _e(c, 'model-config', S + 'model', lambda ctx: ctx.sampler(model=ctx.model.config))
  _e(c, 'model-dict', S + 'model', make(model={'name': 'e2b'}))
  # params
  _e(c, 'params-none', S + 'params', make(params=None), names=('params',))
  _e(c, 'params-empty', S + 'params', make(params={}), names=('params', 'missing'))
  _e(c, 'params-other-model', S + 'params',
     lambda ctx: ctx.sampler(params=ctx.text_params), names=('params', 'missing'))
  _e(c, 'params-int-leaves', S + 'params', lambda ctx: ctx.sampler(
      params=_map_leaves(ctx.params, lambda x: np.zeros(x.shape, np.int32))),
     names=('dtype', 'params'))
  _e(c, 'params-missing-key', S + 'params', lambda ctx: ctx.sampler(
      params={k: v for k, v in ctx.params.items() if k != 'final_norm'}),
     names=('final_norm',))
  _ok(c, 'params-wrapped', S + 'params', lambda ctx: ctx.out(
      sampler=ctx.sampler(params={'params': ctx.params})), _eq(lambda ctx: ctx.base))
  # tokenizer
  _e(c, 'tokenizer-none', S + 'tokenizer', make(tokenizer=None))
  _e(c, 'tokenizer-int', S + 'tokenizer', make(tokenizer=5))
  _ok(c, 'tokenizer-path-str', S + 'tokenizer', lambda ctx: ctx.out(
      sampler=ctx.sampler(tokenizer=str(ctx.tok_path))), _eq(lambda ctx: ctx.base))
  _ok(c, 'tokenizer-pathlib', S + 'tokenizer', lambda ctx: ctx.out(
      sampler=ctx.sampler(tokenizer=pathlib.Path(ctx.tok_path))), _eq(lambda ctx: ctx.base))
  _e(c, 'tokenizer-missing-file', S + 'tokenizer', lambda ctx: ctx.sampler(
      tokenizer=str(ctx.root / 'none.model')), names=('none.model',), errors=FILE_ERRORS)
  _e(c, 'tokenizer-not-sentencepiece', S + 'tokenizer', lambda ctx: ctx.sampler(
      tokenizer=str(ctx.file('junk.model', b'not a model'))), names=('junk.model',),
     errors=FILE_ERRORS)
  _e(c, 'tokenizer-other-vocab', S + 'tokenizer', lambda ctx: ctx.sampler(
      tokenizer=gemma4.Gemma4Tokenizer(_small_tokenizer(ctx))), names=('tokenizer', 'pieces'))
  # sampling
  _e(c, 'sampling-str', S + 'sampling', make(sampling='greedy'))
  _e(c, 'sampling-int', S + 'sampling', make(sampling=0))
  _e(c, 'sampling-class-not-instance', S + 'sampling',
     lambda ctx: ctx.sampler(sampling=gemma4.sampling.Greedy), names=('sampling',))
  _e(c, 'sampling-topk-class', S + 'sampling',
     lambda ctx: ctx.sampler(sampling=gemma4.sampling.TopkSampling), names=('sampling',))
  _e(c, 'sampling-function', S + 'sampling', make(sampling=lambda logits, rng: logits.argmax(-1)))
  _e(c, 'sampling-unhashable', S + 'sampling', lambda ctx: ctx.sampler(sampling=_Unhashable()))
  _e(c, 'sampling-topk-above-vocab', S + 'sampling', lambda ctx: ctx.sampler(
      sampling=gemma4.sampling.TopkSampling(k=VOCAB + 1)), names=('vocabulary', 'k='))
  _e(c, 'sampling-combined-topk-above-vocab', S + 'sampling', lambda ctx: ctx.sampler(
      sampling=gemma4.sampling.Combined(top_k=10 ** 6)), names=('vocabulary', 'top_k'))
  _ok(c, 'sampling-topk-equal-vocab', S + 'sampling', lambda ctx: ctx.sampler(
      sampling=gemma4.sampling.TopkSampling(k=VOCAB)))
  _ok(c, 'sampling-duck-typed', S + 'sampling', lambda ctx: ctx.out(
      sampler=ctx.sampler(sampling=_DuckGreedy())), _eq(lambda ctx: ctx.base))
  # forbidden_tokens / stop_tokens
  for name in ('forbidden_tokens', 'stop_tokens'):
    n = S + name
    _e(c, f'{name}-multi-token-str', n, make(**{name: 'Hello world'}),
       names=(name, 'Hello world'))
    _e(c, f'{name}-list-multi-token', n, make(**{name: ['Hello world']}),
       names=(name, 'Hello world'))
    _e(c, f'{name}-id-past-vocab', n, make(**{name: [VOCAB]}), names=(name, str(VOCAB)))
    _e(c, f'{name}-negative-id', n, make(**{name: [-1]}), names=(name, '-1'))
    _e(c, f'{name}-bool', n, make(**{name: [True]}), names=(name, 'True'))
    _e(c, f'{name}-float', n, make(**{name: [1.5]}), names=(name, '1.5'))
    _e(c, f'{name}-bytes', n, make(**{name: [b'<eos>']}), names=(name, "b'<eos>'"))
    _e(c, f'{name}-dict', n, make(**{name: {'<eos>': 1}}), names=(name,))
    _e(c, f'{name}-unknown-piece', n, make(**{name: ['\u2603\u2603\u2603']}),
       names=(name, '\u2603'))
    _ok(c, f'{name}-none', n, make(**{name: None}))
    _ok(c, f'{name}-empty-list', n, make(**{name: []}))
  # a forbidden first token: the greedy text changes; as one str, one int, one array
  def forbid(value_of):
    def run(ctx):
      return ctx.out(sampler=ctx.sampler(forbidden_tokens=value_of(ctx)))
    return run

  def not_first(ctx, out):
    t0 = int(ctx.base.tokens[0])
    assert t0 not in out.tokens.tolist(), f'forbidden token {t0} sampled: {out.tokens}'
  _ok(c, 'forbidden_tokens-one-str', S + 'forbidden_tokens',
      forbid(lambda ctx: ctx.first_token_text()), not_first)
  _ok(c, 'forbidden_tokens-one-int', S + 'forbidden_tokens',
      forbid(lambda ctx: int(ctx.base.tokens[0])), not_first)
  _ok(c, 'forbidden_tokens-numpy-array', S + 'forbidden_tokens',
      forbid(lambda ctx: np.array([ctx.base.tokens[0]])), not_first)
  _ok(c, 'forbidden_tokens-list-str', S + 'forbidden_tokens',
      forbid(lambda ctx: [ctx.first_token_text()]), not_first)

  def stop(value_of):
    def run(ctx):
      return ctx.out(sampler=ctx.sampler(stop_tokens=value_of(ctx)))
    return run

  def stops_after_first(ctx, out):
    t0 = int(ctx.base.tokens[0])
    assert out.tokens.tolist()[:2] == [t0, 0], f'did not stop at {t0}: {out.tokens}'
  _ok(c, 'stop_tokens-one-str', S + 'stop_tokens', stop(lambda ctx: ctx.first_token_text()),
      stops_after_first)
  _ok(c, 'stop_tokens-one-int', S + 'stop_tokens', stop(lambda ctx: int(ctx.base.tokens[0])),
      stops_after_first)
  _ok(c, 'stop_tokens-numpy-int', S + 'stop_tokens',
      stop(lambda ctx: np.int64(ctx.base.tokens[0])), stops_after_first)
  # the int fields
  for name in ('cache_length', 'max_out_length', 'audio_seq_length'):
    for label, value in (('zero', 0), ('negative', -3), ('float', 64.0), ('float-frac', 2.5),
                         ('str', '64'), ('none', None), ('bool', True)):
      _e(c, f'{name}-{label}', S + name, make(**{name: value}))
    _ok(c, f'{name}-numpy-int', S + name, make(**{name: np.int64(64)}))
  for label, value in (('zero', 0), ('negative', -16000), ('float', 16000.5), ('str', '16000'),
                       ('none', None), ('bool', True)):
    _e(c, f'audio_sample_rate-{label}', S + 'audio_sample_rate', make(audio_sample_rate=value))
  for name, good, other in (('patch_size', 16, 14), ('pooling_kernel_size', 3, 2)):
    _e(c, f'{name}-disagrees-with-encoder', S + name, make(**{name: other}))
    for label, value in (('zero', 0), ('str', str(good)), ('float', float(good)),
                         ('none', None)):
      _e(c, f'{name}-{label}', S + name, make(**{name: value}))
    _ok(c, f'{name}-the-encoders', S + name, make(**{name: good}))
  # pad_length
  for label, value in (('zero', 0), ('negative', -1), ('tuple-zero', (0,)),
                       ('tuple-negative', (16, -2)), ('str', 'abc'), ('float', 2.5),
                       ('tuple-float', (2.5,)), ('bool', True), ('dict', {16: 1}),
                       ('tuple-str', ('32',))):
    _e(c, f'pad_length-{label}', S + 'pad_length', make(pad_length=value),
       names=('pad_length',))
  for label, value in (('none', None), ('int', 32), ('unsorted-list', [256, 32]),
                       ('numpy-int', np.int64(32)), ('empty-tuple', ())):
    _ok(c, f'pad_length-{label}', S + 'pad_length', lambda ctx, v=value: ctx.out(
        sampler=ctx.sampler(pad_length=v)), _eq(lambda ctx: ctx.base, atol=1e-5))
  # max_soft_tokens
  for label, value in (('not-a-budget', 100), ('zero', 0), ('negative', -70), ('float', 70.0),
                       ('str', '70'), ('none', None), ('bool', True)):
    _e(c, f'max_soft_tokens-{label}', S + 'max_soft_tokens', make(max_soft_tokens=value))
  _ok(c, 'max_soft_tokens-numpy-int', S + 'max_soft_tokens',
      make(max_soft_tokens=np.int64(140)))


class _Unhashable:
  """Has get_next_tokens but no hash: cannot be a static jit argument."""

  __hash__ = None

  def get_next_tokens(self, logits, rng):
    return logits.argmax(-1)


class _DuckGreedy:
  """Not a gemma4 SamplingMethod, but has the method (documented as enough)."""

  def get_next_tokens(self, logits, rng):
    import jax.numpy as jnp
    return jnp.argmax(logits, axis=-1)

  def __hash__(self):
    return 7

  def __eq__(self, other):
    return isinstance(other, _DuckGreedy)


def _map_leaves(tree, fn):
  if isinstance(tree, dict):
    return {k: _map_leaves(v, fn) for k, v in tree.items()}
  return fn(tree)


def _small_tokenizer(ctx) -> pathlib.Path:
  """A 120-piece SentencePiece model (a vocabulary the model does not have)."""
  def make():
    import sentencepiece as spm
    from tests import tokenizer_util
    d = ctx.path('spm')
    d.mkdir(exist_ok=True)
    (d / 'corpus.txt').write_text(tokenizer_util.CORPUS * 20)
    spm.SentencePieceTrainer.train(input=str(d / 'corpus.txt'), model_prefix=str(d / 'm'),
                                   vocab_size=120, model_type='bpe', minloglevel=2)
    return d / 'm.model'
  return ctx.memo('small_tokenizer', make)


def _sample_cases(c: list) -> None:
  import jax
  from gemma4 import sampling as sm
  A = 'sample.'

  def call(**kw):
    return lambda ctx: ctx.s.sample(PROMPT, **kw)

  # prompt
  for label, value in (('none', None), ('bytes', b'Hello'), ('empty-list', []), ('ints', [1, 2]),
                       ('int', 5), ('list-with-none', ['a', None]), ('set', {'a'}),
                       ('list-with-bytes', ['a', b'b']), ('dict', {'a': 1})):
    _e(c, f'prompt-{label}', A + 'prompt', lambda ctx, v=value: ctx.s.sample(v))
  _e(c, 'prompt-generator', A + 'prompt', lambda ctx: ctx.s.sample(p for p in ['a']))
  _e(c, 'prompt-too-long-for-the-cache', A + 'prompt',
     lambda ctx: ctx.s.sample('Hello world ' * 200), names=('cache_length',))
  _e(c, 'prompt-image-placeholder-without-images', A + 'prompt',
     lambda ctx: ctx.s.sample(IMAGE_PROMPT), names=('<|image|>', 'images'))
  _e(c, 'prompt-audio-placeholder-without-audio', A + 'prompt',
     lambda ctx: ctx.s.sample(AUDIO_PROMPT), names=('<|audio|>', 'audio'))
  _e(c, 'prompt-empty-on-a-later-turn', A + 'prompt',
     lambda ctx: ctx.s.sample('', last_state=ctx.turn1().state), names=('prompt',))
  _ok(c, 'prompt-empty-str', A + 'prompt', lambda ctx: ctx.s.sample('', max_new_tokens=1),
      _is_str)
  _ok(c, 'prompt-numpy-str', A + 'prompt', lambda ctx: ctx.out(np.str_(PROMPT)),
      _eq(lambda ctx: ctx.base))
  _ok(c, 'prompt-tuple', A + 'prompt', lambda ctx: ctx.s.sample((PROMPT, 'One two'),
                                                                max_new_tokens=2),
      lambda ctx, v: isinstance(v, list) and len(v) == 2 and v[0] == ctx.base.text)
  # max_new_tokens
  for label, value in (('zero', 0), ('negative', -1), ('float', 2.5), ('float-whole', 2.0),
                       ('str', '3'), ('bool', True), ('above-max_out_length', 5),
                       ('huge', 10 ** 20), ('nan', float('nan'))):
    _e(c, f'max_new_tokens-{label}', A + 'max_new_tokens',
       lambda ctx, v=value: ctx.s.sample(PROMPT, max_new_tokens=v))
  _ok(c, 'max_new_tokens-numpy-int', A + 'max_new_tokens', lambda ctx: ctx.out(
      max_new_tokens=np.int64(2)), _eq(lambda ctx: ctx.base))
  _ok(c, 'max_new_tokens-none', A + 'max_new_tokens', lambda ctx: ctx.s.sample(
      PROMPT, max_new_tokens=None), _is_str)
  # sampling (per call)
  for label, value in (('str', 'greedy'), ('int', 1), ('class', sm.Greedy),
                       ('function', lambda logits, rng: logits.argmax(-1))):
    _e(c, f'call-sampling-{label}', A + 'sampling',
       lambda ctx, v=value: ctx.s.sample(PROMPT, sampling=v), names=('sampling',))
  _e(c, 'call-sampling-topk-above-vocab', A + 'sampling', lambda ctx: ctx.s.sample(
      PROMPT, sampling=sm.TopkSampling(k=VOCAB + 1)), names=('vocabulary', 'k='))
  _ok(c, 'call-sampling-greedy-instance', A + 'sampling', lambda ctx: ctx.out(
      sampling=sm.Greedy()), _eq(lambda ctx: ctx.base))
  # rng
  def twice(seed, sampling=None):
    def run(ctx):
      method = sampling or sm.RandomSampling()
      return (ctx.out(rng=seed, sampling=method, max_new_tokens=3),
              ctx.out(rng=seed, sampling=method, max_new_tokens=3))
    return run
  _ok(c, 'rng-2**63-deterministic', A + 'rng', twice(2 ** 63), _same_tokens)
  _ok(c, 'rng-2**64-1-deterministic', A + 'rng', twice(2 ** 64 - 1), _same_tokens)
  _ok(c, 'rng-numpy-uint64-max', A + 'rng', twice(np.uint64(2 ** 64 - 1)), _same_tokens)
  _ok(c, 'rng-2**32+5-is-not-5', A + 'rng', lambda ctx: (
      ctx.out(rng=2 ** 32 + 5, sampling=sm.RandomSampling(), max_new_tokens=3),
      ctx.out(rng=5, sampling=sm.RandomSampling(), max_new_tokens=3)), _differ)
  _ok(c, 'rng-key', A + 'rng', lambda ctx: (
      ctx.out(rng=ctx.key, sampling=sm.RandomSampling(), max_new_tokens=3),
      ctx.out(rng=0, sampling=sm.RandomSampling(), max_new_tokens=3)), _same_tokens)
  _ok(c, 'rng-raw-key-data', A + 'rng', lambda ctx: (
      ctx.out(rng=np.array([0, 0], np.uint32), sampling=sm.RandomSampling(), max_new_tokens=3),
      ctx.out(rng=0, sampling=sm.RandomSampling(), max_new_tokens=3)), _same_tokens)
  _ok(c, 'rng-none', A + 'rng', call(rng=None, max_new_tokens=1), _is_str)
  for label, value in (('2**64', 2 ** 64), ('negative', -1), ('float', 1.5), ('str', '1'),
                       ('bool', True), ('three-ints', [1, 2, 3]),
                       ('key-data-past-uint32', np.array([1, 2 ** 32])),
                       ('key-data-negative', np.array([-1, 0])), ('object', object())):
    _e(c, f'rng-{label}', A + 'rng', lambda ctx, v=value: ctx.s.sample(PROMPT, rng=v),
       names=('rng',))
  _e(c, 'rng-key-array', A + 'rng', lambda ctx: ctx.s.sample(
      PROMPT, rng=jax.random.split(ctx.key, 2)), names=('rng',))
  # return_state
  _e(c, 'return_state-str', A + 'return_state',
     lambda ctx: ctx.s.sample(PROMPT, max_new_tokens=1, return_state='no'))
  _ok(c, 'return_state-false', A + 'return_state', lambda ctx: ctx.s.sample(
      PROMPT, max_new_tokens=2, return_state=False), _text_is(lambda ctx: ctx.base.text))
  # last_state
  _ok(c, 'last_state-sampler-output', A + 'last_state', lambda ctx: ctx.out(
      ' One', last_state=ctx.turn1()), _eq(lambda ctx: ctx.memo(
          'turn2', lambda: ctx.out(' One', last_state=ctx.turn1().state))))
  _ok(c, 'last_state-reused-twice', A + 'last_state', lambda ctx: (
      ctx.out(' One', last_state=ctx.turn1().state), ctx.out(' One', last_state=ctx.turn1().state)),
      lambda ctx, pair: same_out(*pair))
  for label, value in (('str', 'state'), ('dict', {}), ('tokens', np.zeros((1, 4), np.int32))):
    _e(c, f'last_state-{label}', A + 'last_state',
       lambda ctx, v=value: ctx.s.sample(PROMPT, last_state=v))
  _e(c, 'last_state-other-batch', A + 'last_state',
     lambda ctx: ctx.s.sample([PROMPT, PROMPT], last_state=ctx.turn1().state))
  _e(c, 'last_state-other-cache_length', A + 'last_state', lambda ctx: ctx.sampler(
      cache_length=128).sample(PROMPT, last_state=ctx.turn1().state), names=('last_state', 'cache'))
  _e(c, 'last_state-other-max_out_length', A + 'last_state', lambda ctx: ctx.sampler(
      max_out_length=3).sample(PROMPT, last_state=ctx.turn1().state), names=('last_state',))
  _e(c, 'last_state-other-model', A + 'last_state', lambda ctx: ctx.s.sample(
      PROMPT, last_state=dataclasses.replace(ctx.turn1().state, cache=ctx.text_model.init_cache(
          1, 256, np.float32))), names=('last_state',))
  _e(c, 'last_state-full-cache', A + 'last_state', lambda ctx: ctx.s.sample(
      'Hello world ' * 60, last_state=ctx.turn1().state), names=('cache_length',))
  # sharding
  _e(c, 'sharding-str', A + 'sharding', call(sharding='cpu'))
  _e(c, 'sharding-int', A + 'sharding', call(sharding=0))
  _e(c, 'sharding-device', A + 'sharding', lambda ctx: ctx.s.sample(
      PROMPT, sharding=jax.devices()[0]))
  _ok(c, 'sharding-single-device', A + 'sharding', lambda ctx: ctx.out(
      sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])),
      _eq(lambda ctx: ctx.base))
  # max_soft_tokens (per call), with and without images
  for label, value in (('not-a-budget', 100), ('zero', 0), ('str', '70'), ('float', 70.0),
                       ('bool', True)):
    _e(c, f'call-max_soft_tokens-{label}-with-image', A + 'max_soft_tokens',
       lambda ctx, v=value: ctx.img_out([ctx.img], max_soft_tokens=v))
    _e(c, f'call-max_soft_tokens-{label}-without-images', A + 'max_soft_tokens',
       lambda ctx, v=value: ctx.s.sample(PROMPT, max_soft_tokens=v))
  _ok(c, 'call-max_soft_tokens-140', A + 'max_soft_tokens', lambda ctx: ctx.img_out(
      [ctx.img], max_soft_tokens=140), _n_soft, slow=True)  # compiles its own encoder
  _ok(c, 'call-max_soft_tokens-numpy-int', A + 'max_soft_tokens', lambda ctx: ctx.img_out(
      [ctx.img], max_soft_tokens=np.int64(70)), _eq(lambda ctx: ctx.img_ref(ctx.img)))
  # stream
  T = 'stream.'
  for label, value in (('list', [PROMPT, PROMPT]), ('none', None), ('bytes', b'Hello')):
    _e(c, f'stream-prompt-{label}', T + 'prompt',
       lambda ctx, v=value: list(ctx.s.stream(v)), names=('prompt',))
  for label, kw, names in (('max_new_tokens-zero', dict(max_new_tokens=0), ()),
                           ('max_new_tokens-str', dict(max_new_tokens='2'), ()),
                           ('max_soft_tokens', dict(max_soft_tokens=100), ()),
                           ('rng-negative', dict(rng=-1), ()),
                           ('sampling-str', dict(sampling='greedy'), ()),
                           ('last_state-str', dict(last_state='state'), ())):
    _e(c, f'stream-{label}', T + label.split('-')[0],
       lambda ctx, kw=kw: list(ctx.s.stream(PROMPT, **kw)), names=names)
  _ok(c, 'stream-text-equals-sample', T + 'prompt', lambda ctx: ''.join(
      ctx.s.stream(PROMPT, max_new_tokens=2)), _text_is(lambda ctx: ctx.base.text))
  _ok(c, 'stream-sampler-output-as-last_state', T + 'last_state', lambda ctx: ''.join(
      ctx.s.stream(' One', last_state=ctx.turn1(), max_new_tokens=2)),
      _text_is(lambda ctx: ctx.memo('turn2', lambda: ctx.out(
          ' One', last_state=ctx.turn1().state)).text))


def _soft_tokens(h: int, w: int, budget: int, patch: int = 16, pool: int = 3) -> int:
  """Soft tokens of an h x w image at a budget: the official get_target_dimensions (both
  sides multiples of patch * pool, at most budget * pool**2 patches), then pooling."""
  side = patch * pool
  factor = (budget * pool ** 2 * patch ** 2 / (h * w)) ** 0.5
  th, tw = int(factor * h / side) * side, int(factor * w / side) * side
  return (th // patch) * (tw // patch) // pool ** 2


def _n_soft(ctx, out):
  """At budget 140 the 20x30 image takes as many more cache positions than at the
  sampler's 70 as the official resize gives it more soft tokens (126 vs 60)."""
  used = int(np.asarray(out.state.cache.next_pos)[0])
  base = int(np.asarray(ctx.img_ref(ctx.img).state.cache.next_pos)[0])
  want = _soft_tokens(20, 30, 140) - _soft_tokens(20, 30, 70)
  assert used - base == want, f'{used} - {base} cache positions, expected {want} more'


def _image_cases(c: list) -> None:
  from PIL import Image
  I = 'sample.images'

  def img(make):
    return lambda ctx: ctx.img_out([make(ctx)])

  def ref(rgb_of):
    return _eq(lambda ctx: ctx.img_ref(rgb_of(ctx)))

  rgb = lambda ctx: ctx.img
  gray3 = lambda ctx: np.repeat(ctx.gray[..., None], 3, -1)
  bin3 = lambda ctx: np.repeat(ctx.binary[..., None].astype(np.uint8) * 255, 3, -1)
  # arrays that must give the pixels of their uint8 equivalent
  _ok(c, 'image-uint8', I, img(rgb), ref(rgb))
  _ok(c, 'image-pixels-matter', I, lambda ctx: ctx.img_out([np.flip(ctx.img, 0).copy()]),
      lambda ctx, out: not np.array_equal(out.logprobs, ctx.img_ref(ctx.img).logprobs))
  _ok(c, 'image-uint16', I, img(lambda ctx: ctx.img.astype(np.uint16) * 257), ref(rgb))
  _ok(c, 'image-float32-unit', I, img(lambda ctx: (ctx.img / 255).astype(np.float32)), ref(rgb))
  _ok(c, 'image-float64-unit', I, img(lambda ctx: ctx.img / 255.0), ref(rgb))
  _ok(c, 'image-float16-unit', I, img(lambda ctx: (ctx.img / 255).astype(np.float16)), ref(rgb))
  _ok(c, 'image-bool', I, img(lambda ctx: ctx.binary), ref(bin3))
  _ok(c, 'image-gray-2d', I, img(lambda ctx: ctx.gray), ref(gray3))
  _ok(c, 'image-gray-1-channel', I, img(lambda ctx: ctx.gray[..., None]), ref(gray3))
  _ok(c, 'image-rgba-array', I, img(lambda ctx: np.dstack(
      [ctx.img, np.random.default_rng(7).integers(0, 256, (20, 30), dtype=np.uint8)])), ref(rgb))
  _ok(c, 'image-non-contiguous', I, img(lambda ctx: np.asfortranarray(ctx.img)), ref(rgb))
  _ok(c, 'image-nested-per-prompt', I, lambda ctx: ctx.img_out([[ctx.img]]), ref(rgb))
  _ok(c, 'image-4d-array-of-one', I, lambda ctx: ctx.img_out(ctx.img[None]), ref(rgb))
  _ok(c, 'image-empty-list-no-placeholder', I, lambda ctx: ctx.out(images=[]),
      _eq(lambda ctx: ctx.base))
  # arrays that must be refused
  for label, make in (
      ('int8', lambda ctx: ctx.img.astype(np.int8)), ('int16', lambda ctx: ctx.img.astype(np.int16)),
      ('int32', lambda ctx: ctx.img.astype(np.int32)), ('int64', lambda ctx: ctx.img.astype(np.int64)),
      ('uint32', lambda ctx: ctx.img.astype(np.uint32)), ('uint64', lambda ctx: ctx.img.astype(np.uint64)),
      ('complex', lambda ctx: ctx.img.astype(np.complex64)),
      ('object', lambda ctx: ctx.img.astype(object)), ('str-dtype', lambda ctx: ctx.img.astype(str)),
      ('datetime', lambda ctx: ctx.img.astype('datetime64[s]'))):
    _e(c, f'image-dtype-{label}', I, img(make), names=('dtype', 'image 0'))
  for label, make in (
      ('float-0-255', lambda ctx: ctx.img.astype(np.float32)),
      ('float-negative', lambda ctx: ctx.img / 255.0 - 0.5),
      ('float-nan', lambda ctx: np.where(ctx.img > 128, np.nan, 0.5)),
      ('float-inf', lambda ctx: np.where(ctx.img > 128, np.inf, 0.5))):
    _e(c, f'image-{label}', I, img(make), names=('image 0', 'image'))
  for label, make in (
      ('zero-height', lambda ctx: np.zeros((0, 30, 3), np.uint8)),
      ('zero-width', lambda ctx: np.zeros((20, 0, 3), np.uint8)),
      ('5-channels', lambda ctx: np.zeros((20, 30, 5), np.uint8)),
      ('2-channels', lambda ctx: np.zeros((20, 30, 2), np.uint8)),
      ('channels-first', lambda ctx: np.zeros((3, 20, 30), np.uint8)),
      ('1d', lambda ctx: np.zeros((30,), np.uint8)),
      ('4d-item', lambda ctx: np.zeros((1, 20, 30, 3), np.uint8)),
      ('ragged-nested-list', lambda ctx: [[1, 2], [3]]),
      ('nested-list-of-ints', lambda ctx: ctx.img.tolist())):
    _e(c, f'image-{label}', I, img(make), names=('image 0', 'image'))
  for label, value in (('none-item', None), ('path-str', 'cat.png'), ('bytes', b'\x89PNG'),
                       ('int-item', 5), ('dict-item', {'pixels': 1})):
    _e(c, f'image-{label}', I, lambda ctx, v=value: ctx.img_out([v]), names=('image 0', 'image'))
  _e(c, 'images-bare-array', I, lambda ctx: ctx.img_out(ctx.img), names=('images',))
  _e(c, 'images-str', I, lambda ctx: ctx.img_out('cat.png'), names=('images',))
  _e(c, 'images-int', I, lambda ctx: ctx.img_out(5), names=('images',))
  _e(c, 'images-pil-bare', I, lambda ctx: ctx.img_out(Image.fromarray(ctx.img)),
     names=('images',))
  _e(c, 'images-two-for-one-placeholder', I, lambda ctx: ctx.img_out([ctx.img, ctx.img]),
     names=('placeholder', '<|image|>'))
  _e(c, 'images-none-for-a-placeholder', I, lambda ctx: ctx.img_out([]),
     names=('placeholder', '<|image|>'))
  _e(c, 'images-without-placeholder', I, lambda ctx: ctx.out(images=[ctx.img]),
     names=('placeholder', '<|image|>'))
  _e(c, 'images-nested-wrong-count', I, lambda ctx: ctx.img_out([[ctx.img], [ctx.img]]),
     names=('placeholder', 'prompt', 'image'))
  _e(c, 'images-nested-two-prompts-one-list', I, lambda ctx: ctx.s.sample(
      [IMAGE_PROMPT, IMAGE_PROMPT], images=[[ctx.img]]), names=('placeholder', 'prompt', 'image'))
  _e(c, 'images-nested-two-prompts-counts', I, lambda ctx: ctx.s.sample(
      [IMAGE_PROMPT, PROMPT], images=[[], [ctx.img]]), names=('placeholder', 'prompt 0'))
  _e(c, 'images-deeply-nested', I, lambda ctx: ctx.img_out([[[ctx.img]]]),
     names=('image',))
  _e(c, 'images-on-a-text-only-model', I, lambda ctx: ctx.sampler(
      model=_text_only_e2b(), params=_text_only_params(ctx)).sample(
          IMAGE_PROMPT, images=[ctx.img]), names=('images', 'vision'))
  # PIL images of every mode
  def pil(make):
    return lambda ctx: ctx.img_out([make(ctx)])

  def pil_rgb(make):  # PIL's own RGB of the image: the reference of the 8-bit modes
    return _eq(lambda ctx: ctx.img_ref(np.asarray(make(ctx).convert('RGB'))))

  full_alpha = lambda ctx: np.full((20, 30), 255, np.uint8)
  modes = {
      '1': lambda ctx: Image.fromarray(ctx.binary),
      'L': lambda ctx: Image.fromarray(ctx.gray),
      'LA': lambda ctx: Image.fromarray(np.dstack([ctx.gray, full_alpha(ctx)]), 'LA'),
      'La': lambda ctx: Image.fromarray(np.dstack([ctx.gray, full_alpha(ctx)]), 'LA').convert('La'),
      'P': lambda ctx: Image.fromarray(ctx.img).convert('P'),
      'PA': lambda ctx: Image.fromarray(ctx.img).convert('PA'),
      'RGB': lambda ctx: Image.fromarray(ctx.img),
      'RGBA': lambda ctx: Image.fromarray(np.dstack([ctx.img, ctx.gray])),
      'RGBa': lambda ctx: Image.fromarray(np.dstack([ctx.img, full_alpha(ctx)])).convert('RGBa'),
      'RGBX': lambda ctx: Image.fromarray(ctx.img).convert('RGBX'),
      'CMYK': lambda ctx: Image.fromarray(ctx.img).convert('CMYK'),
      'YCbCr': lambda ctx: Image.fromarray(ctx.img).convert('YCbCr'),
      'LAB': lambda ctx: Image.fromarray(ctx.img).convert('LAB'),
      'HSV': lambda ctx: Image.fromarray(ctx.img).convert('HSV'),
  }
  exact = {'1': bin3, 'L': gray3, 'LA': gray3, 'La': gray3, 'RGB': rgb, 'RGBA': rgb,
           'RGBa': rgb, 'RGBX': rgb, 'CMYK': rgb}
  for mode, make in modes.items():
    _ok(c, f'pil-mode-{mode}', I, pil(make), ref(exact[mode]) if mode in exact else pil_rgb(make))
  g16 = lambda ctx: ctx.gray.astype(np.uint16) * 257
  _ok(c, 'pil-mode-I;16', I, pil(lambda ctx: Image.fromarray(g16(ctx))), ref(gray3))
  _ok(c, 'pil-mode-I;16B', I, pil(lambda ctx: Image.frombytes(
      'I;16B', (30, 20), g16(ctx).astype('>u2').tobytes())), ref(gray3))
  _ok(c, 'pil-mode-I;16L', I, pil(lambda ctx: Image.frombytes(
      'I;16L', (30, 20), g16(ctx).astype('<u2').tobytes())), ref(gray3))
  _ok(c, 'pil-mode-I', I, pil(lambda ctx: Image.fromarray(g16(ctx).astype(np.int32))), ref(gray3))
  _ok(c, 'pil-mode-F-unit', I, pil(lambda ctx: Image.fromarray(
      (ctx.gray / 255).astype(np.float32))), ref(gray3))
  _ok(c, 'png-16-bit', I, lambda ctx: ctx.img_out([Image.open(_save(
      ctx, 'g16.png', Image.fromarray(g16(ctx))))]), ref(gray3))
  _ok(c, 'png-8-bit-rgb', I, lambda ctx: ctx.img_out([Image.open(_save(
      ctx, 'rgb.png', Image.fromarray(ctx.img)))]), ref(rgb))
  _e(c, 'pil-mode-F-0-255', I, pil(lambda ctx: Image.fromarray(ctx.gray.astype(np.float32))),
     names=('image 0', 'image'))
  _e(c, 'pil-mode-F-nan', I, pil(lambda ctx: Image.fromarray(
      np.where(ctx.gray > 128, np.nan, 0.5).astype(np.float32))), names=('image 0', 'image'))
  _e(c, 'pil-mode-I-negative', I, pil(lambda ctx: Image.fromarray(
      ctx.gray.astype(np.int32) - 300)), names=('image 0', 'image'))
  _e(c, 'pil-zero-size', I, pil(lambda ctx: Image.new('RGB', (0, 20))), names=('image 0', 'image'))


def _save(ctx, name, image) -> pathlib.Path:
  p = ctx.path(name)
  image.save(p)
  return p


def _text_only_e2b():
  import gemma4
  return gemma4.models.tiny('e2b')


def _text_only_params(ctx):
  """The text tree of the tiny E2B params (the text-only model's parameters)."""
  return ctx.memo('e2b_text_params', lambda: _text_only_e2b().init(0))


def _audio_cases(c: list) -> None:
  import gemma4
  A = 'sample.audio'
  L = 'sample.audio_lengths'

  def aud(make):
    return lambda ctx: ctx.aud_out([make(ctx)])

  def ref(clip_of):
    return _eq(lambda ctx: ctx.aud_ref(clip_of(ctx)))

  clip = lambda ctx: ctx.clip
  i16 = lambda ctx: np.round(ctx.clip * 32767).astype(np.int16)
  _ok(c, 'audio-float32', A, aud(clip), ref(clip))
  _ok(c, 'audio-samples-matter', A, aud(lambda ctx: ctx.clip[::-1].copy()),
      lambda ctx, out: not np.array_equal(out.logprobs, ctx.aud_ref(ctx.clip).logprobs))
  _ok(c, 'audio-float64', A, aud(lambda ctx: ctx.clip.astype(np.float64)), ref(clip))
  _ok(c, 'audio-int16', A, aud(i16), ref(lambda ctx: i16(ctx).astype(np.float32) / 32768))
  _ok(c, 'audio-stereo-samples-channels', A, aud(lambda ctx: np.stack([ctx.clip, ctx.clip], 1)),
      ref(clip))
  _ok(c, 'audio-stereo-channels-samples', A, aud(lambda ctx: np.stack([ctx.clip, ctx.clip])),
      ref(clip))
  _ok(c, 'audio-bare-1d-array', A, lambda ctx: ctx.aud_out(ctx.clip), ref(clip))
  _ok(c, 'audio-nested-per-prompt', A, lambda ctx: ctx.aud_out([[ctx.clip]]), ref(clip))
  _either(c, 'audio-list-of-floats', A, lambda ctx: ctx.aud_out(
      [ctx.clip.astype(np.float64).tolist()]), names=('audio clip', 'placeholder'), check=ref(clip))
  _ok(c, 'audio_sample_rate-48000', 'Gemma4Sampler.audio_sample_rate', lambda ctx: ctx.aud_out(
      [_tone(48000)], sampler=ctx.sampler(audio_sample_rate=48000)),
      _eq(lambda ctx: ctx.aud_ref(gemma4.audio.resample(_tone(48000), 48000))))
  _ok(c, 'audio_sample_rate-11025', 'Gemma4Sampler.audio_sample_rate', lambda ctx: ctx.aud_out(
      [_tone(11025)], sampler=ctx.sampler(audio_sample_rate=11025)),
      lambda ctx, out: same_out(out, ctx.aud_out([gemma4.audio.resample(_tone(11025), 11025)])),
      slow=True)
  _ok(c, 'audio_seq_length-small', 'Gemma4Sampler.audio_seq_length', lambda ctx: ctx.aud_out(
      [ctx.clip], sampler=ctx.sampler(audio_seq_length=10)),
      lambda ctx, out: isinstance(out.text, str), slow=True)
  for label, make in (
      ('nan', lambda ctx: np.where(np.arange(16000) == 5, np.nan, ctx.clip).astype(np.float32)),
      ('inf', lambda ctx: np.where(np.arange(16000) == 5, np.inf, ctx.clip).astype(np.float32)),
      ('empty', lambda ctx: np.zeros(0, np.float32)),
      ('too-short', lambda ctx: ctx.clip[:100]),
      ('int-scale-floats', lambda ctx: ctx.clip * 32767),
      ('int32', lambda ctx: (ctx.clip * 2 ** 30).astype(np.int32)),
      ('uint8', lambda ctx: (ctx.clip * 100 + 128).astype(np.uint8)),
      ('complex', lambda ctx: ctx.clip.astype(np.complex64)),
      ('bool', lambda ctx: ctx.clip > 0),
      ('3d', lambda ctx: ctx.clip.reshape(10, 40, 40)),
      ('9-channels', lambda ctx: np.repeat(ctx.clip[:, None], 9, 1)),
      ('square', lambda ctx: np.zeros((100, 100), np.float32)),
      ('none-item', lambda ctx: None),
      ('path-str', lambda ctx: 'a.wav'),
      ('ragged', lambda ctx: [[0.1, 0.2], [0.3]])):
    _e(c, f'audio-{label}', A, aud(make), names=('audio clip 0', 'audio'))
  _e(c, 'audio-bare-stereo-array', A, lambda ctx: ctx.aud_out(np.stack([ctx.clip, ctx.clip], 1)),
     names=('audio',))
  _e(c, 'audio-str', A, lambda ctx: ctx.aud_out('a.wav'), names=('audio',))
  _e(c, 'audio-int', A, lambda ctx: ctx.aud_out(5), names=('audio',))
  _e(c, 'audio-two-for-one-placeholder', A, lambda ctx: ctx.aud_out([ctx.clip, ctx.clip]),
     names=('placeholder', '<|audio|>'))
  _e(c, 'audio-without-placeholder', A, lambda ctx: ctx.out(audio=[ctx.clip]),
     names=('placeholder', '<|audio|>'))
  _e(c, 'audio-on-a-text-only-model', A, lambda ctx: ctx.sampler(
      model=_text_only_e2b(), params=_text_only_params(ctx)).sample(
          AUDIO_PROMPT, audio=[ctx.clip]), names=('audio',))
  # audio_lengths
  n = 12000
  cut = lambda ctx: ctx.clip[:n]
  _ok(c, 'audio_lengths-scalar-int', L, lambda ctx: ctx.aud_out([ctx.clip], audio_lengths=n),
      ref(cut))
  _ok(c, 'audio_lengths-list', L, lambda ctx: ctx.aud_out([ctx.clip], audio_lengths=[n]), ref(cut))
  _ok(c, 'audio_lengths-numpy', L, lambda ctx: ctx.aud_out(
      [ctx.clip], audio_lengths=np.array([n])), ref(cut))
  _ok(c, 'audio_lengths-numpy-scalar', L, lambda ctx: ctx.aud_out(
      [ctx.clip], audio_lengths=np.int64(n)), ref(cut))
  _ok(c, 'audio_lengths-none-entry', L, lambda ctx: ctx.aud_out([ctx.clip], audio_lengths=[None]),
      ref(clip))
  _ok(c, 'audio_lengths-per-prompt', L, lambda ctx: ctx.aud_out(
      [[ctx.clip]], audio_lengths=[[n]]), ref(cut))
  for label, value in (('past-the-clip', [16001]), ('negative', [-1]), ('float', [2.5]),
                       ('str', ['12000']), ('bool', [True]), ('dict', {0: n}),
                       ('two-for-one-clip', [n, n]), ('str-scalar', '12000'),
                       ('float-scalar', 12000.0)):
    _e(c, f'audio_lengths-{label}', L, lambda ctx, v=value: ctx.aud_out(
        [ctx.clip], audio_lengths=v), names=('audio_lengths',))
  _e(c, 'audio_lengths-zero', L, lambda ctx: ctx.aud_out([ctx.clip], audio_lengths=[0]),
     names=('audio_lengths', 'audio clip 0'))
  _either(c, 'audio_lengths-nested-for-flat-audio', L, lambda ctx: ctx.aud_out(
      [ctx.clip], audio_lengths=[[n]]), names=('audio_lengths',), check=ref(cut))
  _e(c, 'audio_lengths-scalar-for-two-clips', L, lambda ctx: ctx.aud_out(
      [ctx.clip, ctx.clip], prompt=AUDIO_PROMPT + AUDIO_PROMPT, audio_lengths=n),
     names=('audio_lengths',))
  _e(c, 'audio_lengths-without-audio', L, lambda ctx: ctx.s.sample(PROMPT, audio_lengths=[n]),
     names=('audio_lengths',))


def _tone(rate: int) -> np.ndarray:
  """1 s of a 440 Hz tone at `rate`."""
  return (0.4 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)


def _sampling_cases(c: list) -> None:
  from gemma4 import sampling as sm
  import jax
  methods = {'RandomSampling': sm.RandomSampling, 'TopkSampling': sm.TopkSampling,
             'TopPSampling': sm.TopPSampling, 'Combined': sm.Combined}
  bad_temperatures = (('nan', float('nan')), ('inf', float('inf')), ('-inf', float('-inf')),
                      ('negative', -1.0), ('str', '1'), ('none', None), ('bool', True),
                      ('complex', 1j), ('huge-int', 10 ** 400))
  for name, cls in methods.items():
    arg = f'sampling.{name}.temperature'
    for label, value in bad_temperatures:
      _e(c, f'{name}-temperature-{label}', arg, lambda ctx, cls=cls, v=value: cls(temperature=v),
         names=('temperature',))
    if name == 'Combined':
      _ok(c, f'{name}-temperature-zero-is-greedy', arg, lambda ctx: sm.Combined(
          temperature=0).get_next_tokens(ctx.logits, ctx.key), _argmax)
    else:
      _e(c, f'{name}-temperature-zero', arg, lambda ctx, cls=cls: cls(temperature=0),
         names=('temperature',))
    _e(c, f'{name}-temperature-tiny', arg, lambda ctx, cls=cls: cls(temperature=1e-38),
       names=('temperature',))  # logits / 1e-38 overflow float32: refused, not drawn wrong
    _ok(c, f'{name}-temperature-smallest-is-greedy', arg, lambda ctx, cls=cls: cls(
        temperature=1e-6).get_next_tokens(ctx.logits, ctx.key), _argmax)
    _ok(c, f'{name}-temperature-numpy-float', arg, lambda ctx, cls=cls: (
        cls(temperature=np.float32(0.5)).get_next_tokens(ctx.logits, ctx.key),
        cls(temperature=0.5).get_next_tokens(ctx.logits, ctx.key)),
        lambda ctx, pair: np.array_equal(*pair))
  # top-k
  k = 'sampling.TopkSampling.k'
  for label, value in (('zero', 0), ('negative', -1), ('float', 2.5), ('float-whole', 5.0),
                       ('str', '5'), ('none', None), ('bool', True)):
    _e(c, f'TopkSampling-k-{label}', k, lambda ctx, v=value: sm.TopkSampling(k=v),
       names=('k=', 'TopkSampling(k'))
  _e(c, 'TopkSampling-k-above-the-logits', k, lambda ctx: sm.TopkSampling(k=60).get_next_tokens(
      ctx.logits, ctx.key), names=('k=60', 'k 60', 'k (60)'))
  _ok(c, 'TopkSampling-k-1-is-greedy', k, lambda ctx: sm.TopkSampling(
      k=1, temperature=5.0).get_next_tokens(ctx.logits, ctx.key), _argmax)
  _ok(c, 'TopkSampling-k-numpy-int', k, lambda ctx: (
      sm.TopkSampling(k=np.int64(3)).get_next_tokens(ctx.logits, ctx.key),
      sm.TopkSampling(k=3).get_next_tokens(ctx.logits, ctx.key), hash(sm.TopkSampling(k=np.int64(3)))),
      lambda ctx, t: np.array_equal(t[0], t[1]))
  # top-p
  p = 'sampling.TopPSampling.p'
  for label, value in (('zero', 0.0), ('negative', -0.1), ('above-1', 1.5), ('nan', float('nan')),
                       ('inf', float('inf')), ('str', '0.9'), ('none', None), ('bool', True)):
    _e(c, f'TopPSampling-p-{label}', p, lambda ctx, v=value: sm.TopPSampling(p=v),
       names=('p=', 'TopPSampling(p'))
  _ok(c, 'TopPSampling-p-1-is-random-sampling', p, lambda ctx: (
      sm.TopPSampling(p=1.0).get_next_tokens(ctx.logits, ctx.key),
      sm.RandomSampling().get_next_tokens(ctx.logits, ctx.key)),
      lambda ctx, pair: np.array_equal(*pair))
  _ok(c, 'TopPSampling-p-int-1', p, lambda ctx: sm.TopPSampling(p=1).get_next_tokens(
      ctx.logits, ctx.key))
  _ok(c, 'TopPSampling-p-tiny-is-greedy', p, lambda ctx: sm.TopPSampling(
      p=1e-9).get_next_tokens(ctx.logits, ctx.key), _argmax)
  # Combined
  C = 'sampling.Combined.'
  for field, values in (
      ('top_k', (('zero', 0), ('negative', -3), ('float', 2.5), ('str', '64'), ('bool', True),
                 ('float-whole', 64.0))),
      ('top_p', (('zero', 0.0), ('above-1', 1.01), ('nan', float('nan')), ('str', '0.5'),
                 ('none', None))),
      ('min_p', (('negative', -0.1), ('above-1', 1.5), ('nan', float('nan')), ('str', '0'),
                 ('none', None), ('inf', float('inf'))))):
    for label, value in values:
      _e(c, f'Combined-{field}-{label}', C + field,
         lambda ctx, f=field, v=value: sm.Combined(**{f: v}))
  _ok(c, 'Combined-top_k-1-is-greedy', C + 'top_k', lambda ctx: sm.Combined(
      top_k=1).get_next_tokens(ctx.logits, ctx.key), _argmax)
  _ok(c, 'Combined-min_p-1-is-greedy', C + 'min_p', lambda ctx: sm.Combined(
      min_p=1.0, top_k=None, top_p=1.0).get_next_tokens(ctx.logits, ctx.key), _argmax)
  _ok(c, 'Combined-no-filters-is-random-sampling', C + 'top_k', lambda ctx: (
      sm.Combined(top_k=None, top_p=1.0).get_next_tokens(ctx.logits, ctx.key),
      sm.RandomSampling().get_next_tokens(ctx.logits, ctx.key)),
      lambda ctx, pair: np.array_equal(*pair))
  _e(c, 'Greedy-temperature', 'sampling.Greedy.temperature',
     lambda ctx: sm.Greedy(temperature=0.5))
  _e(c, 'Combined-unknown-field', 'sampling.Combined.top_a', lambda ctx: sm.Combined(top_a=0.1))
  _ok(c, 'Greedy-is-argmax', 'sampling.Greedy', lambda ctx: sm.Greedy().get_next_tokens(
      ctx.logits, jax.random.key(1)), _argmax)


def _model_cases(c: list) -> None:
  import gemma4
  import jax.numpy as jnp
  M = 'gemma4.models.'
  _e(c, 'tiny-unknown-preset', M + 'tiny.preset', lambda ctx: gemma4.models.tiny('e3b'),
     names=('e3b',))
  _e(c, 'tiny-int-preset', M + 'tiny.preset', lambda ctx: gemma4.models.tiny(5), names=('5',))
  _e(c, 'tiny-dtype-int8', M + 'tiny.dtype', lambda ctx: gemma4.models.tiny(
      'gemma3_270m', dtype=jnp.int8).init(0), names=('dtype', 'int8'))
  _e(c, 'tiny-dtype-bogus', M + 'tiny.dtype', lambda ctx: gemma4.models.tiny(
      'gemma3_270m', dtype='bogus').init(0), names=('dtype', 'bogus'))
  _ok(c, 'get_model-official-name', M + 'get_model.name', lambda ctx: gemma4.models.get_model(
      'Gemma4_E2B'), lambda ctx, m: m.config.vocab_size == VOCAB)
  _ok(c, 'get_model-dashed-name', M + 'get_model.name', lambda ctx: gemma4.models.get_model(
      '26B-A4B'), lambda ctx, m: m.config.is_moe)
  _e(c, 'get_model-unknown', M + 'get_model.name', lambda ctx: gemma4.models.get_model(
      'gemma4_e3b'), names=('gemma4_e3b',))
  _e(c, 'get_model-none', M + 'get_model.name', lambda ctx: gemma4.models.get_model(None),
     names=('None',))
  _e(c, 'get_model-empty', M + 'get_model.name', lambda ctx: gemma4.models.get_model(''),
     names=("''", 'preset'))
  _e(c, 'get_model-unknown-kwarg', M + 'get_model.kwargs', lambda ctx: gemma4.models.get_model(
      'e2b', size=2), names=('size',))
  # Model.init
  I = 'Model.init.seed'
  for label, value in (('str', '0'), ('float', 2.5), ('negative', -1), ('none', None)):
    _e(c, f'init-seed-{label}', I, lambda ctx, v=value: ctx.text_model.init(v),
       names=('seed', repr(value)))
  _ok(c, 'init-seed-2**64', I, lambda ctx: ctx.text_model.init(2 ** 64))  # NumPy takes any int >= 0
  # Model.init_cache
  K = 'Model.init_cache.'
  for label, args, names in (
      ('batch-zero', (0, 16), ('batch',)), ('length-zero', (1, 0), ('length',)),
      ('batch-str', ('1', 16), ('batch', "'1'")), ('length-float', (1, 2.5), ('length', '2.5')),
      ('length-negative', (1, -4), ('length',)), ('batch-none', (None, 16), ('batch',))):
    _e(c, f'init_cache-{label}', K + label.split('-')[0], lambda ctx, a=args: ctx.text_model.init_cache(*a),
       names=names)
  _e(c, 'init_cache-dtype-int8', K + 'dtype', lambda ctx: ctx.text_model.init_cache(
      1, 16, jnp.int8), names=('dtype', 'int8'))
  _ok(c, 'init_cache-numpy-ints', K + 'length', lambda ctx: ctx.text_model.init_cache(
      np.int64(1), np.int64(16)), lambda ctx, cache: cache.length == 16)
  # Model.apply
  P = 'Model.apply.'
  _ok(c, 'apply-tokens', P + 'tokens', lambda ctx: ctx.text_model.apply(
      ctx.text_params, np.array([[2, 5, 6]], np.int32)),
      lambda ctx, out: np.shape(out[0]) == (1, 3, VOCAB))
  _e(c, 'apply-token-past-vocab', P + 'tokens', lambda ctx: ctx.text_model.apply(
      ctx.text_params, np.array([[2, 5, VOCAB]], np.int32)), names=('token', str(VOCAB)))
  _e(c, 'apply-negative-token', P + 'tokens', lambda ctx: ctx.text_model.apply(
      ctx.text_params, np.array([[2, 5, -5]], np.int32)), names=('token', '-5'))
  _e(c, 'apply-tokens-1d', P + 'tokens', lambda ctx: ctx.text_model.apply(
      ctx.text_params, np.array([2, 5], np.int32)), names=('tokens', 'shape'))
  _e(c, 'apply-tokens-float', P + 'tokens', lambda ctx: ctx.text_model.apply(
      ctx.text_params, np.array([[2.0, 5.5]])), names=('tokens', 'float'))
  _e(c, 'apply-tokens-str', P + 'tokens', lambda ctx: ctx.text_model.apply(
      ctx.text_params, 'Hello'), names=('tokens',))
  _e(c, 'apply-params-empty', P + 'params', lambda ctx: ctx.text_model.apply(
      {}, np.array([[2, 5]], np.int32)), names=('params', 'missing'))
  _e(c, 'apply-params-other-model', P + 'params', lambda ctx: ctx.text_model.apply(
      _text_only_params(ctx), np.array([[2, 5]], np.int32)), names=('params', 'shape'))
  _e(c, 'apply-unknown-kwarg', P + 'kwargs', lambda ctx: ctx.text_model.apply(
      ctx.text_params, np.array([[2, 5]], np.int32), temperature=1.0), names=('temperature',))


def _checkpoint_cases(c: list) -> None:
  import gemma4
  import jax.numpy as jnp
  L = 'load_checkpoint.'
  load = gemma4.load_checkpoint
  _e(c, 'load-missing-path', L + 'path', lambda ctx: load(ctx.root / 'missing.gguf'),
     names=('missing.gguf',), errors=FILE_ERRORS)
  _e(c, 'load-empty-dir', L + 'path', lambda ctx: load(ctx.dir('empty-dir')),
     names=('empty-dir',))
  _e(c, 'load-text-file', L + 'path', lambda ctx: load(ctx.file('notes.txt', 'hello')),
     names=('notes.txt',))
  _e(c, 'load-path-none', L + 'path', lambda ctx: load(None), names=('path', 'None', 'PathLike'))
  _e(c, 'load-path-int', L + 'path', lambda ctx: load(5), names=('path', 'PathLike'))
  # HF directories with a bad config.json
  for label, config in (('not-json', '{"model_type": gemma'), ('json-list', '[1, 2, 3]'),
                        ('json-str', '"gemma"'), ('empty-object', '{}'),
                        ('unknown-model-type', dict(HF_CONFIG, model_type='llama')),
                        ('vocab-negative', dict(HF_CONFIG, vocab_size=-1)),
                        ('vocab-str', dict(HF_CONFIG, vocab_size='64')),
                        ('layers-zero', dict(HF_CONFIG, num_hidden_layers=0, layer_types=[])),
                        ('layer-types-short', dict(HF_CONFIG, layer_types=['full_attention'])),
                        ('heads-float', dict(HF_CONFIG, num_attention_heads=2.5)),
                        ('hidden-missing', {k: v for k, v in HF_CONFIG.items() if k != 'hidden_size'})):
    _e(c, f'load-hf-config-{label}', L + 'path', lambda ctx, l=label, cfg=config: load(
        ctx.hf_dir(f'hf-{l}', cfg)), names=(f'hf-{label}',))
  _e(c, 'load-hf-config-binary', L + 'path', lambda ctx: load(_binary_config(ctx)),
     names=('hf-binary',))
  for label, damage in (('truncated-data', _truncate(10)), ('truncated-far', _truncate(3000)),
                        ('header-length-absurd', _header_length(1 << 62)),
                        ('header-length-past-the-end', _header_length(50_000_000)),
                        ('header-cut', lambda f: f.write_bytes(f.read_bytes()[:200])),
                        ('empty', lambda f: f.write_bytes(b'')),
                        ('five-bytes', lambda f: f.write_bytes(b'\x01\x02\x03\x04\x05')),
                        ('missing', lambda f: f.unlink())):
    _e(c, f'load-safetensors-{label}', L + 'path', lambda ctx, l=label, d=damage: load(
        ctx.hf_dir(f'st-{l}', damage=d)), names=(f'st-{label}',), errors=FILE_ERRORS)
  _ok(c, 'load-hf-good', L + 'path', lambda ctx: load(ctx.hf_dir('hf-good')),
      lambda ctx, ck: ck.model.config.vocab_size == 64)
  # dtype
  for label, dtype in (('int8', jnp.int8), ('int32-str', 'int32'), ('float64', 'float64'),
                       ('bogus', 'bogus'), ('python-float', float), ('bool', bool),
                       ('complex64', jnp.complex64)):
    _e(c, f'load-dtype-{label}', L + 'dtype', lambda ctx, d=dtype: load(
        ctx.hf_dir('hf-good'), dtype=d), names=('dtype',))
  for label, dtype in (('bfloat16', jnp.bfloat16), ('float16-str', 'float16'),
                       ('float32-numpy', np.float32)):
    _ok(c, f'load-dtype-{label}', L + 'dtype', lambda ctx, d=dtype: load(
        ctx.hf_dir('hf-good'), dtype=d, quantize=None), lambda ctx, ck, d=dtype: all(
            jnp.dtype(x.dtype) == jnp.dtype(d) for x in _leaves(ck.params)))
  # quantize
  for label, value in (('int4', 'int4'), ('upper', 'INT8'), ('int', 8), ('bool', True),
                       ('empty', '')):
    _e(c, f'load-quantize-{label}', L + 'quantize', lambda ctx, v=value: load(
        ctx.hf_dir('hf-good'), quantize=v), names=('quantize',))
  _ok(c, 'load-quantize-int8', L + 'quantize', lambda ctx: load(
      ctx.hf_dir('hf-good'), quantize='int8'), lambda ctx, ck: ck.weights == 'int8')
  _ok(c, 'load-quantize-none', L + 'quantize', lambda ctx: load(
      ctx.hf_dir('hf-good'), quantize=None), lambda ctx, ck: ck.weights == 'float32')
  _e(c, 'load-model-mismatch', L + 'model', lambda ctx: load(
      ctx.hf_dir('hf-good'), gemma4.models.Gemma4_E2B()), names=('model', 'gemma4_e2b'))
  _e(c, 'load-model-str', L + 'model', lambda ctx: load(ctx.hf_dir('hf-good'), 'e2b'),
     names=('model',))
  # GGUF files
  _ok(c, 'load-gguf-good', L + 'path', lambda ctx: load(ctx.gguf_file),
      lambda ctx, ck: ck.model.config.vocab_size == 320 and ck.tokenizer is not None)
  _e(c, 'load-gguf-magic-only', L + 'path', lambda ctx: load(ctx.file('magic.gguf', b'GGUF')),
     names=('magic.gguf',))
  _e(c, 'load-gguf-header-garbage', L + 'path', lambda ctx: load(ctx.file(
      'garbage.gguf', b'GGUF' + bytes([3, 0, 0, 0]) + b'\xff\x13garbage')), names=('garbage.gguf',))
  _e(c, 'load-gguf-version-99', L + 'path', lambda ctx: load(ctx.file(
      'v99.gguf', b'GGUF' + struct.pack('<IQQ', 99, 0, 0))), names=('v99.gguf',))
  _e(c, 'load-gguf-cut-in-metadata', L + 'path', lambda ctx: load(ctx.gguf_cut('meta.gguf', 200)),
     names=('meta.gguf',))
  _e(c, 'load-gguf-cut-in-tensor-table', L + 'path', lambda ctx: load(ctx.gguf_cut(
      'table.gguf', _gguf_table_cut(ctx))), names=('table.gguf',))
  _e(c, 'load-gguf-cut-in-data', L + 'path', lambda ctx: load(ctx.gguf_cut(
      'data.gguf', len(ctx.gguf_file.read_bytes()) - 1000)), names=('data.gguf',))
  _e(c, 'load-gguf-tensor-count-huge', L + 'path', lambda ctx: load(ctx.file(
      'count.gguf', b'GGUF' + struct.pack('<IQQ', 3, 2 ** 60, 0))), names=('count.gguf',))
  _e(c, 'load-gguf-dtype-int8', L + 'dtype', lambda ctx: load(ctx.gguf_file, dtype=jnp.int8),
     names=('dtype',))
  # tokenizers
  T = 'Gemma4Tokenizer.path'
  _e(c, 'Gemma4Tokenizer-missing', T, lambda ctx: gemma4.Gemma4Tokenizer(ctx.root / 'none.model'),
     names=('none.model',), errors=FILE_ERRORS)
  _e(c, 'Gemma4Tokenizer-junk', T, lambda ctx: gemma4.Gemma4Tokenizer(ctx.file('junk2.model', b'\x00' * 64)),
     names=('junk2.model',), errors=FILE_ERRORS)
  _e(c, 'Gemma4Tokenizer-empty-file', T, lambda ctx: gemma4.Gemma4Tokenizer(ctx.file('empty.model', b'')),
     names=('empty.model',), errors=FILE_ERRORS)
  _e(c, 'Gemma4Tokenizer-directory', T, lambda ctx: gemma4.Gemma4Tokenizer(ctx.root),
     names=('gemma4-sweep', 'tokenizer'),
     errors=FILE_ERRORS)
  _e(c, 'Gemma4Tokenizer-none', T, lambda ctx: gemma4.Gemma4Tokenizer(None), names=('path',))
  _ok(c, 'Gemma4Tokenizer-pathlib', T, lambda ctx: gemma4.Gemma4Tokenizer(pathlib.Path(ctx.tok_path)),
      lambda ctx, t: t.vocab_size == VOCAB)


def _binary_config(ctx) -> pathlib.Path:
  d = ctx.hf_dir('hf-binary')
  (d / 'config.json').write_bytes(b'\xff\xfe\x00garbage')
  return d


def _gguf_table_cut(ctx) -> int:
  """A size inside the tensor table: just after the first tensor's name."""
  data = ctx.gguf_file.read_bytes()
  return data.index(b'token_embd.weight') + 20


def _leaves(tree):
  if isinstance(tree, dict):
    for v in tree.values():
      yield from _leaves(v)
  else:
    yield tree


def _audio_module_cases(c: list) -> None:
  from gemma4 import audio
  W = 'gemma4.audio.load.'
  R = 'gemma4.audio.resample.'
  Pp = 'gemma4.audio.prepare.'
  tone = (np.sin(np.arange(4410) * 0.1) * 12000).astype(np.int64)
  _e(c, 'audio-load-missing', W + 'path', lambda ctx: audio.load(ctx.root / 'none.wav'),
     names=('none.wav',), errors=FILE_ERRORS)
  _e(c, 'audio-load-not-a-wav', W + 'path', lambda ctx: audio.load(ctx.file('junk.wav', b'RIFF junk')),
     names=('junk.wav',), errors=FILE_ERRORS)
  _e(c, 'audio-load-text-file', W + 'path', lambda ctx: audio.load(ctx.file('notes.wav', 'hello ' * 50)),
     names=('notes.wav',), errors=FILE_ERRORS)
  _e(c, 'audio-load-directory', W + 'path', lambda ctx: audio.load(ctx.root),
     names=('gemma4-sweep', 'audio'), errors=FILE_ERRORS)
  _e(c, 'audio-load-no-frames', W + 'path', lambda ctx: audio.load(ctx.wav('empty.wav', np.zeros(0))),
     names=('empty.wav',))
  _either(c, 'audio-load-cut-mid-sample', W + 'path', lambda ctx: audio.load(ctx.wav(
      'cut.wav', tone, rate=44100, cut=44 + 2 * 1000 + 1)), names=('cut.wav',),
      check=lambda ctx, x: x.ndim == 1 and x.dtype == np.float32 and x.size > 0)
  _either(c, 'audio-load-stereo-cut-mid-frame', W + 'path', lambda ctx: audio.load(ctx.wav(
      'cut2.wav', np.stack([tone, tone], 1), rate=44100, channels=2, cut=44 + 4 * 1000 + 2)),
      names=('cut2.wav',), check=lambda ctx, x: x.ndim == 1 and x.size > 0)
  _ok(c, 'audio-load-8-bit', W + 'path', lambda ctx: audio.load(ctx.wav(
      'u8.wav', tone[:1600] // 100 + 128, width=1)), lambda ctx, x: x.shape == (1600,)
      and np.allclose(x, (tone[:1600] // 100) / 128, atol=1e-6))
  _ok(c, 'audio-load-24-bit', W + 'path', lambda ctx: audio.load(ctx.wav(
      'i24.wav', tone[:1600] * 256, width=3)), lambda ctx, x: x.shape == (1600,)
      and np.allclose(x, tone[:1600] / 32768, atol=1e-6))
  _ok(c, 'audio-load-44100-stereo', W + 'path', lambda ctx: audio.load(ctx.wav(
      's.wav', np.stack([tone, tone], 1), rate=44100, channels=2)),
      lambda ctx, x: x.shape == (1600,))
  for label, rate in (('zero', 0), ('negative', -16000), ('float', 16000.5), ('str', '16000'),
                      ('none', None), ('bool', True)):
    _e(c, f'audio-load-sample_rate-{label}', W + 'sample_rate', lambda ctx, r=rate: audio.load(
        ctx.wav('ok.wav', tone[:1600]), sample_rate=r), names=('rate', repr(rate)))
  x = (np.sin(np.arange(4410) * 0.1) * 0.5).astype(np.float32)
  for label, rate in (('zero', 0), ('negative', -1), ('float', 16000.5), ('str', '44100'),
                      ('none', None), ('bool', True)):
    _e(c, f'audio-resample-rate-{label}', R + 'rate', lambda ctx, r=rate: audio.resample(x, r),
       names=('rate', repr(rate)))
  _e(c, 'audio-resample-target-zero', R + 'target', lambda ctx: audio.resample(x, 44100, 0),
     names=('rate', 'target'))
  _ok(c, 'audio-resample-44100', R + 'rate', lambda ctx: audio.resample(x, 44100),
      lambda ctx, y: y.shape == (1600,) and y.dtype == np.float32)
  _ok(c, 'audio-resample-numpy-rate', R + 'rate', lambda ctx: audio.resample(x, np.int64(44100)),
      lambda ctx, y: np.array_equal(y, audio.resample(x, 44100)))
  _either(c, 'audio-resample-empty', R + 'x', lambda ctx: audio.resample(np.zeros(0, np.float32), 44100),
          names=('empty', 'samples', 'x'), check=lambda ctx, y: y.shape == (0,))
  _e(c, 'audio-resample-str-samples', R + 'x', lambda ctx: audio.resample('abc', 44100),
     names=('x', 'samples', "'abc'", 'abc'))
  clip = (np.sin(np.arange(16000) * 0.05) * 0.5).astype(np.float32)
  _ok(c, 'audio-prepare-one-second', Pp + 'clip', lambda ctx: audio.prepare(clip),
      lambda ctx, segs: len(segs) == 1 and segs[0].num_soft_tokens == 25)
  _ok(c, 'audio-prepare-long-clip-splits', Pp + 'clip', lambda ctx: audio.prepare(
      np.zeros(16000 * 31, np.float32)), lambda ctx, segs: len(segs) == 2)
  for label, kw, names in (('length-float', dict(length=2.5), ('length', 'audio_lengths')),
                           ('length-past-the-clip', dict(length=20000), ('length', 'audio_lengths')),
                           ('length-negative', dict(length=-1), ('length', 'audio_lengths')),
                           ('rate-zero', dict(rate=0), ('rate', 'audio_sample_rate')),
                           ('rate-str', dict(rate='16000'), ('rate', 'audio_sample_rate')),
                           ('max_segment-zero', dict(max_segment=0), ('max_segment',)),
                           ('max_segment-negative', dict(max_segment=-480000), ('max_segment',)),
                           ('max_segment-float', dict(max_segment=1.5), ('max_segment',))):
    _e(c, f'audio-prepare-{label}', Pp + label.split('-')[0],
       lambda ctx, kw=kw: audio.prepare(clip, **kw), names=names)
  _e(c, 'audio-prepare-too-short', Pp + 'clip', lambda ctx: audio.prepare(clip[:200]),
     names=('audio clip', 'samples'))
  _e(c, 'audio-prepare-nan', Pp + 'clip', lambda ctx: audio.prepare(
      np.full(16000, np.nan, np.float32)), names=('audio clip', 'NaN'))


def _cli_cases(c: list) -> None:
  def cli(id, argv, names, slow=True, stdin=None):
    if argv[:1] in (['sample'], ['chat']) and not {'-n', '--max-new-tokens'} & set(argv):
      argv = argv + ['-n', '2']  # where a bad flag is accepted, the run ends soon
    c.append(Case(id, 'cli ' + (names[0] if names else ''),
                  lambda ctx, a=argv: ctx.cli(*[_fill(ctx, x) for x in a], stdin=stdin),
                  'error', tuple(names), cli=True, slow=slow))

  # the default test runs these six (each process imports jax: ~3 s)
  cli('cli-temperature-nan', ['sample', 'x', '--temperature', 'nan'], ('--temperature',), slow=False)
  cli('cli-top-p-above-1', ['sample', 'x', '--top-p', '1.5'], ('--top-p',))
  cli('cli-seed-2**64', ['sample', 'x', '--seed', str(2 ** 64)], ('--seed',), slow=False)
  cli('cli-max-soft-tokens-100', ['sample', 'x', '--max-soft-tokens', '100'],
      ('--max-soft-tokens', 'max_soft_tokens'))
  cli('cli-checkpoint-missing', ['sample', 'x', '-c', '{root}/missing.gguf'], ('missing.gguf',),
      slow=False)
  cli('cli-checkpoint-bad-hf-config', ['sample', 'x', '-c', '{hf-bad}'], ('hf-cli-bad',), slow=False)
  cli('cli-checkpoint-truncated-gguf', ['sample', 'x', '-c', '{gguf-cut}'], ('data.gguf',),
      slow=False)
  cli('cli-dtype-int8', ['sample', 'x', '--dtype', 'int8'], ('--dtype', 'int8'), slow=False)
  # the script only
  cli('cli-chat-top-k-zero', ['chat', '--top-k', '0'], ('--top-k',))
  cli('cli-image-missing', ['sample', 'x', '--image', '{root}/cat.png'], ('cat.png',))
  cli('cli-seed-negative', ['sample', 'x', '--seed', '-1'], ('--seed',))
  cli('cli-seed-not-int', ['sample', 'x', '--seed', 'abc'], ('--seed',))
  cli('cli-max-new-tokens-str', ['sample', 'x', '-n', 'abc'], ('--max-new-tokens', 'abc'))
  cli('cli-max-new-tokens-zero', ['sample', 'x', '-n', '0'], ('--max-new-tokens',))
  cli('cli-cache-length-zero', ['sample', 'x', '--cache-length', '0'], ('--cache-length',))
  cli('cli-max-new-tokens-fills-cache', ['sample', 'x', '-n', '300', '--cache-length', '256'],
      ('--max-new-tokens', '--cache-length'))
  cli('cli-temperature-negative', ['sample', 'x', '--temperature', '-1'], ('--temperature',))
  cli('cli-temperature-inf', ['chat', '--temperature', 'inf'], ('--temperature',))
  cli('cli-top-p-zero', ['chat', '--top-p', '0'], ('--top-p',))
  cli('cli-min-p-2', ['sample', 'x', '--min-p', '2'], ('--min-p',))
  cli('cli-top-k-float', ['sample', 'x', '--top-k', '2.5'], ('--top-k',))
  cli('cli-tokenizer-missing', ['sample', 'x', '-t', '{root}/none.model'], ('none.model',))
  cli('cli-tokenizer-directory', ['sample', 'x', '-t', '{root}'], ('--tokenizer', 'tokenizer'))
  cli('cli-audio-missing', ['sample', 'x', '--audio', '{root}/a.wav'], ('a.wav',))
  cli('cli-checkpoint-text-file', ['sample', 'x', '-c', '{notes}'], ('notes.txt',))
  cli('cli-checkpoint-empty-dir', ['sample', 'x', '-c', '{empty-dir}'], ('empty-dir',))
  cli('cli-checkpoint-truncated-safetensors', ['sample', 'x', '-c', '{st-cut}'], ('st-cli-cut',))
  cli('cli-checkpoint-gguf-magic-only', ['sample', 'x', '-c', '{magic}'], ('magic.gguf',))
  cli('cli-hf-without-tokenizer', ['sample', 'x', '-c', '{hf-good}'], ('tokenizer',))
  cli('cli-hf-tokenizer-junk', ['sample', 'x', '-c', '{hf-good}', '-t', '{junk-model}'],
      ('junk.model',))
  cli('cli-hf-tokenizer-other-vocab', ['sample', 'x', '-c', '{hf-good}', '-t', '{tok}'],
      ('tokenizer', 'vocabulary'))
  cli('cli-image-on-a-text-model', ['sample', 'x', '-c', '{gguf}', '--image', '{png}'],
      ('--image',))
  cli('cli-audio-on-a-text-model', ['sample', 'x', '-c', '{gguf}', '--audio', '{wav}'],
      ('--audio',))
  cli('cli-prompt-too-long', ['sample', 'a b c d e f g h ' * 40, '-c', '{gguf}',
                              '--cache-length', '64', '-n', '4'], ('cache',))
  cli('cli-model-unknown', ['sample', 'x', '-c', '{hf-good}', '--model', 'gemma4_e3b'],
      ('--model', 'gemma4_e3b'))
  cli('cli-missing-prompt', ['sample'], ('PROMPT', 'prompt'))
  cli('cli-unknown-command', ['bogus'], ('bogus',))
  cli('cli-unknown-flag', ['sample', 'x', '--bogus'], ('--bogus',))
  cli('cli-stdin-prompt-too-long', ['sample', '-', '-c', '{gguf}', '--cache-length', '64', '-n',
                                    '4'], ('cache',), stdin='a b c d e f g h ' * 40)
  c.append(Case('cli-gguf-samples', 'cli -c', lambda ctx: ctx.cli(
      'sample', 'a b', '-c', str(ctx.gguf_file), '-n', '2', '--cache-length', '64'), 'ok',
      cli=True, slow=True))


def _fill(ctx, arg: str) -> str:
  """Placeholders of CLI arguments: files made on demand."""
  if not (arg.startswith('{') and arg.endswith('}')):
    return arg.replace('{root}', str(ctx.root))
  key = arg[1:-1]
  if key == 'root':
    return str(ctx.root)
  make = {
      'hf-bad': lambda: ctx.hf_dir('hf-cli-bad', '{"model_type": gemma'),
      'hf-good': lambda: ctx.hf_dir('hf-good'),
      'st-cut': lambda: ctx.hf_dir('st-cli-cut', damage=_truncate(10)),
      'gguf-cut': lambda: ctx.gguf_cut('data.gguf', len(ctx.gguf_file.read_bytes()) - 1000),
      'gguf': lambda: ctx.gguf_file,
      'magic': lambda: ctx.file('magic.gguf', b'GGUF'),
      'notes': lambda: ctx.file('notes.txt', 'hello'),
      'empty-dir': lambda: ctx.dir('empty-dir'),
      'junk-model': lambda: ctx.file('junk.model', b'not a model'),
      'tok': lambda: ctx.tok_path,
      'png': lambda: _png(ctx),
      'wav': lambda: ctx.wav('ok.wav', (np.sin(np.arange(16000) * 0.05) * 8000).astype(np.int64)),
  }[key]
  return str(make())


def _png(ctx) -> pathlib.Path:
  from PIL import Image
  return _save(ctx, 'img.png', Image.fromarray(ctx.img))


def all_cases() -> list[Case]:
  cases: list[Case] = []
  for add in (_sampler_cases, _sample_cases, _image_cases, _audio_cases, _sampling_cases,
              _model_cases, _checkpoint_cases, _audio_module_cases, _cli_cases):
    add(cases)
  ids = [case.id for case in cases]
  dup = sorted({i for i in ids if ids.count(i) > 1})
  assert not dup, f'duplicate case ids: {dup}'
  return cases


CASES = all_cases()
