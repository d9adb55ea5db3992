"""Chat messages and their content parts, as OpenAI's chat completions API takes them
(chat/protocol.py's requests hold them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError


class TextContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str
    detail: Literal["auto", "low", "high"] | None = None

    @field_validator("url")
    @classmethod
    def _https_or_data(cls, value: str) -> str:
        if not (value.startswith("https://") or value.startswith("data:")):
            raise PydanticCustomError(
                "image_url", "image_url.url must be an https:// URL or a data: URL."
            )
        return value


class ImageContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(BaseModel):
    model_config = ConfigDict(extra="allow")

    data: str
    format: Literal["wav", "mp3"]


class AudioContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["input_audio"]
    input_audio: InputAudio


class RefusalContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["refusal"]
    refusal: str


UserContentPart = Annotated[
    TextContentPart | ImageContentPart | AudioContentPart, Field(discriminator="type")
]
AssistantContentPart = Annotated[TextContentPart | RefusalContentPart, Field(discriminator="type")]
# Which modality each media part needs from the model (see ModelConfig.modalities).
PART_MODALITY = {"image_url": "image", "input_audio": "audio"}


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None

    def text(self) -> str:
        """The content as the chat template sees it: text parts joined by newlines (vLLM's
        string content format; media parts contribute no text), None as ""."""
        content = getattr(self, "content", None)
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "\n".join(part.text for part in content if isinstance(part, TextContentPart))


class SystemMessage(_Message):
    # `developer` is OpenAI's successor to `system`; it is rendered and forwarded as system.
    role: Literal["system", "developer"]
    content: str | list[TextContentPart]


class UserMessage(_Message):
    role: Literal["user"]
    content: str | list[UserContentPart]


class AssistantMessage(_Message):
    role: Literal["assistant"]
    content: str | list[AssistantContentPart] | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None

    @model_validator(mode="after")
    def _content_or_tool_calls(self) -> AssistantMessage:
        if self.content is None and not self.tool_calls:
            raise PydanticCustomError(
                "assistant_content", "An assistant message needs content or tool_calls."
            )
        return self


class ToolMessage(_Message):
    role: Literal["tool"]
    content: str | list[TextContentPart]
    tool_call_id: str


ChatMessage = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage,
    Field(discriminator="role"),
]
