"""README.md's Python code blocks, and the files they name, for tests/test_readme.py.

`python_blocks` finds every ```python fenced block with its section (the `## ` heading
above it) and first line; `run_block` executes one block's text unchanged, statement
by statement as a notebook does, and returns the value of each expression statement;
`prepare` writes the files the blocks open into a working directory.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pathlib
import wave

import numpy as np

from tests import tokenizer_util

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'


@dataclasses.dataclass(frozen=True)
class Block:
  section: str  # the `## ` heading above the block ('' before the first)
  line: int     # README line number of the block's first code line
  code: str


def python_blocks(path: pathlib.Path = README) -> list[Block]:
  """Every ```python block of the file, in order."""
  blocks, section, start, lines = [], '', None, []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    if start is None:
      if line.startswith('## '):
        section = line[3:].strip()
      elif line.strip() == '```python':
        start, lines = number + 1, []
    elif line.strip() == '```':
      blocks.append(Block(section, start, '\n'.join(lines) + '\n'))
      start = None
    else:
      lines.append(line)
  if start is not None:
    raise ValueError(f'{path}: the ```python block at line {start - 1} is never closed')
  return blocks


def run_block(block: Block, namespace: dict, path: pathlib.Path = README) -> list:
  """Executes the block's text in `namespace`; returns the values of its top-level
  expression statements (what a notebook would display), in order. Code objects carry
  the README's file name and line numbers, so a traceback points into README.md."""
  source = '\n' * (block.line - 1) + block.code
  values = []
  for node in ast.parse(source, str(path)).body:
    if isinstance(node, ast.Expr):
      values.append(eval(compile(ast.Expression(node.value), str(path), 'eval'), namespace))
    else:
      exec(compile(ast.Module([node], type_ignores=[]), str(path), 'exec'), namespace)
  return values


# --- the files the blocks name ---------------------------------------------------------

# A tiny Gemma 4 text model in the layout of the published HF repositories (transformers
# names, config.json + model.safetensors): per-layer embeddings, KV sharing, L L G x 2.
HF_CONFIG = dict(
    model_type='gemma4_text', vocab_size=4096, hidden_size=64, intermediate_size=128,
    num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
    global_head_dim=32, layer_types=['sliding_attention', 'sliding_attention',
                                     'full_attention'] * 2,
    sliding_window=8, hidden_size_per_layer_input=16, vocab_size_per_layer_input=4096,
    num_kv_shared_layers=3, use_double_wide_mlp=True, final_logit_softcapping=30.0)


def write_hf_dir(path: pathlib.Path, seed: int = 0, config: dict = HF_CONFIG) -> None:
  """A random HF checkpoint directory of `config` (every tensor the key map names;
  default: the tiny model above)."""
  from safetensors.numpy import save_file
  from gemma4.checkpoints import hf, keymap
  cfg = hf.config_from_hf(config)
  rng = np.random.default_rng(seed)
  tensors = {p.source: (rng.standard_normal(p.shape, np.float32) * 0.05)
             for p in keymap.text_pieces(cfg)}
  path.mkdir(parents=True, exist_ok=True)
  save_file(tensors, str(path / 'model.safetensors'))
  (path / 'config.json').write_text(json.dumps(config))


# A tiny Gemma 3 model as llama.cpp writes one (metadata keys, names, 1 + w norms), its
# vocabulary in the file; the feed-forward weights quantized (Q8_0).
GGUF_META = {'embedding_length': 64, 'block_count': 6, 'feed_forward_length': 128,
             'attention.head_count': 4, 'attention.head_count_kv': 1,
             'attention.key_length': 16, 'attention.value_length': 16,
             'attention.sliding_window': 8, 'rope.freq_base': 1_000_000.0,
             'attention.layer_norm_rms_epsilon': 1e-6, 'context_length': 512}
GGUF_VOCAB = 512


def write_gguf(path: pathlib.Path, seed: int = 0) -> None:
  """A random tiny gemma3 GGUF file (every tensor the GGUF key map names)."""
  import gguf
  from gemma4.checkpoints import gguf as gguf_ckpt, keymap
  cfg = gguf_ckpt._gemma3_config({f'gemma3.{k}': v for k, v in GGUF_META.items()})
  cfg = dataclasses.replace(cfg, vocab_size=GGUF_VOCAB)
  w = gguf.GGUFWriter(str(path), 'gemma3')
  for key, value in GGUF_META.items():
    (w.add_float32 if isinstance(value, float) else w.add_uint32)(f'gemma3.{key}', value)
  # SentencePiece-style: control, unknown, 256 byte pieces, letters, user-defined fillers
  tokens = ['<pad>', '<eos>', '<bos>', '<unk>', '<mask>'] + [f'<0x{i:02X}>' for i in range(256)]
  types = [3, 3, 3, 2, 3] + [6] * 256
  letters = ['\u2581' + c for c in 'abcdefghijklmnopqrstuvwxyz'] + list('abcdefghijklmnopqrstuvwxyz')
  tokens, types = tokens + letters, types + [1] * len(letters)
  types += [4] * (GGUF_VOCAB - len(tokens))
  tokens += [f'<f{i}>' for i in range(len(tokens), GGUF_VOCAB)]
  w.add_tokenizer_model('llama')
  w.add_token_list(tokens)
  w.add_token_scores([-float(i) for i in range(GGUF_VOCAB)])
  w.add_token_types(types)
  w.add_bos_token_id(2)
  w.add_eos_token_id(1)
  w.add_unk_token_id(3)
  w.add_pad_token_id(0)
  rng = np.random.default_rng(seed)
  for piece in keymap.gguf_text_pieces(cfg):
    x = (rng.standard_normal(piece.shape) * 0.05).astype(np.float32)
    if piece.target.endswith('/scale'):
      w.add_tensor(piece.source, 1 + x)  # llama.cpp stores Gemma 3 norms as 1 + w
    elif '.ffn_' in piece.source:
      q = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
      w.add_tensor(piece.source, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
      w.add_tensor(piece.source, x)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()


def write_orbax(path: pathlib.Path, model) -> None:
  """An official-layout (NESTED) Orbax checkpoint of `model`'s tree, all zeros, written
  with orbax as the official `save_params` writes it."""
  import jax
  import orbax.checkpoint as ocp
  tree = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), model.eval_shape())
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(os.path.abspath(path), tree)
  ckpt.wait_until_finished()


def write_wav(path: pathlib.Path, seconds: float = 1.0, rate: int = 24_000,
              channels: int = 2, seed: int = 0) -> None:
  """A 16-bit PCM WAV file of noise (not at 16 kHz and stereo: `audio.load` resamples
  and mixes it)."""
  n = int(seconds * rate)
  x = np.random.default_rng(seed).uniform(-0.3, 0.3, (n, channels))
  with wave.open(str(path), 'wb') as f:
    f.setnchannels(channels)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes((x * 32767).astype('<i2').tobytes())


def prepare(work: pathlib.Path) -> pathlib.Path:
  """Writes into `work` every file README.md's blocks open:

  gemma-3-270m-q4_k_m.gguf  a tiny random gemma3 GGUF file (GGUF_META), standing in for
                            the real one (which `gemma4.load_default()` loads)
  gemma-4-E2B-it/           a tiny random Gemma 4 HF directory (HF_CONFIG), a stand-in too
  ckpt/                     an Orbax checkpoint of the Gemma3_270M() tree (zeros, bf16)
  tokenizer_gemma4.model    a SentencePiece model with the Gemma 4 special ids and the
                            conversation tags (tests/tokenizer_util.py), for the tiny
                            Gemma 4 models
  photo.jpg, scan.png       an RGB JPEG (240 x 320) and a gray PNG (400 x 300)
  speech.wav                1 s of 16-bit stereo noise at 24 kHz
  """
  from PIL import Image
  import gemma4
  work.mkdir(parents=True, exist_ok=True)
  write_gguf(work / 'gemma-3-270m-q4_k_m.gguf')
  write_hf_dir(work / 'gemma-4-E2B-it')
  write_orbax(work / 'ckpt', gemma4.models.Gemma3_270M())
  tokenizer_util.build(work / 'tokenizer_gemma4.model', chat=True)
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(work / 'photo.jpg')
  Image.fromarray(rng.integers(0, 256, (400, 300), dtype=np.uint8)).save(work / 'scan.png')
  write_wav(work / 'speech.wav')
  return work
