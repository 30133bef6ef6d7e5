"""The `gemma4` command: real text from the default model, chat through the cache, and
one-line errors with exit status 1."""

import io
import json
import os

import pytest

import gemma4
from gemma4 import cli

GOLDEN = json.load(open(os.path.join(os.path.dirname(__file__), 'golden', 'gemma3_270m.json')))


@pytest.fixture(scope='module')
def default_ckpt():
  return gemma4.load_default(progress=False)


@pytest.fixture
def cached_load(monkeypatch, default_ckpt):
  """load_checkpoint of the default file returns the module's copy (loads take ~15 s)."""
  real = gemma4.load_checkpoint
  default = gemma4.default_checkpoint_path()

  def load(path, model=None, **kw):
    if os.fspath(path) == default and model is None and kw.get('dtype') is None:
      return default_ckpt
    return real(path, model, **kw)
  monkeypatch.setattr(gemma4, 'load_checkpoint', load)


def test_sample_prints_the_greedy_continuation(cached_load, capsys, default_ckpt):
  case = GOLDEN['cases'][0]
  assert cli.main(['sample', case['prompt'], '-n', '12', '--no-stream', '--cache-length', '256']) == 0
  out, err = capsys.readouterr()
  want = default_ckpt.tokenizer.decode([s['id'] for s in case['steps'][:12]])
  assert out == case['prompt'] + want + '\n'
  assert 'loaded gemma3_270m' in err and '12 new tokens' in err


def test_stream_prints_the_same_text(cached_load, capsys, default_ckpt):
  case = GOLDEN['cases'][1]
  assert cli.main(['sample', case['prompt'], '-n', '10', '--stream', '--cache-length', '256']) == 0
  out, _ = capsys.readouterr()
  want = default_ckpt.tokenizer.decode([s['id'] for s in case['steps'][:10]])
  assert out == case['prompt'] + want + '\n'


def test_chat_keeps_the_history_in_the_cache(cached_load, capsys, monkeypatch):
  monkeypatch.setattr('sys.stdin', io.StringIO('Hello!\nWhat did I just say?\n\n'))
  calls = []
  real_stream = gemma4.Gemma4Sampler.stream

  def spy(self, prompt, **kw):
    calls.append((prompt, kw.get('last_state') is not None))
    return real_stream(self, prompt, **kw)
  monkeypatch.setattr(gemma4.Gemma4Sampler, 'stream', spy)
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
    (['sample', 'x', '--max-soft-tokens', '100'], 'max_soft_tokens must be one of 70, 140, 280, 560, 1120'),
    (['sample', 'x', '--model', 'gemma9'], "unknown preset 'gemma9'"),
])
def test_errors_are_one_line_and_exit_1(cached_load, capsys, argv, message):
  assert cli.main(argv) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith('gemma4: error: ') and message in err[-1]


def test_tokenizer_that_does_not_match_the_vocabulary(tmp_path, capsys):
  from tests import tokenizer_util
  from tests.test_checkpoint_gguf import GEMMA3_META, _gemma3_tensors, _write
  from gemma4 import gguf_loader
  import dataclasses
  cfg = dataclasses.replace(
      gguf_loader._gemma3_config({f'gemma3.{k}': v for k, v in GEMMA3_META.items()}),
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


def test_image_gives_the_official_greedy_text(tmp_path, capsys, monkeypatch):
  """`--image` on a model with a vision encoder (tiny E2B, budget 70): the text equals
  the official sampler's tokens recorded in tests/golden (sampler_images_tiny_gemma4_e2b)."""
  from PIL import Image
  from tests import test_sampler_images as images_test
  from tests import tokenizer_util
  tok = gemma4.Gemma4Tokenizer(tokenizer_util.build(tmp_path / 't.model'))
  s = images_test._sampler('e2b', tok)
  ckpt = gemma4.Checkpoint(s.model, s.params, tok)
  monkeypatch.setattr(gemma4, 'load_checkpoint',
                      lambda path, model=None, **kw: ckpt if path == 'tiny-e2b' else None)
  Image.fromarray(images_test.IMG_A).save(tmp_path / 'a.png')
  with open(os.path.join(os.path.dirname(__file__), 'golden',
                         'sampler_images_tiny_gemma4_e2b.json')) as f:
    want = tok.decode(json.load(f)['one'])
  prompt = 'Look: <|image|> What is it?'
  argv = ['sample', prompt, '-c', 'tiny-e2b', '--image', str(tmp_path / 'a.png'),
          '--max-soft-tokens', '70', '-n', '8', '--cache-length', '512']
  assert cli.main(argv + ['--no-stream']) == 0
  assert capsys.readouterr().out == prompt + want + '\n'
  assert cli.main(argv + ['--stream']) == 0
  assert capsys.readouterr().out == prompt + want + '\n'
  # Without a placeholder in the prompt, one is added at the end for each image.
  assert cli.main(['sample', 'Look:', '-c', 'tiny-e2b', '--image', str(tmp_path / 'a.png'),
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
  monkeypatch.setattr(gemma4, 'load_checkpoint',
                      lambda path, model=None, **kw: ckpt if path == 'tiny-e2b' else None)
  pcm = (np.random.default_rng(0).standard_normal((22050, 2)) * 8000).astype('<i2')
  with wave.open(str(tmp_path / 'a.wav'), 'wb') as f:
    f.setnchannels(2)
    f.setsampwidth(2)
    f.setframerate(22050)
    f.writeframes(pcm.tobytes())
  prompt = 'Hear: <|audio|> What is it?'
  want = s.sample(prompt, audio=[audio.load(tmp_path / 'a.wav')], max_new_tokens=6)
  argv = ['sample', prompt, '-c', 'tiny-e2b', '--audio', str(tmp_path / 'a.wav'), '-n', '6',
          '--cache-length', '512']
  assert cli.main(argv + ['--no-stream']) == 0
  assert capsys.readouterr().out == prompt + want + '\n'
  assert cli.main(argv + ['--stream']) == 0
  assert capsys.readouterr().out == prompt + want + '\n'
  (tmp_path / 'b.wav').write_bytes(b'RIFF nonsense')
  assert cli.main(['sample', 'x', '-c', 'tiny-e2b', '--audio', str(tmp_path / 'b.wav')]) == 1
  assert capsys.readouterr().err.strip().splitlines()[-1].startswith('gemma4: error: cannot read audio')
