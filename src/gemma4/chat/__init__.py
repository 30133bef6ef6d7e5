"""The conversation layer of instruction-tuned models: turns and their prompt text,
thinking, native tool calls (gemma4.chat.tools), and the stateful ChatSampler."""

from gemma4.chat.grammar import Choices, JsonSchema, Regex
from gemma4.chat.reply import Piece
from gemma4.chat.sampler import ChatOutput, ChatSampler, ToolSampler
from gemma4.chat.tools import Tool, ToolCall, ToolFormatError, ToolResponse
from gemma4.chat.turns import (THINK, Audio, Image, Model, System, Thought, Turn, User,
                               render)

__all__ = ['Choices', 'JsonSchema', 'Regex', 'ChatOutput', 'ChatSampler', 'Piece', 'ToolSampler', 'THINK', 'Audio', 'Image', 'Model', 'System', 'Thought', 'Tool', 'ToolCall',
           'ToolFormatError', 'ToolResponse', 'Turn', 'User', 'render']
