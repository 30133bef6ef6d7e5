"""Every ```python block of README.md runs as written, so no snippet can rot.

Each README section (`## ` heading) is one test, like a notebook: its blocks run in
order, text unchanged, in one fresh namespace that the test predefines nothing in, so a
block must define (or import) every name it uses. They run in a temporary working
directory holding the files the blocks open (`tests.readme_util.prepare`): tiny random
GGUF and HF checkpoints standing in for the real ones the README names (the default
model itself is real), an Orbax checkpoint of the Gemma3_270M tree, a test
SentencePiece model with the Gemma 4 ids for the tiny Gemma 4 models, images and a WAV
file. Blocks run statement by statement, and each expression statement's value is
kept, as a notebook shows it; the checks below then assert what the README says of
those values and names (types, shapes, what each loader returns), beyond the block
having run. A traceback points at the README's own lines.
"""

import contextlib
import io
import socket
import time

import jax
import numpy as np
import pytest

import gemma4
from tests import readme_util

BLOCKS = readme_util.python_blocks()
SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return readme_util.prepare(tmp_path_factory.mktemp('readme'))


def run_section(section, workdir, monkeypatch):
  """(namespace, expression values, stdout) of the section's blocks, run in order."""
  monkeypatch.chdir(workdir)
  namespace, values, out = {'__name__': '__readme__'}, [], io.StringIO()
  with contextlib.redirect_stdout(out):
    for block in BLOCKS:
      if block.section == section:
        values += readme_util.run_block(block, namespace)
  return namespace, values, out.getvalue()


def check_checkpoints(ns, values, stdout, loaded):
  assert ns['model'].name == 'gemma3_270m'  # the default model, unpacked
  assert ns['tokenizer'].vocab_size == ns['model'].config.vocab_size
  assert isinstance(ns['sampler'], gemma4.Gemma4Sampler)
  gguf, hf, orbax = (loaded[k] for k in ('gemma-3-270m-q4_k_m.gguf', './gemma-4-E2B-it',
                                         './ckpt'))
  assert all(isinstance(c, gemma4.Checkpoint) for c in (gguf, hf, orbax))
  assert gguf.model.config.family == 'gemma3' and gguf.model.config.num_layers == 6
  assert gguf.tokenizer.vocab_size == gguf.model.config.vocab_size == readme_util.GGUF_VOCAB
  assert hf.model.config.family == 'gemma4' and hf.model.config.num_kv_shared_layers == 3
  assert orbax.tokenizer is None and ns['ckpt'] is orbax  # as the comment says
  assert orbax.model.config == gemma4.models.Gemma3_270M().config
  assert gguf.weights == hf.weights == orbax.weights == ns['ckpt'].weights == 'int8'  # on CPU
  floats = [x for x in jax.tree.leaves(orbax.params, is_leaf=gemma4.quant.is_quantized)
            if not gemma4.quant.is_quantized(x)]  # norms: the model's bfloat16
  assert floats and {x.dtype for x in floats} == {np.dtype(jax.numpy.bfloat16)}
  assert values[0] == 'int8'  # ckpt.weights of the default model


def check_sampling(ns, values, stdout, loaded):
  assert len(values) == 1 and isinstance(values[0], str)  # a str prompt gives a str
  assert stdout  # the stream printed its pieces
  out, out2, sampler = ns['out'], ns['out2'], ns['sampler']
  for o in (out, out2):
    assert isinstance(o, gemma4.SamplerOutput) and isinstance(o.text, str)
    assert o.tokens.shape == o.logprobs.shape == (sampler.max_out_length,)
    n = int((o.tokens != 0).sum())
    assert 1 <= n <= 8  # max_new_tokens=8
    assert np.all(o.logprobs[:n] <= 0) and np.all(np.isfinite(o.logprobs[:n]))
    assert o.text == sampler.tokenizer.decode(o.tokens[:n].tolist())
  # the second turn continues the first in the cache
  assert int(out2.state.cache.next_pos[0]) > int(out.state.cache.next_pos[0])


def check_images(ns, values, stdout, loaded):
  one, batch, scan = values
  assert isinstance(one, str) and isinstance(scan, str)
  assert isinstance(batch, list) and len(batch) == 3 and all(isinstance(t, str) for t in batch)
  assert ns['photo'].dtype == np.uint8 and ns['photo'].shape == (240, 320, 3)


def check_audio(ns, values, stdout, loaded):
  one, batch, padded = values
  assert isinstance(one, str) and isinstance(padded, str)
  assert isinstance(batch, list) and len(batch) == 3 and all(isinstance(t, str) for t in batch)
  clip = ns['clip']  # 1 s of 24 kHz stereo in the file
  assert clip.dtype == np.float32 and clip.shape == (16000,)


def check_decoder(ns, values, stdout, loaded):
  (tree,) = values  # model.eval_shape(): the full E2B tree, nothing allocated
  leaves = jax.tree.leaves(tree)
  assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
  assert {x.dtype for x in leaves} == {np.dtype(jax.numpy.bfloat16)}
  v = ns['model'].config.vocab_size
  assert ns['logits'].shape == (1, v)  # decode with last_only
  assert int(ns['cache'].next_pos[0]) == 5  # 4 prompt tokens + 1


def check_conversations(ns, values, stdout, loaded):
  import json
  import re
  import jsonschema
  out, talk, agent = ns['out'], ns['talk'], ns['agent']
  person = json.loads(values[0])  # the first chat's answer
  jsonschema.validate(person, ns['person'])
  assert values[1] in ('yes', 'no')
  assert re.fullmatch(r'20[0-9]{2}-[01][0-9]-[0-3][0-9]', values[2])
  assert '.' not in values[3] and '\n' not in values[3]
  assert values[4] == talk.history_text() and values[0] in values[4]
  text, thoughts, calls, reason = values[5]
  assert isinstance(out, chat_output()) and (text, thoughts) == (out.text, out.thoughts)
  assert reason in ('end_of_turn', 'eos', 'tool_call', 'max_new_tokens', 'stop')
  assert any(line.split()[0] in ('thought', 'answer', 'tool_call') for line in stdout.splitlines())
  assert values[-1].startswith('<|turn>system\n<|think|><|tool>declaration:get_weather{')
  assert len(agent.turns) >= 4


def check_serve(ns, values, stdout, loaded):
  """The served completion is sample()'s greedy text; the stream printed text; the
  server stops when told."""
  out, sampler = ns['out'], ns['sampler']
  want = sampler.sample('The capital of France is', max_new_tokens=8)
  assert out.choices[0].text == want
  assert 1 <= out.usage.completion_tokens <= 8
  assert stdout.startswith(out.choices[0].text) and len(stdout) > len(out.choices[0].text) + 5
  deadline = time.monotonic() + 60  # stopped: the port no longer takes connections
  while time.monotonic() < deadline:
    try:
      socket.create_connection(('127.0.0.1', ns['port']), timeout=1).close()
    except OSError:
      break
    time.sleep(0.2)
  else:
    raise AssertionError(f'the README server on port {ns["port"]} did not stop within 60 s')


def check_scale(ns, values, stdout, loaded):
  """The Scale section's sampler runs on its mesh, its plan notes the KV heads kept
  whole, and the memory table in the README is memory.table()'s output."""
  texts, notes, plan = values
  assert isinstance(texts, list) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
  assert ns['s'].params['layer_0']['attn']['q_einsum']['w'].sharding.mesh == ns['mesh']
  assert isinstance(notes, tuple) and (ns['mesh'].size == 1 or notes)
  assert isinstance(plan, gemma4.memory.MemoryPlan) and 2 ** 30 < plan.total < 2 ** 36
  assert gemma4.memory.table() in readme_util.README.read_text()


def chat_output():
  return gemma4.chat.ChatOutput


CHECKS = {'Checkpoints': check_checkpoints, 'Sampling': check_sampling,
          'Conversations': check_conversations, 'Serve': check_serve,
          'Images': check_images, 'Audio': check_audio, 'Using the decoder': check_decoder,
          'Scale': check_scale}


def test_readme_sections_with_python_blocks():
  assert set(CHECKS) <= set(SECTIONS), f'README sections with ```python blocks: {SECTIONS}'


@pytest.mark.parametrize('section', SECTIONS)
def test_readme_section_runs(section, workdir, monkeypatch):
  loaded = {}
  load_checkpoint = gemma4.load_checkpoint

  def spy(path, *args, **kwargs):  # records what each load_checkpoint line returned
    ckpt = load_checkpoint(path, *args, **kwargs)
    loaded[str(path)] = ckpt
    return ckpt

  monkeypatch.setattr(gemma4, 'load_checkpoint', spy)
  ns, values, stdout = run_section(section, workdir, monkeypatch)
  if section in CHECKS:
    CHECKS[section](ns, values, stdout, loaded)
