"""The models, prompts and settings the multi-device tests share (tests/multidevice,
tests/test_multihost.py): each preset's tiny config widened to 8 query heads (and 8
experts for 26B-A4B), so that an 8-way or 4-way 'tensor' axis really splits heads and
an 8-way 'expert' axis really splits experts; their 1-2 KV heads stay whole."""

from __future__ import annotations

import dataclasses

from gemma4 import models
from gemma4.models import Model

PROMPTS = ['The cat sat on', 'Hello world, this is a longer prompt']
TURNS = ['Hello there', 'Tell me more', 'And then?']
GGUF_PROMPTS = ['ab', 'cde']  # in the tiny GGUF file's vocabulary (tests/readme_util.py)
SETTINGS = dict(cache_length=96, max_out_length=8, pad_length=(32, 64))
CHAT_SETTINGS = dict(cache_length=256, max_out_length=6, pad_length=(32, 64))


def wide(preset: str, text_only: bool = True) -> Model:
  base = models.tiny(preset, text_only=text_only)
  more = {'num_experts': 8} if base.config.is_moe else {}
  return dataclasses.replace(base, config=dataclasses.replace(base.config, num_heads=8, **more))
