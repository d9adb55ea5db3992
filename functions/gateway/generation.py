"""What the generating surfaces (chat, completions, and those translated to chat) share:
the request base, `max_tokens` decided once, and the context-length check."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from gateway.errors import InvalidRequestError
from gateway.models.registry import ModelConfig


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class GenerationRequest(BaseModel):
    """What the generating routes (chat, completions) share. It declares no fields, so
    each request model keeps its own fields in OpenAI's order."""

    @field_validator("stop", check_fields=False)
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and any(not s for s in value):
            raise PydanticCustomError("stop", "stop sequences must be non-empty strings.")
        return value

    @property
    def include_usage(self) -> bool:
        options = getattr(self, "stream_options", None)
        return bool(options and options.include_usage)


def default_max_tokens(model: ModelConfig, *, prompt_tokens: int, default: int) -> int:
    """The generation cap sent when a request sets none: the default, but never past the
    model's context length (vLLM would refuse prompt + max_tokens over max_model_len)."""
    if model.max_model_len is None:
        return default
    return max(1, min(default, model.max_model_len - prompt_tokens))


def check_context_length(
    model: ModelConfig, *, prompt_tokens: int, body: dict[str, Any], param: str = "messages"
) -> None:
    """A prompt plus the generation asked for over the model's context length is refused
    before forwarding, in vLLM's words (code `context_length_exceeded`, as OpenAI)."""
    limit = model.max_model_len
    if limit is None:
        return
    asked = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    if prompt_tokens + asked <= limit and prompt_tokens < limit:
        return
    raise InvalidRequestError(
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{asked} output tokens and your prompt contains at least {prompt_tokens} input "
        f"tokens, for a total of at least {prompt_tokens + asked} tokens. Please reduce the "
        "length of the input prompt or the number of requested output tokens.",
        param=param,
        code="context_length_exceeded",
    )
