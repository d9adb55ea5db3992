"""Wire models of OpenAI's Responses API requests (`POST /v1/responses`), fields in
OpenAI's order (openai-python's `ResponseCreateParams`, OpenAI's OpenAPI description
`CreateResponse`).

Only what a chat-completions upstream can serve is accepted: function tools (a hosted
tool such as `web_search` is a 400 naming it), message / function_call /
function_call_output input items, and reasoning items a client sends back (their text
goes with the assistant message that follows). Fields OpenAI defines that change
nothing here (`include`, `truncation`, `service_tier`, `reasoning`, ...) are accepted and
ignored, as vLLM does; unknown fields too (OpenAI's SDKs send several as null).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.errors import InvalidRequestError
from gateway.responses.validation import validate_body

_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class _Open(BaseModel):
    # OpenAI adds optional fields often; unknown ones are kept (and not forwarded).
    model_config = ConfigDict(extra="allow")


# --- input content ------------------------------------------------------------------


class InputText(_Open):
    type: Literal["input_text"]
    text: str


class InputImage(_Open):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] | None = None

    @model_validator(mode="after")
    def _url(self) -> InputImage:
        url = self.image_url
        if url is None:
            # The gateway has no Files API: only inline images.
            raise PydanticCustomError(
                "input_image", "input_image needs an image_url (file_id is not supported)."
            )
        if not (url.startswith("https://") or url.startswith("data:")):
            raise PydanticCustomError(
                "input_image", "input_image.image_url must be an https:// URL or a data: URL."
            )
        return self


class OutputText(_Open):
    """An earlier answer's text, sent back as input (an assistant message item)."""

    type: Literal["output_text"]
    text: str


class Refusal(_Open):
    type: Literal["refusal"]
    refusal: str


InputContent = Annotated[InputText | InputImage | OutputText | Refusal, Field(discriminator="type")]


# --- input items --------------------------------------------------------------------


class MessageItem(_Open):
    """OpenAI's `EasyInputMessage` / `InputMessage` / `OutputMessage` as input."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContent]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallItem(_Open):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(_Open):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[InputContent]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class ReasoningItem(_Open):
    """A reasoning item a client sends back (the Agents SDK does). Its `reasoning_text`
    content goes with the assistant message that follows it (as vLLM's chat templates
    take it); a summary or encrypted content alone is not forwarded."""

    type: Literal["reasoning"]
    content: list[dict[str, Any]] | None = None

    summary: list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        """Its reasoning text; the summary's when it has none (as vLLM reads it)."""
        for parts, kind in ((self.content, "reasoning_text"), (self.summary, "summary_text")):
            text = "".join(
                str(part.get("text") or "") for part in parts or [] if part.get("type") == kind
            )
            if text:
                return text
        return ""


InputItem = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem,
    Field(discriminator="type"),
]


# --- tools and output format --------------------------------------------------------


class FunctionTool(_Open):
    type: Literal["function"]
    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolChoiceFunction(BaseModel):
    type: Literal["function"]
    name: str


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction


class FormatText(BaseModel):
    type: Literal["text"]


class FormatJsonObject(BaseModel):
    type: Literal["json_object"]


class FormatJsonSchema(_Open):
    # `schema` is kept as an extra field (it would shadow BaseModel.schema).
    type: Literal["json_schema"]
    name: str = Field(pattern=_NAME)
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _has_schema(self) -> FormatJsonSchema:
        if not isinstance((self.model_extra or {}).get("schema"), dict):
            raise PydanticCustomError("text_format", "text.format.schema must be an object.")
        return self


TextFormat = Annotated[
    FormatText | FormatJsonObject | FormatJsonSchema, Field(discriminator="type")
]


class TextConfig(_Open):
    format: TextFormat | None = None


# --- the request --------------------------------------------------------------------


class ResponsesRequest(_Open):
    # Kept as sent: None (OpenAI's default) and an explicit value are told apart when
    # the answer echoes them.
    background: bool | None = None
    include: list[str] | None = None
    input: str | list[InputItem]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, strict=True)
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = None
    model: str = Field(min_length=1, max_length=256)
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=256)
    store: bool | None = Field(default=True, strict=True)
    stream: bool | None = Field(default=False, strict=True)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    text: TextConfig | None = None
    tool_choice: ToolChoice | None = None
    tools: list[dict[str, Any]] | None = None
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    user: str | None = None

    # --- Extensions (not in OpenAI's API) -------------------------------------------
    # vLLM's sampling parameter, forwarded.
    top_k: int | None = Field(default=None, ge=-1, strict=True)
    # ---------------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _message_type(cls, data: Any) -> Any:
        """An item with a `role` and no `type` is a message (OpenAI's EasyInputMessage)."""
        if isinstance(data, dict) and isinstance(data.get("input"), list):
            items = [
                {**item, "type": "message"}
                if isinstance(item, dict) and "type" not in item and "role" in item
                else item
                for item in data["input"]
            ]
            data = {**data, "input": items}
        return data

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 16 or any(len(k) > 64 for k in value)):
            raise PydanticCustomError(
                "metadata", "metadata takes at most 16 keys of at most 64 characters."
            )
        return value

    @field_validator("input")
    @classmethod
    def _non_empty(cls, value: str | list[Any]) -> str | list[Any]:
        if isinstance(value, list) and not value:
            raise PydanticCustomError("empty_input", "input must not be an empty array.")
        return value

    @property
    def function_tools(self) -> list[FunctionTool]:
        """The tools, each a function tool (checked by parse_request)."""
        return [FunctionTool.model_validate(tool) for tool in self.tools or []]

    @property
    def text_format(self) -> FormatText | FormatJsonObject | FormatJsonSchema | None:
        return self.text.format if self.text is not None else None


def parse_request(data: dict[str, Any]) -> ResponsesRequest:
    """The validated request, or an InvalidRequestError (400, OpenAI's error format) naming
    the field at fault. `data` is the body as gateway.inputs.parse_body returned it."""
    request = validate_body(ResponsesRequest, data)
    for index, tool in enumerate(request.tools or []):
        kind = tool.get("type")
        if kind != "function":
            raise InvalidRequestError(
                f"Tool type '{kind}' is not supported by this gateway: only function tools "
                "are (the model's server runs no hosted tools).",
                param=f"tools[{index}].type",
                code="unsupported_tool",
            )
        validate_body(FunctionTool, tool, prefix=("tools", index))
    choice = request.tool_choice
    if choice is not None and choice != "none" and not request.tools:
        raise InvalidRequestError(
            "Invalid value for 'tool_choice': tool_choice is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    if isinstance(choice, ToolChoiceFunction) and choice.name not in {
        t.name for t in request.function_tools
    }:
        raise InvalidRequestError(
            f"Invalid value for 'tool_choice': no function named '{choice.name}' in 'tools'.",
            param="tool_choice",
        )
    return request
