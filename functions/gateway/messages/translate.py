"""An Anthropic Messages request as a chat-completions body, and a chat completion as a
`message` (Anthropic's `Message`), the way vLLM's Anthropic serving converts them
(vllm/entrypoints/anthropic/serving.py), so the gateway counts, routes, guards and
meters it exactly as chat:

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

Usage follows Anthropic's arithmetic: `input_tokens` are the prompt tokens not read from
the cache, `cache_read_input_tokens` the cached ones (the upstream's
`prompt_tokens_details.cached_tokens`), so their sum is the billed prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.messages.protocol import (
    CountTokensRequest,
    ImageBlock,
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

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


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


def chat_messages(request: CountTokensRequest) -> list[dict[str, Any]]:
    """The conversation as chat messages."""
    messages: list[dict[str, Any]] = []
    if (system := _system(request)) is not None:
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        if isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content})
            continue
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        thoughts: list[str] = []
        for block in message.content:
            if isinstance(block, ThinkingBlock):
                if block.type == "thinking" and block.thinking:
                    thoughts.append(block.thinking)
            elif isinstance(block, TextBlock):
                parts.append({"type": "text", "text": block.text})
            elif isinstance(block, ImageBlock):
                parts.append({"type": "image_url", "image_url": {"url": block.url}})
            elif isinstance(block, ToolUseBlock):
                calls.append(
                    {
                        "id": block.id,
                        "type": "function",
                        "function": {"name": block.name, "arguments": json.dumps(block.input)},
                    }
                )
            elif isinstance(block, ToolResultBlock):
                tool, images = _tool_result(block)
                messages.append(tool)
                if images:
                    messages.append({"role": "user", "content": images})
        content: str | list[dict[str, Any]] | None = parts
        if len(parts) == 1 and parts[0]["type"] == "text":
            content = parts[0]["text"]
        if message.role == "assistant":
            if parts or calls or thoughts:
                item: dict[str, Any] = {
                    "role": "assistant",
                    "content": content or (None if calls else ""),
                }
                if calls:
                    item["tool_calls"] = calls
                if thoughts:
                    item["reasoning"] = "".join(thoughts)
                messages.append(item)
        elif parts:
            messages.append({"role": "user", "content": content})
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


# --- answer -------------------------------------------------------------------------


def usage_of(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """A chat `usage` (the billed figures) in Anthropic's shape."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    cached = min(int(details.get("cached_tokens") or 0), prompt)
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }


def stop_of(
    finish_reason: Any, stop_reason: Any, request: MessagesRequest, *, tool_use: bool
) -> tuple[str, str | None]:
    """Anthropic's (stop_reason, stop_sequence) for a chat finish_reason and vLLM's
    `stop_reason` (the matched stop string, when one ended the generation). An unknown
    finish_reason is a natural end."""
    if tool_use:  # a named tool_choice finishes with `stop`, as OpenAI's does
        return "tool_use", None
    if (
        finish_reason == "stop"
        and isinstance(stop_reason, str)
        and stop_reason in (request.stop_sequences or ())
    ):
        return "stop_sequence", stop_reason
    if finish_reason == "content_filter":
        return "refusal", None
    return STOP_REASONS.get(finish_reason, "end_turn"), None


def tool_use_block(call: Mapping[str, Any], fallback_id: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    assert isinstance(function, dict)
    return {
        "type": "tool_use",
        "id": str(call.get("id") or fallback_id),
        "name": str(function.get("name") or ""),
        "input": parse_arguments(function.get("arguments")),
    }


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is: the model's JSON text
    parsed, {} when it is not a JSON object (a model can write anything)."""
    if not isinstance(arguments, str) or not arguments:
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def reasoning_of(message: Mapping[str, Any]) -> str:
    """A chat message's (or delta's) reasoning: vLLM's `reasoning`, or the older
    `reasoning_content`."""
    for name in ("reasoning", "reasoning_content"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def signature(message_id: str, index: int) -> str:
    """A thinking block's `signature`. Anthropic's is a cryptographic seal the API checks
    when the block is sent back; a self-hosted model has none, so this is an opaque
    placeholder (vLLM sends a random one), and thinking sent back is taken as it is."""
    return f"{message_id}.{index}"


def thinking_block(text: str, *, signature: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": signature}


def first_choice(completion: Mapping[str, Any]) -> Mapping[str, Any]:
    """A chat completion's one choice ({} when the body has none, or a malformed one)."""
    choices = completion.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


def message_from_chat(
    completion: Mapping[str, Any],
    *,
    message_id: str,
    model: str,
    request: MessagesRequest,
    usage: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The `message` of a buffered chat completion. `usage` is the billed chat usage."""
    choice = first_choice(completion)
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    content: list[dict[str, Any]] = []
    if thought := reasoning_of(message):
        content.append(thinking_block(thought, signature=signature(message_id, 0)))
    if isinstance(text := message.get("content"), str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for index, call in enumerate(calls if isinstance(calls, list) else []):
        if isinstance(call, dict):
            content.append(tool_use_block(call, f"toolu_{message_id}_{index}"))
    stop_reason, stop_sequence = stop_of(
        choice.get("finish_reason") or "stop",
        choice.get("stop_reason"),
        request,
        tool_use=any(block["type"] == "tool_use" for block in content),
    )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": model,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_of(usage),
    }
