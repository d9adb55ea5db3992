"""A chat completion as a `response` object (OpenAI's OpenAPI description: `Response`)
and the output items both it and the stream (stream.py) are made of."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from gateway.pipeline.chat_reading import first_choice, reasoning_of
from gateway.responses.protocol import ResponsesRequest, ToolChoiceFunction

Status = Literal["completed", "incomplete", "failed", "in_progress"]


def usage_of(usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A chat `usage` (the billed figures) in the Responses API's shape."""
    if usage is None:
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": int(prompt_details.get("cached_tokens") or 0),
            "cache_write_tokens": 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": int(completion_details.get("reasoning_tokens") or 0)
        },
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def item_id(kind: Literal["msg", "fc", "call", "rs"], response_id: str, index: int) -> str:
    """An output item's id: unique across stored conversations, as response ids are."""
    return f"{kind}_{response_id.removeprefix('resp_')}_{index}"


def message_item(item: str, text: str, status: Status) -> dict[str, Any]:
    return {
        "id": item,
        "type": "message",
        "status": status,
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]
        if text or status != "in_progress"
        else [],
        "role": "assistant",
    }


def reasoning_item(item: str, text: str, status: Status) -> dict[str, Any]:
    """A reasoning item as vLLM answers it: the model's reasoning text, no summary."""
    return {
        "id": item,
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}] if status != "in_progress" else [],
        "status": status,
    }


def function_call_item(
    item: str, *, call_id: str, name: str, arguments: str, status: Status
) -> dict[str, Any]:
    return {
        "id": item,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def _tool_choice(request: ResponsesRequest) -> Any:
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceFunction):
        return {"type": "function", "name": choice.name}
    return choice if choice is not None else "auto"


def _tools(request: ResponsesRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": tool.strict,
        }
        for tool in request.function_tools
    ]


def _text(request: ResponsesRequest) -> dict[str, Any]:
    fmt = request.text_format
    if fmt is None:
        return {"format": {"type": "text"}}
    return {"format": fmt.model_dump(mode="json", exclude_none=True)}


def incomplete_reason(finish_reason: Any) -> str | None:
    """Why a response is incomplete, from the chat finish_reason (None: it is not)."""
    if not isinstance(finish_reason, str):
        return None
    return {"length": "max_output_tokens", "content_filter": "content_filter"}.get(
        finish_reason or ""
    )


def response_object(
    *,
    response_id: str,
    created: int,
    model: str,
    request: ResponsesRequest,
    status: Status,
    output: list[dict[str, Any]],
    usage: Mapping[str, Any] | None,
    incomplete: str | None = None,
    error: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A `response` object, fields in OpenAI's order; request fields echoed with OpenAI's
    defaults."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": dict(error) if error is not None else None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": None,
        "service_tier": "default",
        "store": request.store is not False,
        "temperature": request.temperature if request.temperature is not None else 1.0,
        "text": _text(request),
        "tool_choice": _tool_choice(request),
        "tools": _tools(request),
        "top_p": request.top_p if request.top_p is not None else 1.0,
        "truncation": "disabled",
        "metadata": dict(request.metadata or {}),
    }
    # OpenAI's schema has these an object and a string, never null: left out until known.
    if usage is not None:
        body["usage"] = usage_of(usage)
    if request.user is not None:
        body["user"] = request.user
    return body


def output_items(
    message: Mapping[str, Any], *, response_id: str, status: Status
) -> list[dict[str, Any]]:
    """A chat message's reasoning, text and tool calls as output items, in that order."""
    output: list[dict[str, Any]] = []
    thought = reasoning_of(message)
    if thought:
        output.append(reasoning_item(item_id("rs", response_id, 0), thought, "completed"))
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(item_id("msg", response_id, len(output)), content, status))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        index = len(output)
        output.append(
            function_call_item(
                item_id("fc", response_id, index),
                call_id=str(call.get("id") or item_id("call", response_id, index)),
                name=str(function.get("name") or ""),
                arguments=str(function.get("arguments") or ""),
                status="completed",
            )
        )
    return output


def response_from_chat(
    completion: Mapping[str, Any],
    *,
    response_id: str,
    created: int,
    model: str,
    request: ResponsesRequest,
    usage: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The `response` object of a buffered chat completion. `usage` is the billed chat
    usage (prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details)."""
    choice = first_choice(completion)
    incomplete = incomplete_reason(choice.get("finish_reason"))
    status: Status = "incomplete" if incomplete else "completed"
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    return response_object(
        response_id=response_id,
        created=created,
        model=model,
        request=request,
        status=status,
        output=output_items(message, response_id=response_id, status=status),
        usage=usage,
        incomplete=incomplete,
    )
