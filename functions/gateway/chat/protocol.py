"""Wire models for chat completions, fields in OpenAI's order.

Requests are validated here (after gateway/inputs.py has bounded the raw JSON); what the
gateway returns is typed in responses.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.chat.legacy import check_tool_choice, map_legacy_request
from gateway.chat.messages import ChatMessage
from gateway.generation import GenerationRequest, StreamOptions

# Sampling fields a client may also send nested under `model_params`.
_NON_SAMPLING = frozenset({"model", "messages", "stream", "stream_options", "model_params"})


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = Field(default=None, strict=True)


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ResponseFormatText(BaseModel):
    type: Literal["text"]


class ResponseFormatJsonObject(BaseModel):
    type: Literal["json_object"]


class JsonSchema(BaseModel):
    # `schema` (the JSON Schema itself) is kept as an extra field: it would shadow
    # BaseModel's own `schema` attribute, and is forwarded unchanged either way.
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    strict: bool | None = Field(default=None, strict=True)  # 0.0 is not a boolean


class ResponseFormatJsonSchema(BaseModel):
    type: Literal["json_schema"]
    json_schema: JsonSchema


ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema,
    Field(discriminator="type"),
]


class ChatCompletionRequest(GenerationRequest):
    # Unknown fields (vLLM's min_p, repetition_penalty, ...) are forwarded unchanged.
    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage]
    model: str = Field(min_length=1, max_length=256)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = Field(default=None, strict=True)
    top_logprobs: int | None = Field(default=None, ge=0, le=20, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, strict=True)
    n: int | None = Field(default=None, ge=1, le=128, strict=True)
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2, strict=True)
    response_format: ResponseFormat | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1, strict=True)
    stop: str | list[str] | None = None
    stream: bool | None = Field(default=False, strict=True)
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    tool_choice: ToolChoice | None = None
    tools: list[Tool] | None = None
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    user: str | None = None

    # --- Extensions (not in OpenAI's API) -------------------------------------------
    # vLLM / TGI sampling parameter.
    top_k: int | None = Field(default=None, ge=-1, strict=True)
    # Sampling fields nested by some clients; merged into the top level on validation.
    model_params: dict[str, Any] | None = None
    # ---------------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _map_legacy_shapes(cls, data: Any) -> Any:
        """developer -> system; the deprecated functions/function_call -> tools/tool_choice."""
        return map_legacy_request(data)

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> ChatCompletionRequest:
        check_tool_choice(self.tools, self.tool_choice)
        if self.top_logprobs and not self.logprobs:
            raise PydanticCustomError("top_logprobs", "top_logprobs requires logprobs to be true.")
        return self

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

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens
