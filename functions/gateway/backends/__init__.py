"""Forwarding to GPU inference endpoints.

The OpenAI HTTP backend (aiohttp) is imported on first use, not with the package: a
function whose routes never forward (ApiFunction) never loads aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.backends.base import Backend

if TYPE_CHECKING:
    from gateway.backends.openai_http import HttpPool, OpenAIBackend

__all__ = ["Backend", "HttpPool", "OpenAIBackend"]

_LAZY = {"HttpPool", "OpenAIBackend"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from gateway.backends import openai_http

        return getattr(openai_http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
