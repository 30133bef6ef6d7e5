"""Serving: continuous batching (`Engine`) and the OpenAI-compatible HTTP server
(`create_app`, `gemma4 serve`)."""

from gemma4.serve.engine import Engine, EngineStopped, Finished, QueueFull, Request, Settings, Token

__all__ = ['Engine', 'EngineStopped', 'Finished', 'QueueFull', 'Request', 'Settings', 'Token']
