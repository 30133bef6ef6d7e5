"""The `gemma4` command: real text from the default model, chat through the cache, and
one-line errors with exit status 1."""

import io
import json
import os
import re
import subprocess
import sys

import pytest

import gemma4
from gemma4 import cli

GOLDEN = json.load(open(os.path.join(os.path.dirname(__file__), 'golden', 'gemma3_270m.json')))


@pytest.fixture(scope='module')
def default_ckpt():
  """The default model in float32 (the golden's reference: `--quantize none`)."""
  return gemma4.load_default(progress=False, quantize=None)


@pytest.fixture(scope='module')
def default_int8(default_ckpt):
  """What the CLI loads by default on CPU (load-time quantization equals quantize_params:
  test_quant.py)."""
  return default_ckpt._replace(params=gemma4.quant.quantize_params(default_ckpt.params))


@pytest.fixture
def cached_load(monkeypatch, default_ckpt, default_int8):
  """load_checkpoint of the default file returns the module's copies (loads take ~15 s)."""
  real = gemma4.load_checkpoint
  default = gemma4.default_checkpoint_path()

  def load(path, model=None, **kw):
    if os.fspath(path) == default and model is None and kw.get('dtype') is None:
      cached = {'auto': default_int8, 'int8': default_int8, None: default_ckpt}
      if kw.get('quantize', 'auto') in cached:
        return cached[kw.get('quantize', 'auto')]
    return real(path, model, **kw)
  monkeypatch.setattr(gemma4, 'load_checkpoint', load)


def test_sample_prints_the_greedy_continuation(cached_load, capsys, default_ckpt):
  case = GOLDEN['cases'][0]
  assert cli.main(['sample', case['prompt'], '-n', '12', '--no-stream', '--cache-length', '256',
                   '--quantize', 'none']) == 0
  out, err = capsys.readouterr()
  want = default_ckpt.tokenizer.decode([s['id'] for s in case['steps'][:12]])
  assert out == case['prompt'] + want + '\n'
  assert 'loaded gemma3_270m' in err and 'float32 weights' in err and '12 new tokens' in err
  n_prompt = len(default_ckpt.tokenizer.encode(case['prompt'], add_bos=True))
  assert re.search(rf'first token after [0-9.]+ s \(compiling [0-9.]+ s, prompt of {n_prompt} '
                   r'tokens [0-9.]+ s = [0-9.]+ tokens/s\), then [0-9.]+ tokens/s', err)


def test_default_is_int8_says_so_and_prints_the_samplers_greedy_text(cached_load, capsys,
                                                                     default_int8):
  case = GOLDEN['cases'][0]
  assert cli.main(['sample', case['prompt'], '-n', '12', '--no-stream', '--cache-length', '256']) == 0
  out, err = capsys.readouterr()
  sampler = gemma4.Gemma4Sampler(model=default_int8.model, params=default_int8.params,
                                 tokenizer=default_int8.tokenizer, cache_length=256,
                                 max_out_length=12, sampling=gemma4.sampling.Greedy())
  assert out == case['prompt'] + sampler.sample(case['prompt'], max_new_tokens=12) + '\n'
  assert 'int8 weights (--quantize none for float)' in err


def test_stream_prints_the_same_text(cached_load, capsys, default_ckpt):
  case = GOLDEN['cases'][1]
  assert cli.main(['sample', case['prompt'], '-n', '10', '--stream', '--cache-length', '256',
                   '--quantize', 'none']) == 0
  out, _ = capsys.readouterr()
  want = default_ckpt.tokenizer.decode([s['id'] for s in case['steps'][:10]])
  assert out == case['prompt'] + want + '\n'


def test_chat_keeps_the_history_in_the_cache(cached_load, capsys, monkeypatch):
  monkeypatch.setattr('sys.stdin', io.StringIO('Hello!\nWhat did I just say?\n\n'))
  calls = []
  real_stream = gemma4.Gemma4Sampler.stream_tokens

  def spy(self, prompt, **kw):
    calls.append((prompt, kw.get('last_state') is not None))
    return real_stream(self, prompt, **kw)
  monkeypatch.setattr(gemma4.Gemma4Sampler, 'stream_tokens', spy)
  assert cli.main(['chat', '-n', '6', '--cache-length', '256']) == 0
  assert len(calls) == 2
  assert calls[0] == ('<start_of_turn>user\nHello!<end_of_turn>\n<start_of_turn>model\n', False)
  second, continued = calls[1]
  assert continued and second.endswith(
      '<end_of_turn>\n<start_of_turn>user\nWhat did I just say?<end_of_turn>\n<start_of_turn>model\n')


@pytest.mark.parametrize('argv, message', [
    (['sample', 'x', '-c', '/no/such/file.gguf'], "checkpoint not found: '/no/such/file.gguf'"),
    (['sample', 'x', '-c', __file__], 'unknown checkpoint layout'),
    (['sample', 'x', '--temperature', '-1'], '--temperature must be >= 0'),
    (['sample', 'x', '--image', 'cat.png'], 'file not found: cat.png'),
    (['sample', 'x', '--image', __file__], '--image needs a model with a vision encoder; gemma3_270m has none'),
    (['sample', 'x', '--audio', 'a.wav'], 'file not found: a.wav'),
    (['sample', 'x', '--audio', __file__], '--audio needs a model with an audio encoder (E2B, E4B); gemma3_270m has none'),
    (['sample', 'x', '--max-soft-tokens', '100'], '--max-soft-tokens must be one of 70, 140, 280, 560, 1120'),
    (['sample', 'x', '--model', 'gemma9'], "unknown preset 'gemma9'"),
])
def test_errors_are_one_line_and_exit_1(cached_load, capsys, argv, message):
  assert cli.main(argv) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith('gemma4: error: ') and message in err[-1]


def test_tokenizer_that_does_not_match_the_vocabulary(tmp_path, capsys):
  from tests import tokenizer_util
  from tests.test_checkpoint_gguf import GEMMA3_META, _gemma3_tensors, _write
  from gemma4.checkpoints import gguf as gguf_ckpt
  import dataclasses
  cfg = dataclasses.replace(
      gguf_ckpt._gemma3_config({f'gemma3.{k}': v for k, v in GEMMA3_META.items()}),
      vocab_size=320)
  _write(tmp_path / 'tiny.gguf', 'gemma3', GEMMA3_META, _gemma3_tensors(cfg, 320))
  tok = tokenizer_util.build(tmp_path / 'big.model')  # 262144 pieces
  assert cli.main(['sample', 'x', '-c', str(tmp_path / 'tiny.gguf'), '-t', str(tok)]) == 1
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert 'the tokenizer has 262144 pieces but the model has a vocabulary of 320' in err


def test_help_lists_every_option(capsys):
  with pytest.raises(SystemExit):
    cli.main(['sample', '--help'])
  out = capsys.readouterr().out
  for flag in ('--checkpoint', '--tokenizer', '--image', '--audio', '--max-new-tokens',
               '--temperature', '--top-k', '--top-p', '--min-p', '--seed', '--no-stream'):
    assert flag in out


def _tiny_e2b_path(tmp_path):
  """A file the CLI takes for a GGUF checkpoint (its magic); load_checkpoint is faked."""
  (tmp_path / 'tiny-e2b.gguf').write_bytes(b'GGUF')
  return str(tmp_path / 'tiny-e2b.gguf')


def test_image_gives_the_official_greedy_text(tmp_path, capsys, monkeypatch):
  """`--image` on a model with a vision encoder (tiny E2B, budget 70): the text equals
  the official sampler's tokens recorded in tests/golden (sampler_images_tiny_gemma4_e2b)."""
  from PIL import Image
  from tests import test_sampler_images as images_test
  from tests import tokenizer_util
  tok = gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path / 't.model'))
  s = images_test._sampler('e2b', tok)
  ckpt = gemma4.Checkpoint(s.model, s.params, tok)
  tiny = _tiny_e2b_path(tmp_path)
  monkeypatch.setattr(gemma4, 'load_checkpoint',
                      lambda path, model=None, **kw: ckpt if path == tiny else None)
  Image.fromarray(images_test.IMG_A).save(tmp_path / 'a.png')
  with open(os.path.join(os.path.dirname(__file__), 'golden',
                         'sampler_images_tiny_gemma4_e2b.json')) as f:
    want = tok.decode(json.load(f)['one'])
  prompt = 'Look: <|image|> What is it?'
  argv = ['sample', prompt, '-c', tiny, '--image', str(tmp_path / 'a.png'),
          '--max-soft-tokens', '70', '-n', '8', '--cache-length', '512']
  assert cli.main(argv + ['--no-stream']) == 0
  assert capsys.readouterr().out == prompt + want + '\n'
  assert cli.main(argv + ['--stream']) == 0
  assert capsys.readouterr().out == prompt + want + '\n'
  # Without a placeholder in the prompt, one is added at the end for each image.
  assert cli.main(['sample', 'Look:', '-c', tiny, '--image', str(tmp_path / 'a.png'),
                   '--max-soft-tokens', '70', '-n', '2', '--no-stream']) == 0
  assert capsys.readouterr().out.startswith('Look:\n<|image|>')


def test_audio_gives_the_samplers_text(tmp_path, capsys, monkeypatch):
  """`--audio` reads a WAV (stereo int16 at 22.05 kHz: mixed, resampled) and gives the
  text the sampler gives for that clip; a file that is no WAV is a one-line error."""
  import wave
  import numpy as np
  from gemma4 import audio
  from tests import test_sampler_images as images_test
  from tests import tokenizer_util
  tok = gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path / 't.model'))
  s = images_test._sampler('e2b', tok)
  ckpt = gemma4.Checkpoint(s.model, s.params, tok)
  tiny = _tiny_e2b_path(tmp_path)
  monkeypatch.setattr(gemma4, 'load_checkpoint',
                      lambda path, model=None, **kw: ckpt if path == tiny else None)
  pcm = (np.random.default_rng(0).standard_normal((22050, 2)) * 8000).astype('<i2')
  with wave.open(str(tmp_path / 'a.wav'), 'wb') as f:
    f.setnchannels(2)
    f.setsampwidth(2)
    f.setframerate(22050)
    f.writeframes(pcm.tobytes())
  prompt = 'Hear: <|audio|> What is it?'
  want = s.sample(prompt, audio=[audio.load(tmp_path / 'a.wav')], max_new_tokens=6)
  argv = ['sample', prompt, '-c', tiny, '--audio', str(tmp_path / 'a.wav'), '-n', '6',
          '--cache-length', '512']
  assert cli.main(argv + ['--no-stream']) == 0
  assert capsys.readouterr().out == prompt + want + '\n'
  assert cli.main(argv + ['--stream']) == 0
  assert capsys.readouterr().out == prompt + want + '\n'
  (tmp_path / 'b.wav').write_bytes(b'RIFF nonsense')
  assert cli.main(['sample', 'x', '-c', tiny, '--audio', str(tmp_path / 'b.wav')]) == 1
  assert capsys.readouterr().err.strip().splitlines()[-1].startswith('gemma4: error: cannot read audio')


# --- the CLI's promise: every user error is one line, exit status 1, no traceback -------

def _error_line(capsys):
  """The stderr of a failed run: exactly one `gemma4: error:` line, nothing on stdout."""
  out, err = capsys.readouterr()
  lines = err.splitlines()
  assert out == '' and 'Traceback' not in err
  errors = [line for line in lines if line.startswith('gemma4: error: ')]
  assert len(errors) == 1, err
  return lines, errors[0]


# Each fires before the model loads: no `loading` line, no checkpoint read.
@pytest.mark.parametrize('argv, message', [
    (['--seed', '99999999999999999999999'],
     '--seed must be in [0, 2**64 - 1], got 99999999999999999999999'),
    (['--seed', str(2**64)], f'--seed must be in [0, 2**64 - 1], got {2**64}'),
    (['--seed', '-1'], '--seed must be in [0, 2**64 - 1], got -1'),
    (['--seed', 'abc'], "argument --seed: invalid int value: 'abc'"),
    (['--temperature', '-1'], '--temperature must be >= 0 and finite, got -1.0'),
    (['--temperature', 'nan'], '--temperature must be >= 0 and finite, got nan'),
    (['--temperature', 'inf'], '--temperature must be >= 0 and finite, got inf'),
    (['--top-k', '0'], '--top-k must be >= 1, got 0'),
    (['--temperature', '1', '--top-k', '-3'], '--top-k must be >= 1, got -3'),
    (['--top-p', '1.5'], '--top-p must be in (0, 1], got 1.5'),
    (['--top-p', '0'], '--top-p must be in (0, 1], got 0.0'),
    (['--top-p', 'nan'], '--top-p must be in (0, 1], got nan'),
    (['--min-p', '-0.1'], '--min-p must be in [0, 1], got -0.1'),
    (['--min-p', '2'], '--min-p must be in [0, 1], got 2.0'),
    (['-n', '0'], '--max-new-tokens must be >= 1, got 0'),
    (['--cache-length', '0'], '--cache-length must be >= 1, got 0'),
    (['-n', '256', '--cache-length', '256'],
     '--max-new-tokens 256 leaves no room for the prompt in --cache-length 256: it must be '
     'at most 255'),
    (['--max-soft-tokens', '100'], '--max-soft-tokens must be one of 70, 140, 280, 560, 1120, '
                                   'got 100'),
    (['--max-soft-tokens', '0'], '--max-soft-tokens must be one of 70, 140, 280, 560, 1120, got 0'),
    (['-c', '{tmp}/missing.gguf'], "checkpoint not found: '{tmp}/missing.gguf'"),
    (['-c', '{tmp}'], "unknown checkpoint layout: '{tmp}' has neither config.json"),
    (['-c', __file__], f"unknown checkpoint layout: '{__file__}' is a file but not GGUF"),
    (['-t', '{tmp}/missing.model'], '--tokenizer: file not found: {tmp}/missing.model'),
    (['-t', '{tmp}'], '--tokenizer: a directory, not a file: {tmp}'),
    (['--image', '{tmp}/cat.png'], '--image: file not found: {tmp}/cat.png'),
    (['--image', __file__, '--image', '{tmp}'], '--image: a directory, not a file: {tmp}'),
    (['--audio', '{tmp}/a.wav'], '--audio: file not found: {tmp}/a.wav'),
    (['--bogus'], 'unrecognized arguments: --bogus'),
])
@pytest.mark.parametrize('command', ['sample', 'chat'])
def test_bad_flags_and_files_are_refused_before_loading(tmp_path, capsys, monkeypatch, command,
                                                        argv, message):
  monkeypatch.setattr(gemma4, 'load_checkpoint', None)  # a load would fail loudly
  argv = [a.replace('{tmp}', str(tmp_path)) for a in argv]
  prompt = ['x'] if command == 'sample' else []
  assert cli.main([command, *prompt, *argv]) == 1
  lines, line = _error_line(capsys)
  assert lines == [line]  # nothing else: no `loading` status, no warning
  assert message.replace('{tmp}', str(tmp_path)) in line


def test_the_demo_checks_its_flags_too(capsys):
  assert cli.main(['--top-p', '1.5']) == 1
  lines, line = _error_line(capsys)
  assert lines == [line] and '--top-p must be in (0, 1], got 1.5' in line


def _gguf_header_only(path):
  path.write_bytes(b'GGUF' + bytes([3, 0, 0, 0]) + b'\xff\x13garbage')


@pytest.mark.parametrize('make, what', [
    (lambda d: (d / 'config.json').write_text('{"model_type": gemma3'), 'not JSON'),
    (lambda d: (d / 'config.json').write_text('[1, 2, 3]'), 'a JSON list'),
    (lambda d: (d / 'config.json').write_text('"gemma"'), 'a JSON string'),
    (lambda d: (d / 'config.json').write_bytes(b'\xff\xfe\x00garbage'), 'not UTF-8'),
])
def test_a_damaged_hf_config_is_one_line(tmp_path, capsys, make, what):
  ckpt = tmp_path / 'hf'
  ckpt.mkdir()
  make(ckpt)
  assert cli.main(['sample', 'x', '-c', str(ckpt)]) == 1
  lines, line = _error_line(capsys)
  assert lines[0] == f'gemma4: loading {ckpt}' and lines[1] == line
  assert str(ckpt) in line, what


def test_a_truncated_gguf_is_one_line(tmp_path, capsys):
  _gguf_header_only(tmp_path / 'bad.gguf')
  assert cli.main(['sample', 'x', '-c', str(tmp_path / 'bad.gguf')]) == 1
  lines, line = _error_line(capsys)
  assert lines == [f'gemma4: loading {tmp_path / "bad.gguf"}', line]
  assert 'bad.gguf' in line


def test_a_gguf_cut_short_is_one_line(tmp_path, capsys):
  """A real (tiny) GGUF file cut in its tensor data, and one cut in its metadata."""
  import dataclasses
  from tests.test_checkpoint_gguf import GEMMA3_META, _gemma3_tensors, _write
  from gemma4.checkpoints import gguf as gguf_ckpt
  cfg = dataclasses.replace(
      gguf_ckpt._gemma3_config({f'gemma3.{k}': v for k, v in GEMMA3_META.items()}),
      vocab_size=320)
  _write(tmp_path / 'tiny.gguf', 'gemma3', GEMMA3_META, _gemma3_tensors(cfg, 320))
  data = (tmp_path / 'tiny.gguf').read_bytes()
  for name, size in (('data.gguf', len(data) - 1000), ('meta.gguf', 200)):
    (tmp_path / name).write_bytes(data[:size])
    assert cli.main(['sample', 'x', '-c', str(tmp_path / name), '-n', '2']) == 1
    lines, line = _error_line(capsys)
    assert lines[:2] == [f'gemma4: loading {tmp_path / name}', line]
    assert name in line
    assert all(l.startswith('  ') for l in lines[2:])  # a CheckpointError's details


def test_a_tokenizer_that_is_no_sentencepiece_model_is_one_line(cached_load, tmp_path, capsys):
  (tmp_path / 'bad.model').write_bytes(b'not a model')
  assert cli.main(['sample', 'x', '-t', str(tmp_path / 'bad.model')]) == 1
  lines, line = _error_line(capsys)
  assert lines[-1] == line and 'bad.model' in line


def test_a_checkpoint_error_shows_its_problems_indented(tmp_path, capsys, monkeypatch):
  problems = [f'missing tensor blk.{i}.attn_q.weight' for i in range(25)]

  def load(path, model=None, **kw):
    raise gemma4.CheckpointError('the GGUF file x.gguf does not fit the model (25 problems):\n  '
                                 + '\n  '.join(problems))
  monkeypatch.setattr(gemma4, 'load_checkpoint', load)
  (tmp_path / 'x.gguf').write_bytes(b'GGUF')
  assert cli.main(['sample', 'x', '-c', str(tmp_path / 'x.gguf')]) == 1
  lines, line = _error_line(capsys)
  assert line == 'gemma4: error: the GGUF file x.gguf does not fit the model (25 problems):'
  assert lines[2:] == [f'  {p}' for p in problems[:20]] + ['  ... and 5 more']


@pytest.mark.parametrize('error, message', [
    (OSError(28, 'No space left on device'), '[Errno 28] No space left on device'),
    (MemoryError(), 'MemoryError'),
    (KeyError('tokenizer.ggml.tokens'), "KeyError: 'tokenizer.ggml.tokens'"),
    (TypeError("'NoneType' object is not subscriptable"), "TypeError: 'NoneType' object"),
])
def test_what_a_loader_raises_is_one_line(tmp_path, capsys, monkeypatch, error, message):
  def load(path, model=None, **kw):
    raise error
  monkeypatch.setattr(gemma4, 'load_checkpoint', load)
  (tmp_path / 'x.gguf').write_bytes(b'GGUF')
  assert cli.main(['sample', 'x', '-c', str(tmp_path / 'x.gguf')]) == 1
  _, line = _error_line(capsys)
  assert line.startswith(f'gemma4: error: cannot read checkpoint {tmp_path / "x.gguf"}: {message}')


def test_bugs_keep_their_traceback_and_ctrl_c_exits_130(monkeypatch):
  def bug(args):
    raise ZeroDivisionError('a bug')
  monkeypatch.setattr(cli, '_load', bug)
  with pytest.raises(ZeroDivisionError):
    cli.main(['sample', 'x'])

  def interrupted(args):
    raise KeyboardInterrupt
  monkeypatch.setattr(cli, '_load', interrupted)
  assert cli.main(['sample', 'x']) == 130


def _stop_at_load(monkeypatch):
  """cli._load records the checked arguments and stops there with a one-line error."""
  seen = []

  def load(args):
    seen.append(args)
    raise cli.CliError('stopped before loading')
  monkeypatch.setattr(cli, '_load', load)
  return seen


@pytest.mark.parametrize('flags, warning', [
    (['--top-k', '5'], 'gemma4: --top-k is ignored: --temperature 0 decodes greedily'),
    (['--top-k', '5', '--min-p', '0.1', '--temperature', '0'],
     'gemma4: --top-k, --min-p are ignored: --temperature 0 decodes greedily'),
    (['--top-p', '0.95'], 'gemma4: --top-p is ignored: --temperature 0 decodes greedily'),
    (['--temperature', '0.7', '--top-k', '5'], None),
    ([], None),
])
def test_greedy_warns_about_ignored_sampling_flags(capsys, monkeypatch, flags, warning):
  _stop_at_load(monkeypatch)
  assert cli.main(['sample', 'x', *flags]) == 1
  lines = capsys.readouterr().err.splitlines()
  assert lines == ([warning] if warning else []) + ['gemma4: error: stopped before loading']


def test_sampling_defaults_and_the_seed_reach_the_sampler(monkeypatch, capsys):
  from gemma4 import sampler, sampling
  seen = _stop_at_load(monkeypatch)
  assert cli.main(['sample', 'x', '--temperature', '0.5']) == 1
  assert cli._sampling(seen[-1]) == sampling.Combined(temperature=0.5, top_k=64, top_p=0.95,
                                                      min_p=0.0)
  assert cli.main(['chat', '--temperature', '2', '--top-k', '3', '--top-p', '1',
                   '--min-p', '0.2']) == 1
  assert cli._sampling(seen[-1]) == sampling.Combined(temperature=2.0, top_k=3, top_p=1.0,
                                                      min_p=0.2)
  assert cli.main(['sample', 'x']) == 1
  assert cli._sampling(seen[-1]) == sampling.Greedy()
  # The whole uint64 range is a seed, as the sampler takes it.
  for seed in (0, 2**32 + 5, 2**64 - 1):
    assert cli.main(['sample', 'x', '--seed', str(seed)]) == 1
    assert seen[-1].seed == seed
    sampler.normalize_rng(seen[-1].seed)
  capsys.readouterr()


def test_help_documents_the_effective_defaults(capsys):
  with pytest.raises(SystemExit):
    cli.main(['chat', '--help'])
  out = ' '.join(capsys.readouterr().out.split())
  assert '(default 64)' in out and '(default 0.95)' in out and '(default 0)' in out


def test_a_given_top_k_is_ignored_by_greedy_and_the_text_is_greedy(cached_load, capsys,
                                                                   default_ckpt):
  case = GOLDEN['cases'][0]
  assert cli.main(['sample', case['prompt'], '-n', '12', '--no-stream', '--cache-length', '256',
                   '--top-k', '5', '--quantize', 'none']) == 0
  out, err = capsys.readouterr()
  want = default_ckpt.tokenizer.decode([s['id'] for s in case['steps'][:12]])
  assert out == case['prompt'] + want + '\n'
  assert err.splitlines()[0] == 'gemma4: --top-k is ignored: --temperature 0 decodes greedily'


def _cli(*argv):
  """The `gemma4` command in a fresh interpreter: (exit status, stdout, stderr)."""
  p = subprocess.run([sys.executable, '-m', 'gemma4', *argv], capture_output=True, text=True,
                     timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
  return p.returncode, p.stdout, p.stderr


def test_process_seed_overflow_is_one_line():
  rc, out, err = _cli('sample', 'x', '--seed', '99999999999999999999999')
  assert rc == 1 and out == ''
  assert err.splitlines() == [
      'gemma4: error: --seed must be in [0, 2**64 - 1], got 99999999999999999999999']


def test_process_bad_flag_value_is_one_line(tmp_path):
  rc, out, err = _cli('chat', '--top-p', '1.5', '-c', str(tmp_path / 'none.gguf'))
  assert rc == 1 and out == ''
  assert err.splitlines() == ['gemma4: error: --top-p must be in (0, 1], got 1.5']


def test_process_truncated_gguf_is_one_line_after_loading(tmp_path):
  _gguf_header_only(tmp_path / 'bad.gguf')
  rc, out, err = _cli('sample', 'x', '-c', str(tmp_path / 'bad.gguf'))
  assert rc == 1 and out == '' and 'Traceback' not in err
  lines = err.splitlines()
  assert len(lines) == 2 and lines[0] == f'gemma4: loading {tmp_path / "bad.gguf"}'
  assert lines[1].startswith('gemma4: error: ') and 'bad.gguf' in lines[1]


def test_stop_ends_the_text_before_it(cached_load, capsys):
  case = GOLDEN['cases'][0]
  argv = ['sample', case['prompt'], '-n', '12', '--no-stream', '--cache-length', '256']
  assert cli.main(argv) == 0
  full = capsys.readouterr().out[len(case['prompt']):-1]
  stop = full[len(full) // 2:len(full) // 2 + 2]
  assert cli.main(argv + ['--stop', stop, '--stop', 'zzzz']) == 0
  out, err = capsys.readouterr()
  assert out == case['prompt'] + full[:full.find(stop)] + '\n'
  assert cli.main(argv + ['--stop', '']) == 1
  assert 'gemma4: error: --stop must not be empty' in capsys.readouterr().err
