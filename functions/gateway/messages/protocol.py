"""Wire models of Anthropic's Messages API requests (`POST /v1/messages` and
`/v1/messages/count_tokens`), fields in the order of Anthropic's API reference
(the `anthropic` SDK's `MessageCreateParams`).

Only what a chat-completions upstream can serve is accepted: custom tools (a server tool
such as `web_search_20250305` or `bash_20250124` is a 400 naming it) and text, image,
tool_use and tool_result blocks; thinking blocks a client sends back go with their
assistant message as its reasoning (`redacted_thinking` is dropped), as vLLM does.
Other fields Anthropic defines (`cache_control`, `service_tier`, `thinking`, ...) are
accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from gateway.errors import InvalidRequestError
from gateway.responses.validation import validate_body


class _Open(BaseModel):
    # Anthropic adds optional fields (cache_control, citations, ...): kept, not forwarded.
    model_config = ConfigDict(extra="allow")


# --- content blocks -----------------------------------------------------------------


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class Base64ImageSource(_Open):
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class UrlImageSource(_Open):
    type: Literal["url"]
    url: str = Field(pattern=r"^https://")


class ImageBlock(_Open):
    type: Literal["image"]
    source: Annotated[Base64ImageSource | UrlImageSource, Field(discriminator="type")]

    @property
    def url(self) -> str:
        """The image as an OpenAI image_url: the https URL, or a data: URL."""
        source = self.source
        if isinstance(source, UrlImageSource):
            return source.url
        return f"data:{source.media_type};base64,{source.data}"


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] | None = (
        None
    )
    is_error: bool | None = None


class ThinkingBlock(_Open):
    """An earlier answer's reasoning, sent back: its text goes to the template with the
    assistant message (as vLLM forwards it); redacted thinking is opaque and dropped."""

    type: Literal["thinking", "redacted_thinking"]
    thinking: str | None = None


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


# --- tools --------------------------------------------------------------------------


class Tool(_Open):
    """A custom (client) tool; parse_request refuses server tools."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None


class ToolChoiceAuto(_Open):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Open):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Open):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Open):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone,
    Field(discriminator="type"),
]


class Metadata(_Open):
    user_id: str | None = Field(default=None, max_length=256)


# --- requests -----------------------------------------------------------------------


class CountTokensRequest(_Open):
    """`POST /v1/messages/count_tokens`: the conversation, without generation fields."""

    messages: list[Message]
    model: str = Field(min_length=1, max_length=256)
    system: str | list[TextBlock] | None = None
    tool_choice: ToolChoice | None = None
    tools: list[dict[str, Any]] | None = None

    @field_validator("messages")
    @classmethod
    def _non_empty(cls, value: list[Message]) -> list[Message]:
        if not value:
            raise PydanticCustomError(
                "empty_messages", "messages: at least one message is required."
            )
        return value

    @property
    def custom_tools(self) -> list[Tool]:
        """The tools, each a custom tool (checked by parse_request)."""
        return [Tool.model_validate(tool) for tool in self.tools or []]


class MessagesRequest(CountTokensRequest):
    """`POST /v1/messages`."""

    max_tokens: int = Field(ge=1, strict=True)
    metadata: Metadata | None = None
    stop_sequences: list[Annotated[str, Field(min_length=1)]] | None = None
    stream: bool | None = Field(default=False, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=1, strict=True)
    top_k: int | None = Field(default=None, ge=0, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)


def _check_tools(request: CountTokensRequest) -> None:
    for index, tool in enumerate(request.tools or []):
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise InvalidRequestError(
                f"tools.{index}.type: server tool '{kind}' is not supported by this gateway; "
                "only custom tools (name, description, input_schema) are.",
                param=f"tools.{index}.type",
            )
        validate_body(Tool, tool, prefix=("tools", index))
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceTool) and choice.name not in {
        tool.name for tool in request.custom_tools
    }:
        raise InvalidRequestError(
            f"tool_choice.name: no tool named '{choice.name}' in tools.", param="tool_choice"
        )
    if isinstance(choice, ToolChoiceAny | ToolChoiceTool) and not request.tools:
        raise InvalidRequestError(
            "tool_choice: a tool must be given in tools to use this tool_choice.",
            param="tool_choice",
        )


def parse_request(data: dict[str, Any]) -> MessagesRequest:
    """The validated request, or an InvalidRequestError (a 400; messages/errors.py gives
    it Anthropic's shape). `data` is the body as gateway.inputs.parse_body returned it."""
    request = validate_body(MessagesRequest, data)
    _check_tools(request)
    return request


def parse_count_tokens(data: dict[str, Any]) -> CountTokensRequest:
    """The validated count_tokens request, or an InvalidRequestError."""
    request = validate_body(CountTokensRequest, data)
    _check_tools(request)
    return request
