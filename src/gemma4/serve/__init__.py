"""Serving: continuous batching (`Engine`) and the OpenAI-compatible HTTP server
(`create_app`, `run`; `gemma4 serve`)."""

from gemma4.serve.app import create_app, run
from gemma4.serve.engine import Engine, EngineStopped, Finished, QueueFull, Request, Settings, Token

__all__ = ['create_app', 'run', 'Engine', 'EngineStopped', 'Finished', 'QueueFull', 'Request',
           'Settings', 'Token']
