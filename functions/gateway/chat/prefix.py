"""A chat request's route hint: the key of its conversation's stable prefix.

Every turn of a conversation repeats its beginning: the system prompt (and tools) and the
first user message, rendered by the model's chat template. Their leading full 16-token
blocks are what the replica that served the first turn holds in its prefix cache, so
the key is made from them (backends/affinity.py, prefix_key), with the tokens of its last
partial block: the same on every turn and on every instance, different for two
conversations that share only a system prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anyio.to_thread

from gateway.backends.affinity import BLOCK_SIZE, MAX_KEY_BLOCKS, NO_HINT, RouteHint, prefix_key
from gateway.chat import prompt as chat_prompt
from gateway.chat.protocol import ChatCompletionRequest
from gateway.tokens import ChatTokenizer
from gateway.tokens.errors import TemplateRefused

logger = logging.getLogger(__name__)

# A stable prefix longer than this (characters) is encoded in a worker thread.
INLINE_PREFIX_WORK = 16_000


def stable_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages up to and including the first user message (all, if none is)."""
    for index, message in enumerate(messages):
        if message.get("role") == "user":
            return list(messages[: index + 1])
    return list(messages)


async def route_hint(
    tokenizer: ChatTokenizer, request: ChatCompletionRequest, *, salt: str | None = None
) -> RouteHint:
    """The request's hint; NO_HINT when the model has no chat template, the template
    refuses the prefix alone, or the prefix fills no block. `salt`: the request's
    cache_salt, which keys the prefix apart as it keys the replica's cache apart."""
    if not tokenizer.has_chat_template:
        return NO_HINT
    stable = stable_messages(chat_prompt.template_messages(request))
    tools = chat_prompt.template_tools(request)
    kwargs = chat_prompt.template_kwargs(request)
    tokens = MAX_KEY_BLOCKS * BLOCK_SIZE
    try:
        text = tokenizer.render_chat(stable, tools, template_kwargs=kwargs)
        if len(text) <= INLINE_PREFIX_WORK:
            ids = tokenizer.leading_ids(text, tokens=tokens)
        else:
            ids = await anyio.to_thread.run_sync(lambda: tokenizer.leading_ids(text, tokens=tokens))
    except TemplateRefused:
        return NO_HINT
    except Exception:  # a hint only steers: its failure must never fail the request
        logger.warning("prefix key failed; routing without it", exc_info=True)
        return NO_HINT
    return RouteHint(prefix=prefix_key(ids, salt=salt, tail=True))
