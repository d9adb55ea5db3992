"""An Anthropic Messages request, validated and converted to the chat request vLLM builds
from it (``anthropic/serving.py``, ``to_chat_completion_request``):

- ``system`` (a string or text blocks, Claude Code's ``x-anthropic-billing-header`` blocks
  dropped) and every ``system``-role message are joined with "" into one leading system
  message (vLLM merges inline system messages when it runs without ``--chat-template``);
- a text block is a text part (a message of one text block has string content), an image
  block an ``image_url`` part (base64 sources become ``data:`` URLs), a ``thinking`` block
  the message's ``reasoning``, a ``tool_use`` block an assistant tool call (arguments
  ``json.dumps(input)``), a user's ``tool_result`` block a ``tool`` message placed before the
  user message (list content: texts joined with "\\n"; images follow in a user message); a
  user message left with no content is dropped;
- tools become chat tools ``{"name", "description", "parameters": input_schema,
  "strict", "defer_loading"}`` (``input_schema`` gets ``"type": "object"`` when it has no
  type); ``tool_choice`` auto/any/none/tool becomes auto/required/none/named, and
  ``disable_parallel_tool_use`` becomes ``parallel_tool_calls: false``; with tools and no
  ``tool_choice`` it is auto;
- ``max_tokens`` (required, > 0), ``stop_sequences``, ``temperature``, ``top_p``,
  ``top_k`` are passed on; ``metadata`` is ignored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from gpusim.errors import RequestError
from gpusim.responses_input import VALIDATION_TYPE

_ROLES = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "ctx": "user",
    "msg": "user",
}
_BLOCKS = frozenset(
    {"text", "image", "tool_use", "tool_result", "tool_reference", "thinking", "redacted_thinking"}
)
_BILLING = "x-anthropic-billing-header"


def invalid(message: str, param: str) -> RequestError:
    """vLLM's validation error: its global handler answers in OpenAI's shape, even here."""
    return RequestError(400, message, param=f"body.{param}", type_=VALIDATION_TYPE)


def _blocks(value: Any, where: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise invalid(f"{where}: Input should be a valid string or list of blocks", where)
    for i, block in enumerate(value):
        if not isinstance(block, Mapping) or block.get("type") not in _BLOCKS:
            raise invalid(f"{where}.{i}.type: Input should be a content block type", f"{where}.{i}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


# The generation fields checked when present (not for count_tokens), in this order: the
# field, what it accepts, and vLLM's message when it does not.
_GENERATION_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("stop_sequences", _is_strings, "Input should be a list of strings"),
    ("stream", _is_bool, "Input should be a valid boolean"),
    ("temperature", _is_number, "Input should be a valid number"),
    ("top_p", _is_number, "Input should be a valid number"),
    ("top_k", _is_int, "Input should be a valid integer"),
)
_TOOL_CHOICES = ("auto", "any", "tool", "none")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise invalid("messages: Field required", "messages")
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
            raise invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system'", where)
        if not isinstance(message.get("content"), str):
            _blocks(message.get("content"), f"{where}.content")


def _check_generation(body: Mapping[str, Any]) -> None:
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise invalid("max_tokens: Field required (an integer)", "max_tokens")
    if max_tokens <= 0:
        raise invalid("max_tokens: Value error, max_tokens must be positive", "max_tokens")
    for key, accepts, message in _GENERATION_FIELDS:
        value = body.get(key)
        if value is not None and not accepts(value):
            raise invalid(f"{key}: {message}", key)


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list", "tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("name"), str):
            raise invalid(f"tools.{i}.name: Field required", f"tools.{i}.name")
        if not isinstance(tool.get("input_schema"), Mapping):
            raise invalid(f"tools.{i}.input_schema: Field required", f"tools.{i}.input_schema")


def _check_tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, Mapping) or choice.get("type") not in _TOOL_CHOICES:
        raise invalid("tool_choice.type: Input should be auto, any, tool or none", "tool_choice")
    if choice["type"] == "tool" and not choice.get("name"):
        raise invalid("tool_choice: name is required when type is 'tool'", "tool_choice")


def validate(body: Any, *, count_only: bool = False) -> Mapping[str, Any]:
    """Check a decoded body against vLLM's AnthropicMessagesRequest (or, for
    count_tokens, AnthropicCountTokensRequest); unknown fields are ignored."""
    if not isinstance(body, Mapping):
        raise invalid("Input should be a valid dictionary", "body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("model: Field required", "model")
    _check_messages(body.get("messages"))
    if body.get("system") is not None and not isinstance(body["system"], str):
        _blocks(body["system"], "system")
    if not count_only:
        _check_generation(body)
    _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"))
    return body


def _system_text(content: Any) -> str | None:
    if isinstance(content, str):
        return None if content.startswith(_BILLING) else content
    parts = [
        b["text"]
        for b in content
        if b.get("type") == "text" and b.get("text") and not str(b["text"]).startswith(_BILLING)
    ]
    return "".join(parts) if parts else None


def _image_url(source: Any) -> str:
    source = source if isinstance(source, Mapping) else {}
    if source.get("type") == "url":
        return str(source.get("url", ""))
    return f"data:{source.get('media_type', 'image/jpeg')};base64,{source.get('data', '')}"


def _tool_result(block: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
    content = block.get("content")
    text, images = "", []
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for item in content:
            if not isinstance(item, Mapping):
                continue
            if item.get("type") == "text":
                texts.append(str(item.get("text", "")))
            elif item.get("type") == "image":
                images.append(_image_url(item.get("source")))
        text = "\n".join(texts)
    out.append({"role": "tool", "tool_call_id": block.get("tool_use_id") or "", "content": text})
    if images:
        parts = [{"type": "image_url", "image_url": {"url": url}} for url in images]
        out.append({"role": "user", "content": parts})


def _tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id") or f"call_{int(time.time())}",
        "type": "function",
        "function": {
            "name": block.get("name") or "",
            "arguments": json.dumps(block.get("input") or {}),
        },
    }


def _part(block: Mapping[str, Any]) -> dict[str, Any] | None:
    """A text, image or (not a user's) tool-result block as a chat content part."""
    kind = block["type"]
    if kind == "text" and block.get("text"):
        return {"type": "text", "text": block["text"]}
    if kind == "image" and block.get("source"):
        return {"type": "image_url", "image_url": {"url": _image_url(block["source"])}}
    if kind == "tool_result":
        result = str(block.get("content")) if block.get("content") else ""
        return {"type": "text", "text": f"Tool result: {result}"}
    return None


def _content(parts: list[dict[str, Any]]) -> Any:
    """A lone text part is the message's string content; otherwise its content is the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _block_fields(
    blocks: list[Mapping[str, Any]], role: str, out: list[dict[str, Any]]
) -> dict[str, Any]:
    """A message's blocks as its chat fields (reasoning, tool calls, content); a user's tool
    results go to ``out`` as tool messages, ahead of the message itself."""
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for block in blocks:
        kind = block["type"]
        if kind == "thinking":
            if block.get("thinking") is not None:
                reasoning.append(str(block["thinking"]))
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        elif kind == "tool_result" and role == "user":
            _tool_result(block, out)
        elif (part := _part(block)) is not None:
            parts.append(part)
    fields: dict[str, Any] = {}
    if reasoning:
        fields["reasoning"] = "".join(reasoning)
    if calls:
        fields["tool_calls"] = calls
    if parts:
        fields["content"] = _content(parts)
    return fields


def _message(message: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
    role = _ROLES[message["role"]]
    converted: dict[str, Any] = {"role": role}
    content = message["content"]
    if isinstance(content, str):
        converted["content"] = content
    else:
        converted.update(_block_fields(content, role, out))
    if not (role == "user" and "content" not in converted):
        out.append(converted)


def chat_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system_parts: list[str] = []
    system = body.get("system")
    if system:
        text = system if isinstance(system, str) else _system_text(system)
        if text:
            system_parts.append(text)
    for message in body["messages"]:
        if _ROLES[message["role"]] == "system":
            text = _system_text(message["content"])
            if text:
                system_parts.append(text)
    if system_parts:
        out.append({"role": "system", "content": "".join(system_parts)})
    for message in body["messages"]:
        if _ROLES[message["role"]] != "system":
            _message(message, out)
    return out


def chat_tools(body: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    converted = []
    for tool in tools:
        schema = dict(tool["input_schema"])
        schema.setdefault("type", "object")
        function = {
            "name": tool["name"],
            "description": tool.get("description"),
            "parameters": schema,
            "strict": tool.get("strict"),
            "defer_loading": tool.get("defer_loading"),
        }
        converted.append({"type": "function", "function": function})
    return converted


def chat_body(body: Mapping[str, Any]) -> dict[str, Any]:
    chat: dict[str, Any] = {
        "model": body["model"],
        "messages": chat_messages(body),
        "max_tokens": body["max_tokens"],
        "max_completion_tokens": body["max_tokens"],
    }
    for source, target in (
        ("stop_sequences", "stop"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("top_k", "top_k"),
        ("chat_template_kwargs", "chat_template_kwargs"),
        ("sim", "sim"),
    ):
        if body.get(source) is not None:
            chat[target] = body[source]
    choice = body.get("tool_choice")
    tool_choice: Any = None
    if choice is not None:
        chat["parallel_tool_calls"] = not choice.get("disable_parallel_tool_use", False)
        tool_choice = {"auto": "auto", "any": "required", "none": "none"}.get(choice["type"])
        if choice["type"] == "tool":
            tool_choice = {"type": "function", "function": {"name": choice["name"]}}
    tools = chat_tools(body)
    if tools is not None:
        chat["tools"] = tools
        chat["tool_choice"] = tool_choice or "auto"
    elif tool_choice is not None:
        chat["tool_choice"] = tool_choice
    output_format = (body.get("output_config") or {}).get("format")
    if isinstance(output_format, Mapping) and output_format.get("schema"):
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "json_schema", "schema": output_format["schema"]},
        }
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat
