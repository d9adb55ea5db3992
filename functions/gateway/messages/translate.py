"""An Anthropic Messages request as a chat-completions body, the way vLLM's Anthropic
serving converts it (vllm/entrypoints/anthropic/serving.py), so the gateway counts,
routes, guards and meters it exactly as chat:

- `system` (a string, or text blocks joined; Claude Code's `x-anthropic-billing-header`
  block dropped, as vLLM drops it) is the first message, `system`;
- text blocks become `text` parts (one text block: a string), image blocks `image_url`
  parts (base64 sources as data: URLs);
- an assistant's `tool_use` blocks become its `tool_calls` (`input` as JSON text);
- an assistant's `thinking` blocks become its `reasoning` (what chat templates read);
- a user's `tool_result` blocks become `tool` messages answering `tool_use_id`, sent
  before the rest of that user turn (its images, if any, follow as a user message);
- tools become function tools (`input_schema` as `parameters`), `tool_choice`
  auto/any/tool/none becomes auto/required/named/none and `disable_parallel_tool_use`
  `parallel_tool_calls: false`; `max_tokens`, `stop_sequences` (as `stop`),
  `temperature`, `top_p`, `top_k` and `metadata.user_id` (as `user`) keep their meaning.

The answer's way back is answer.py.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.messages.protocol import (
    ContentBlock,
    CountTokensRequest,
    ImageBlock,
    Message,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
    ToolUseBlock,
)

# Claude Code's first system block: an attribution header with a per-request hash, which
# vLLM strips (it would defeat prefix caching and changes nothing for the model).
_BILLING_HEADER = "x-anthropic-billing-header"


def _system(request: CountTokensRequest) -> str | None:
    system = request.system
    if system is None or isinstance(system, str):
        return system or None
    texts = (block.text for block in system if not block.text.startswith(_BILLING_HEADER))
    return "".join(texts) or None


def _tool_result(block: ToolResultBlock) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The tool message, and the image parts the result held."""
    images: list[dict[str, Any]] = []
    if isinstance(block.content, list):
        texts = []
        for part in block.content:
            if isinstance(part, ImageBlock):
                images.append({"type": "image_url", "image_url": {"url": part.url}})
            else:
                texts.append(part.text)
        text = "\n".join(texts)
    else:
        text = block.content or ""
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}, images


def _tool_call(block: ToolUseBlock) -> dict[str, Any]:
    return {
        "id": block.id,
        "type": "function",
        "function": {"name": block.name, "arguments": json.dumps(block.input)},
    }


class _Turn:
    """One message's blocks, sorted into what its chat messages carry."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.thoughts: list[str] = []
        self.tool_messages: list[dict[str, Any]] = []  # sent before the turn itself

    def add(self, block: ContentBlock) -> None:
        if isinstance(block, ThinkingBlock):
            if block.type == "thinking" and block.thinking:
                self.thoughts.append(block.thinking)
        elif isinstance(block, TextBlock):
            self.parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            self.parts.append({"type": "image_url", "image_url": {"url": block.url}})
        elif isinstance(block, ToolUseBlock):
            self.calls.append(_tool_call(block))
        elif isinstance(block, ToolResultBlock):
            tool, images = _tool_result(block)
            self.tool_messages.append(tool)
            if images:
                self.tool_messages.append({"role": "user", "content": images})

    def content(self) -> str | list[dict[str, Any]]:
        """The parts; one text part as a string."""
        if len(self.parts) == 1 and self.parts[0]["type"] == "text":
            return str(self.parts[0]["text"])
        return self.parts

    def assistant(self) -> dict[str, Any] | None:
        if not (self.parts or self.calls or self.thoughts):
            return None
        item: dict[str, Any] = {
            "role": "assistant",
            "content": self.content() or (None if self.calls else ""),
        }
        if self.calls:
            item["tool_calls"] = self.calls
        if self.thoughts:
            item["reasoning"] = "".join(self.thoughts)
        return item

    def user(self) -> dict[str, Any] | None:
        return {"role": "user", "content": self.content()} if self.parts else None


def _turn_messages(message: Message) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: its tool results first, then the turn."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    turn = _Turn()
    for block in message.content:
        turn.add(block)
    own = turn.assistant() if message.role == "assistant" else turn.user()
    return [*turn.tool_messages, *([own] if own is not None else [])]


def chat_messages(request: CountTokensRequest) -> list[dict[str, Any]]:
    """The conversation as chat messages."""
    messages: list[dict[str, Any]] = []
    if (system := _system(request)) is not None:
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        messages.extend(_turn_messages(message))
    return messages


def _tools(request: CountTokensRequest, body: dict[str, Any]) -> None:
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    **({"description": tool.description} if tool.description else {}),
                    "parameters": tool.input_schema,
                },
            }
            for tool in request.custom_tools
        ]
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceAuto):
        body["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceAny):
        body["tool_choice"] = "required"
    elif isinstance(choice, ToolChoiceTool):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif isinstance(choice, ToolChoiceNone):
        body["tool_choice"] = "none"
    if getattr(choice, "disable_parallel_tool_use", None):
        body["parallel_tool_calls"] = False


def count_tokens_body(request: CountTokensRequest) -> dict[str, Any]:
    """The chat body whose prompt count_tokens answers with (nothing is generated)."""
    body: dict[str, Any] = {"model": request.model, "messages": chat_messages(request)}
    _tools(request, body)
    return body


def token_count(input_tokens: int) -> dict[str, Any]:
    """The answer of `POST /v1/messages/count_tokens` (Anthropic's MessageTokensCount)."""
    return {"input_tokens": input_tokens}


def to_chat(request: MessagesRequest) -> dict[str, Any]:
    """The chat-completions body of a Messages request."""
    body = count_tokens_body(request)
    body["max_tokens"] = request.max_tokens
    if request.stop_sequences:
        body["stop"] = list(request.stop_sequences)
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.metadata is not None and request.metadata.user_id:
        body["user"] = request.metadata.user_id
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def native_body(request: MessagesRequest) -> dict[str, Any]:
    """The body for an upstream that serves `/v1/messages` itself (vLLM): the request as
    the client sent it (the caller sets the upstream's model name and the planned
    `max_tokens`). Fields the gateway does not know are not forwarded, as on the
    translated path."""
    unknown = set(request.model_extra or ())
    return request.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=unknown)
