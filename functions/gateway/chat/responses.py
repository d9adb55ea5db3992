"""What the chat route returns: the response shapes, and the normalizations that keep
relayed upstream bodies and chunks valid OpenAI shapes.

The shapes are TypedDicts, so the hot path builds plain dicts (orjson) that mypy checks
against the same types /docs shows (the route's 200 answer and its SSE chunk, named by
`$ref`: openapi_shapes.py); tests/gateway/test_docs_shapes.py checks real answers against
/docs.
Fields are in OpenAI's order; non-OpenAI extensions are fenced and commented.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' on Python < 3.12

from gateway.pipeline.sse import Usage

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@with_config(ConfigDict(use_attribute_docstrings=True))
class FunctionCallOut(TypedDict):
    name: str
    """The function's name."""
    arguments: str
    """Its arguments: JSON text as the model wrote it (not validated)."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class MessageToolCall(TypedDict):
    id: str
    """The call's id, which the tool message answering it names."""
    type: Literal["function"]
    """Always `function`."""
    function: FunctionCallOut
    """The function called."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class ResponseMessage(TypedDict):
    role: Literal["assistant"]
    """Always `assistant`."""
    content: str | None
    """The generated text."""
    refusal: str | None
    """A refusal, if the model refused."""
    tool_calls: NotRequired[list[MessageToolCall]]
    """The tool calls the model made (finish_reason `tool_calls`)."""
    # --- not OpenAI's: vLLM's reasoning parsers, passed through when present ---
    reasoning_content: NotRequired[str]
    """The model's reasoning, when the server separates it (vLLM's extension)."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class Choice(TypedDict):
    index: int
    """The choice's position."""
    message: ResponseMessage
    """The generated message."""
    logprobs: dict[str, Any] | None
    """Log probabilities (`content`, `refusal`), when asked for."""
    finish_reason: FinishReason | None
    """`stop`, `length` (max_tokens reached), `tool_calls` or `content_filter`."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class ChatCompletion(TypedDict):
    id: str
    """`chatcmpl-` and the request id (the `x-request-id` header)."""
    object: Literal["chat.completion"]
    """Always `chat.completion`."""
    created: int
    """Unix seconds."""
    model: str
    """The model id the request named."""
    choices: list[Choice]
    """The generated choices."""
    usage: Usage
    """Tokens billed: the upstream's counts where it reported them, else the gateway's."""
    system_fingerprint: NotRequired[str]
    """The upstream's, when it sent one."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class ChunkFunction(TypedDict, total=False):
    name: str
    """The function's name (on the call's first delta)."""
    arguments: str
    """The next piece of the arguments' JSON text."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class ChunkToolCall(TypedDict):
    index: int
    """Which call of the message this piece belongs to."""
    id: NotRequired[str]
    """The call's id (on its first delta)."""
    type: NotRequired[Literal["function"]]
    """Always `function` (on its first delta)."""
    function: NotRequired[ChunkFunction]
    """The function's name and the next piece of its arguments."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class ChunkDelta(TypedDict, total=False):
    role: Literal["assistant"]
    """`assistant`, on a choice's first chunk."""
    content: str | None
    """The next piece of the text."""
    refusal: str | None
    """The next piece of a refusal."""
    tool_calls: list[ChunkToolCall]
    """Pieces of tool calls."""
    # --- not OpenAI's: vLLM's reasoning parsers, passed through when present ---
    reasoning_content: str | None
    """The next piece of the model's reasoning (vLLM's extension)."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class ChunkChoice(TypedDict):
    index: int
    """The choice's position."""
    delta: ChunkDelta
    """What this chunk adds to the choice's message."""
    logprobs: NotRequired[dict[str, Any] | None]
    """Log probabilities of this chunk's tokens, when asked for."""
    finish_reason: FinishReason | None
    """Set on the choice's last chunk."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class ChatCompletionChunk(TypedDict):
    """One `data:` event of a streamed chat completion."""

    id: str
    """The same on every chunk: `chatcmpl-` and the request id."""
    object: Literal["chat.completion.chunk"]
    """Always `chat.completion.chunk`."""
    created: int
    """Unix seconds, the same on every chunk."""
    model: str
    """The model id the request named."""
    choices: list[ChunkChoice]
    """This chunk's pieces; empty on the usage chunk."""
    usage: NotRequired[Usage | None]
    """With `stream_options.include_usage`: null, then the billed usage on the last chunk."""
    system_fingerprint: NotRequired[str]
    """The upstream's, when it sent one."""


def logprobs(value: Any) -> Any:
    """A choice's logprobs as OpenAI shapes them: vLLM sends only `content`, OpenAI's
    schema requires both `content` and `refusal` (null when absent)."""
    if not isinstance(value, dict):
        return None
    if "content" in value and "refusal" in value:
        return value
    return {"content": value.get("content"), "refusal": value.get("refusal"), **value}
