"""A Responses API request, validated and converted to the chat request vLLM renders.

Conversion as vLLM's ``responses/utils.py`` does it: ``instructions`` becomes a leading
system message; a string ``input`` one user message; input items are taken in order:
message items keep their role and content (``input_text`` / ``output_text`` parts are text
parts, ``input_image`` an image part), an assistant message item contributes the text of
its first content part, a ``function_call`` item becomes an assistant ``tool_calls`` entry
(merged into the preceding assistant message), a ``function_call_output`` item a ``tool``
message. Function tools are rendered as chat tools ``{"type": "function", "function":
{"name", "description", "parameters", "strict"}}`` (``FunctionTool.model_dump()`` put
through vLLM's ``FunctionDefinition``, so absent fields are null), whatever
``tool_choice`` says (vLLM renders them even under ``none``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpusim.errors import RequestError
from gpusim.responses_store import StoredResponse

# vLLM's request validation failures (FastAPI RequestValidationError) are answered by its
# global handler: 400, {"error": {"message", "type": "Bad Request", "param", "code": 400}}.
VALIDATION_TYPE = "Bad Request"

LOGPROBS = "message.output_text.logprobs"
_NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
# Sampling fields the chat route takes as they are.
_FORWARDED = ("temperature", "top_p", "top_k", "seed", "stop", "ignore_eos", "min_tokens")


def invalid(message: str, param: str) -> RequestError:
    return RequestError(400, message, param=param, type_=VALIDATION_TYPE)


@dataclass(frozen=True)
class ResponsesRequest:
    body: Mapping[str, Any]  # the request as sent (echoed fields are read from it)
    model: str
    stream: bool
    store: bool
    background: bool
    previous_response_id: str | None
    tools: list[Any]  # as sent
    tool_choice: Any  # after vLLM's check_tool_usage ("auto" without tools is "none")
    max_output_tokens: int | None
    # include "message.output_text.logprobs": per-token logprobs, top_logprobs alternatives
    logprobs: bool = False
    top_logprobs: int = 0


def _optional(body: Mapping[str, Any], key: str, kinds: tuple[type, ...]) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        kind = "number" if float in kinds else _KIND_NAMES[kinds[0]]
        raise invalid(f"{key}: Input should be a valid {kind}", key)
    return value


_KIND_NAMES = {str: "string", int: "integer", bool: "boolean", dict: "dictionary", list: "list"}


def _tool_names(tools: list[Any]) -> set[str]:
    return {str(t.get("name")) for t in tools if isinstance(t, Mapping)}


def _tool_choice(body: Mapping[str, Any], tools: list[Any]) -> Any:
    choice = body.get("tool_choice", "auto")
    if choice is None:
        choice = "auto"
    named = isinstance(choice, Mapping) and choice.get("type") == "function"
    if not tools:  # vLLM's check_tool_usage
        if choice in ("auto", "none"):
            return "none"
        if choice == "required":
            raise invalid(
                "Tool choice 'required' must be specified with 'tools' parameter.", "tool_choice"
            )
        if named:
            raise invalid("Tool choice 'function' not found in 'tools' parameter.", "tool_choice")
    if named:
        if choice.get("name") not in _tool_names(tools):
            raise invalid("Tool choice 'function' not found in 'tools' parameter.", "tool_choice")
        return {"name": choice["name"], "type": "function"}
    if choice not in ("auto", "none", "required"):
        raise invalid("tool_choice: Input should be 'none', 'auto' or 'required'", "tool_choice")
    return choice


# Fields vLLM's ResponsesRequest types that gpusim only checks, in the order it checks them.
_TYPED_FIELDS: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("instructions", (str,)),
    ("previous_response_id", (str,)),
    ("user", (str,)),
    ("stream", (bool,)),
    ("parallel_tool_calls", (bool,)),
    *((key, (int, float)) for key in _NUMBER_FIELDS),
    ("metadata", (dict,)),
)
_TEXT_FORMATS = ("text", "json_object", "json_schema")


def _model_and_input(body: Mapping[str, Any]) -> str:
    """The model, once ``input`` is there and ``prompt`` is not."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: gpusim serves several models, so `model` is required", "model")
    if not isinstance(body.get("input"), str | list):
        raise invalid("input: Field required (a string or a list of items)", "input")
    if body.get("prompt") is not None:
        raise invalid("prompt template is not supported", "prompt")
    return model


def _storage(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """(background, store): store defaults to true, and background needs it."""
    background = bool(_optional(body, "background", (bool,)))
    store = _optional(body, "store", (bool,))
    store = True if store is None else store
    if background and not store:
        raise invalid("background can only be used when `store` is true", "background")
    return background, store


def _tools(body: Mapping[str, Any]) -> list[Any]:
    tools = _optional(body, "tools", (list,)) or []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get("type"), str):
            raise invalid(f"tools.{i}: Input should be a valid tool", f"tools.{i}")
        if tool["type"] == "function" and not isinstance(tool.get("name"), str):
            raise invalid(f"tools.{i}.name: Field required", f"tools.{i}.name")
    return tools


def _top_logprobs(body: Mapping[str, Any]) -> int:
    top_logprobs = _optional(body, "top_logprobs", (int,)) or 0
    if not 0 <= top_logprobs <= 20:
        raise invalid("top_logprobs: Input should be between 0 and 20", "top_logprobs")
    return top_logprobs


def _check_text(body: Mapping[str, Any]) -> None:
    text = _optional(body, "text", (dict,))
    if text is None or text.get("format") is None:
        return
    kind = text["format"].get("type") if isinstance(text["format"], Mapping) else None
    if kind not in _TEXT_FORMATS:
        raise invalid("text.format.type: Input should be text, json_object or json_schema", "text")


def parse_request(body: Any) -> ResponsesRequest:
    """Validate a decoded /v1/responses body as vLLM's ResponsesRequest does (the fields in
    this order: a body with several faults gets the first one's error)."""
    if not isinstance(body, Mapping):
        raise invalid("Input should be a valid dictionary", "body")
    model = _model_and_input(body)
    background, store = _storage(body)
    for key, kinds in _TYPED_FIELDS:
        _optional(body, key, kinds)
    max_output_tokens = _optional(body, "max_output_tokens", (int,))
    tools = _tools(body)
    include = _optional(body, "include", (list,)) or []
    top_logprobs = _top_logprobs(body)
    _check_text(body)
    return ResponsesRequest(
        body=body,
        model=model,
        stream=bool(body.get("stream")),
        store=store,
        background=background,
        previous_response_id=body.get("previous_response_id"),
        tools=list(tools),
        tool_choice=_tool_choice(body, tools),
        max_output_tokens=max_output_tokens,
        logprobs=LOGPROBS in include,
        top_logprobs=top_logprobs,
    )


def _part(part: Any, where: str) -> Any:
    """A content part as vLLM's chat parser reads it (``MM_PARSER_MAP``)."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text")}
    if kind == "input_image":
        return {"type": "image_url", "image_url": {"url": part.get("image_url")}}
    raise invalid(f"{where}: content part of type {kind!r} is not supported", where)


def _content(content: Any, where: str) -> Any:
    if isinstance(content, list):
        return [_part(p, f"{where}.{i}") for i, p in enumerate(content)]
    return content


def _first_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        text = content[0].get("text")
        return text if isinstance(text, str) else None
    return None


def _assistant(prev: dict[str, Any] | None, key: str, value: Any) -> dict[str, Any] | None:
    """Merge into the preceding assistant message when it lacks ``key`` (vLLM's
    ``_construct_message_from_response_item``); else a new assistant message."""
    if prev is not None and prev.get("role") == "assistant":
        if key == "tool_calls":
            prev.setdefault("tool_calls", []).extend(value)
            return None
        if prev.get(key) is None:
            prev[key] = value
            return None
    return {"role": "assistant", key: value}


def _function_call(
    item: Mapping[str, Any], prev: dict[str, Any] | None, where: str
) -> dict[str, Any] | None:
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise invalid(f"{where}.{key}: Field required", f"{where}.{key}")
    call = {
        "id": item["call_id"],
        "function": {"name": item["name"], "arguments": item["arguments"]},
        "type": "function",
    }
    return _assistant(prev, "tool_calls", [call])


def _function_call_output(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(item.get("call_id"), str) or item.get("output") is None:
        raise invalid(f"{where}: call_id and output are required", where)
    output = _content(item["output"], f"{where}.output")
    return {"role": "tool", "content": output, "tool_call_id": item["call_id"]}


def _message_item(
    item: Mapping[str, Any], prev: dict[str, Any] | None, where: str
) -> dict[str, Any] | None:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        raise invalid(f"{where}.role: Input should be user, system, developer or assistant", where)
    if role == "assistant":
        text = _first_text(item.get("content"))
        return None if text is None else _assistant(prev, "content", text)
    return {"role": role, "content": _content(item.get("content"), f"{where}.content")}


def _item_message(item: Any, prev: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    if not isinstance(item, Mapping):
        raise invalid(f"{where}: Input should be a valid input item", where)
    kind = item.get("type")
    if kind == "function_call":
        return _function_call(item, prev, where)
    if kind == "function_call_output":
        return _function_call_output(item, where)
    if kind == "reasoning":
        content = item.get("content") or item.get("summary") or []
        return _assistant(prev, "reasoning", _first_text(content) or "")
    if kind not in (None, "message"):
        raise invalid(f"{where}: items of type {kind!r} are not supported", where)
    return _message_item(item, prev, where)


def chat_messages(
    req: ResponsesRequest, previous: StoredResponse | None = None
) -> list[dict[str, Any]]:
    """The conversation vLLM renders for this request (``construct_input_messages``).
    After a stored ``previous`` response: its messages without their system messages, then
    the text of its output messages (its function calls are not carried over), then the
    new input."""
    messages: list[dict[str, Any]] = []
    instructions = req.body.get("instructions")
    if instructions:
        messages.append({"role": "system", "content": instructions})
    if previous is not None:
        messages.extend(m for m in previous.messages if m.get("role") != "system")
        for item in previous.response["output"]:
            if item.get("type") == "message":
                messages.extend(
                    {"role": "assistant", "content": part.get("text")} for part in item["content"]
                )
    raw_input = req.body["input"]
    if isinstance(raw_input, str):
        messages.append({"role": "user", "content": raw_input})
        return messages
    start = len(messages)
    for i, item in enumerate(raw_input):
        prev = messages[-1] if len(messages) > start else None
        message = _item_message(item, prev, f"input.{i}")
        if message is not None:
            messages.append(message)
    return messages


def chat_tools(tools: list[Any]) -> list[dict[str, Any]] | None:
    functions = [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description"),
                "parameters": t.get("parameters"),
                "strict": t.get("strict"),
            },
        }
        for t in tools
        if t.get("type") == "function"
    ]
    return functions or None


def _chat_tools_fields(req: ResponsesRequest) -> dict[str, Any]:
    """The chat request's ``tools`` and ``tool_choice`` (none without function tools)."""
    tools = chat_tools(req.tools)
    if not tools:
        return {}
    choice = req.tool_choice
    if isinstance(choice, Mapping):
        choice = {"type": "function", "function": {"name": choice["name"]}}
    return {"tools": tools, "tool_choice": choice}


def _response_format(text_format: Any) -> dict[str, Any] | None:
    """``text.format`` as the chat ``response_format`` (None for plain text)."""
    kind = text_format.get("type") if isinstance(text_format, Mapping) else None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: text_format.get(k) for k in ("name", "schema", "strict")}
        return {"type": "json_schema", "json_schema": schema}
    return None


def _present(body: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The fields among ``keys`` that the body sets (not null), as they are."""
    return {key: body[key] for key in keys if body.get(key) is not None}


def chat_body(req: ResponsesRequest, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions request that generates this response from ``messages``."""
    body = req.body
    chat: dict[str, Any] = {"model": req.model, "messages": messages}
    chat.update(_chat_tools_fields(req))
    chat.update(_present(body, ("parallel_tool_calls",)))
    if req.max_output_tokens is not None:
        chat["max_tokens"] = req.max_output_tokens
    if req.logprobs:
        chat["logprobs"] = True
        chat["top_logprobs"] = req.top_logprobs
    chat.update(_present(body, _FORWARDED))
    response_format = _response_format((body.get("text") or {}).get("format"))
    if response_format is not None:
        chat["response_format"] = response_format
    chat.update(_present(body, ("chat_template_kwargs", "sim")))
    if req.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat
