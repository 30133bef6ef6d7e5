"""gemma4: a pure-JAX Gemma 4 decoder that takes the official parameters unchanged."""

from gemma4 import compilation

compilation.enable_cache()  # before anything here compiles (see gemma4/compilation.py)

from gemma4 import audio, chat, memory, models, quant, sampling, sharding  # noqa: E402
from gemma4.chat import ChatSampler, ToolSampler
from gemma4.config import PRESETS, TransformerConfig, get_preset
from gemma4.kv_cache import KVCache, init_cache
from gemma4.models import Model, from_reference
from gemma4.checkpoints import (Checkpoint, CheckpointError, default_checkpoint_path,
                                 load_checkpoint, load_default)
from gemma4.params import check_params, init_params, param_specs
from gemma4.sampler import Gemma4Sampler, SamplerOutput, SamplingState
from gemma4.tokenizer import Gemma4Tokenizer
from gemma4.transformer import forward

__all__ = ['audio', 'chat', 'ChatSampler', 'ToolSampler', 'memory', 'models', 'quant', 'sampling', 'sharding', 'load_checkpoint', 'load_default', 'default_checkpoint_path', 'Checkpoint', 'CheckpointError', 'Gemma4Sampler', 'SamplerOutput', 'SamplingState',
           'Gemma4Tokenizer', 'PRESETS', 'TransformerConfig', 'get_preset', 'KVCache', 'init_cache',
           'Model', 'from_reference', 'check_params', 'init_params', 'param_specs',
           'forward']
__version__ = '0.1.0'
