"""The official SDKs' clients for tests, keeping no connection alive between requests.

Tests build many short-lived clients (one per helper call) and do not close them; a
client's object graph is a reference cycle, so the garbage collector finalizes its pooled
sockets in any order, before the client's own close, and each is reported as an unclosed
socket (ResourceWarning) in whatever test gc runs in. With no keep-alive, every connection
is closed as soon as its response is read.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import openai

_NO_KEEPALIVE = httpx2.Limits(max_keepalive_connections=0)


def openai_client(**kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(http_client=openai.DefaultHttpxClient(limits=_NO_KEEPALIVE), **kwargs)


def anthropic_client(**kwargs: Any) -> anthropic.Anthropic:
    http = anthropic.DefaultHttpxClient(limits=_NO_KEEPALIVE)
    return anthropic.Anthropic(http_client=http, **kwargs)
