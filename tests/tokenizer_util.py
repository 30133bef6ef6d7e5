"""Builds a 262144-piece SentencePiece model with the Gemma 4 special ids, for tests.

The official sampler reads media token ids from constants, so a test tokenizer needs
the real vocabulary size with each special token at its id. Recipe: train ~100 pieces
on a small corpus, then lay out specials at their ids, the trained pieces, and unique
filler pieces everywhere else. About 2 s; cached per path.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

VOCAB = 262144
SPECIALS = {
    0: ('<pad>', 'CONTROL'), 1: ('<eos>', 'CONTROL'), 2: ('<bos>', 'CONTROL'),
    3: ('<unk>', 'UNKNOWN'), 4: ('<mask>', 'USER_DEFINED'),
    50: ('<|tool_response>', 'USER_DEFINED'), 105: ('<|turn>', 'USER_DEFINED'),
    106: ('<turn|>', 'USER_DEFINED'), 107: ('\n', 'USER_DEFINED'),
    108: ('\n\n', 'USER_DEFINED'), 255999: ('<|image>', 'USER_DEFINED'),
    256000: ('<|audio>', 'USER_DEFINED'), 258880: ('<|image|>', 'USER_DEFINED'),
    258881: ('<|audio|>', 'USER_DEFINED'), 258882: ('<image|>', 'USER_DEFINED'),
    258883: ('<audio|>', 'USER_DEFINED'),
}
# The conversation layer's tags, for tests of gemma4.chat: at free ids past the trained
# pieces (the published tokenizer has them elsewhere; gemma4 looks them up by text), so
# every other piece keeps its id.
CHAT_SPECIALS = {
    300: ('<|tool>', 'USER_DEFINED'), 301: ('<tool|>', 'USER_DEFINED'),
    302: ('<|tool_call>', 'USER_DEFINED'), 303: ('<tool_call|>', 'USER_DEFINED'),
    304: ('<tool_response|>', 'USER_DEFINED'), 305: ('<|"|>', 'USER_DEFINED'),
    306: ('<|think|>', 'USER_DEFINED'), 307: ('<|channel>', 'USER_DEFINED'),
    308: ('<channel|>', 'USER_DEFINED'),
}
# ...and one piece per printable ASCII character the trained pieces lack, so that any
# tool call's text encodes without <unk>.
CHAT_CHARS = '0345678' + '9ABCDEJKLMNQRSUVXYZ"#$%&\'*/;=>@[\\]^_`{|}~'
CHAT_SPECIALS.update({310 + i: (c, 'USER_DEFINED') for i, c in enumerate(CHAT_CHARS)})
CORPUS = """The quick brown fox jumps over the lazy dog.
Gemma is a family of open models. It writes text, reads images and listens to audio.
Hello world! What is the capital of France? Paris is the capital of France.
def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)
One two three four five six seven eight nine ten eleven twelve.
"""


def build(path: str | os.PathLike, chat: bool = False) -> pathlib.Path:
  """The tokenizer at `path` (built once); with `chat`, the CHAT_SPECIALS too."""
  path = pathlib.Path(path)
  specials = {**SPECIALS, **CHAT_SPECIALS} if chat else SPECIALS
  if path.exists():
    return path
  with tempfile.TemporaryDirectory() as d:
    corpus = pathlib.Path(d) / 'corpus.txt'
    corpus.write_text(CORPUS * 20)
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=f'{d}/m', vocab_size=120, model_type='bpe',
        character_coverage=1.0, normalization_rule_name='identity',
        add_dummy_prefix=False, remove_extra_whitespaces=False, minloglevel=2)
    trained = pb.ModelProto()
    trained.ParseFromString(pathlib.Path(f'{d}/m.model').read_bytes())
  normal = [p for p in trained.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL]
  proto = pb.ModelProto()
  proto.CopyFrom(trained)
  del proto.pieces[:]
  it = iter(normal)
  for i in range(VOCAB):
    piece = proto.pieces.add()
    if i in specials:
      piece.piece, kind = specials[i]
      piece.type = getattr(pb.ModelProto.SentencePiece, kind)
      piece.score = 0.0
      continue
    p = next(it, None)
    if p is not None:
      piece.piece, piece.score, piece.type = p.piece, p.score, p.type
    else:
      piece.piece, piece.score = f'<f{i}>', -1e9
      piece.type = pb.ModelProto.SentencePiece.USER_DEFINED
  proto.trainer_spec.unk_id, proto.trainer_spec.bos_id = 3, 2
  proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = 1, 0
  proto.trainer_spec.vocab_size = VOCAB
  proto.trainer_spec.ClearField('input')  # temp paths: keep the file byte-identical
  proto.trainer_spec.ClearField('model_prefix')
  tmp = path.with_suffix('.tmp')
  tmp.write_bytes(proto.SerializeToString())
  tmp.replace(path)
  return path
