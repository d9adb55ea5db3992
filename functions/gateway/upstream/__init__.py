"""Forwarding to GPU inference endpoints."""

from gateway.upstream.base import Backend
from gateway.upstream.openai_http import HttpPool, OpenAIBackend

__all__ = ["Backend", "HttpPool", "OpenAIBackend"]
