"""Forwarding to GPU inference endpoints."""

from gateway.backends.base import Backend
from gateway.backends.openai_http import HttpPool, OpenAIBackend

__all__ = ["Backend", "HttpPool", "OpenAIBackend"]
