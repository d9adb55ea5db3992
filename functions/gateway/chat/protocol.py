"""Wire models for chat completions, fields in OpenAI's order.

Requests are validated here (after gateway/inputs.py has bounded the raw JSON); responses
are built as plain dicts on the hot path and these response models document them in /docs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

# Sampling fields a client may also send nested under `model_params`.
_NON_SAMPLING = frozenset({"model", "messages", "stream", "stream_options", "model_params"})


class TextContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The content as the chat template sees it (parts joined by newlines, as vLLM)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    # Unknown fields (vLLM's min_p, repetition_penalty, ...) are forwarded unchanged.
    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage]
    model: str = Field(min_length=1, max_length=256)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=128)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    user: str | None = None

    # --- Extensions (not in OpenAI's API) -------------------------------------------
    # vLLM / TGI sampling parameter.
    top_k: int | None = Field(default=None, ge=-1)
    # Sampling fields nested by some clients; merged into the top level on validation.
    model_params: dict[str, Any] | None = None
    # ---------------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _merge_model_params(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("model_params") is None:
            return data
        nested = data["model_params"]
        if not isinstance(nested, dict):
            raise PydanticCustomError("model_params", "model_params must be an object.")
        merged = dict(data)
        for name, value in nested.items():
            if name in _NON_SAMPLING:
                raise PydanticCustomError(
                    "model_params", "model_params may not set '{name}'.", {"name": name}
                )
            if name in merged and merged[name] is not None and merged[name] != value:
                raise PydanticCustomError(
                    "model_params_conflict",
                    "'{name}' is given both at the top level and in model_params with "
                    "different values.",
                    {"name": name},
                )
            merged[name] = value
        merged["model_params"] = None
        return merged

    @field_validator("messages")
    @classmethod
    def _non_empty(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise PydanticCustomError("empty_messages", "Messages must be a non-empty array.")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and any(not s for s in value):
            raise PydanticCustomError("stop", "stop sequences must be non-empty strings.")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


# --- Response models (documentation of what the gateway returns) -------------------


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class Choice(BaseModel):
    index: int
    message: ResponseMessage
    logprobs: dict[str, Any] | None = None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
