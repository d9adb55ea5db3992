"""A Responses API request as a chat-completions body, and a chat completion as a
`response` object (OpenAI's OpenAPI description: `Response`).

What the upstream sees is what the chat route would forward for the same conversation,
so the gateway counts, routes, guards and meters it exactly as chat:

- `instructions` is the first message, `system` (it is not carried over from an earlier
  response: OpenAI's rule for `previous_response_id`);
- message items keep their role (`developer` is sent as `system`, as the chat route
  does); `input_text` / `output_text` / `refusal` parts become `text` parts and
  `input_image` an `image_url` part; an assistant message's parts are one string, as
  vLLM's Responses serving converts an earlier answer
  (vllm/entrypoints/openai/responses/utils.py);
- a reasoning item's text is the `reasoning` of the assistant message that follows;
- `function_call` items become the `tool_calls` of the assistant message they follow
  (a new assistant message with `content: null` when none does), and
  `function_call_output` items `tool` messages answering their `call_id`;
- function tools, `tool_choice`, `parallel_tool_calls`, `text.format` (as
  `response_format`), `max_output_tokens` (as `max_tokens`), the sampling fields and
  `user` keep their meaning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from gateway.errors import InvalidRequestError
from gateway.inputs import invalid_request
from gateway.responses.protocol import (
    FormatJsonObject,
    FormatJsonSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImage,
    InputItem,
    MessageItem,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
    ToolChoiceFunction,
)

Status = Literal["completed", "incomplete", "failed", "in_progress"]

_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


# --- request ------------------------------------------------------------------------


def input_items(request: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's own input as item dicts (a string input is one user message): what
    a stored response keeps as its new input."""
    if isinstance(request.input, str):
        return [{"type": "message", "role": "user", "content": request.input}]
    return [item.model_dump(mode="json", exclude_none=True) for item in request.input]


def parse_items(items: Sequence[Mapping[str, Any]]) -> list[InputItem]:
    """Stored items (a conversation's history) as input items; a 400 if one is not."""
    try:
        return _ITEMS.validate_python(list(items))
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False)) from exc


def _text_parts(content: str | list[Any], *, role: str, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        if isinstance(part, InputImage):
            if role != "user":
                raise InvalidRequestError(
                    f"Invalid value for '{where}.content[{index}]': only user messages may "
                    "hold input_image parts.",
                    param=f"{where}.content.{index}",
                )
            image: dict[str, Any] = {"url": part.image_url}
            if part.detail in ("low", "high", "auto"):
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
        elif isinstance(part, Refusal):
            parts.append({"type": "text", "text": part.refusal})
        else:
            parts.append({"type": "text", "text": part.text})
    return parts


def _tool_output(output: str | list[Any]) -> str:
    if isinstance(output, str):
        return output
    return "\n".join(getattr(part, "text", "") for part in output)


def chat_messages(
    items: Iterable[InputItem], *, instructions: str | None = None
) -> list[dict[str, Any]]:
    """The conversation as chat messages."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    reasoning = ""  # a reasoning item's text, for the assistant message that follows
    for position, item in enumerate(items):
        where = f"input[{position}]"
        if isinstance(item, ReasoningItem):
            reasoning += item.text
            continue
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            content = _text_parts(item.content, role=role, where=where)
            if role == "assistant" and isinstance(content, list):
                # An earlier answer's text, as one string (vLLM's conversion).
                content = "".join(part["text"] for part in content)
            messages.append({"role": role, "content": content})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            messages.append(
                {"role": "tool", "tool_call_id": item.call_id, "content": _tool_output(item.output)}
            )
        if reasoning and messages[-1]["role"] == "assistant":
            messages[-1]["reasoning"] = reasoning
        reasoning = ""  # reasoning not followed by an answer is not forwarded
    return messages


def _response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    fmt = request.text_format
    if isinstance(fmt, FormatJsonObject):
        return {"type": "json_object"}
    if isinstance(fmt, FormatJsonSchema):
        schema: dict[str, Any] = {"name": fmt.name, "schema": (fmt.model_extra or {})["schema"]}
        if fmt.description is not None:
            schema["description"] = fmt.description
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        return {"type": "json_schema", "json_schema": schema}
    return None  # text (or none): the chat default


def to_chat(
    request: ResponsesRequest, history_items: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The chat-completions body for this turn. `history_items` is the earlier
    conversation (ConversationStore.expand of `previous_response_id`; empty without
    one), in order, before the request's own input."""
    own: list[InputItem] = (
        [MessageItem(role="user", content=request.input)]
        if isinstance(request.input, str)
        else list(request.input)
    )
    items = [*parse_items(history_items), *own]
    body: dict[str, Any] = {
        "model": request.model,
        "messages": chat_messages(items, instructions=request.instructions),
    }
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
    for name in ("temperature", "top_p", "top_k", "user", "parallel_tool_calls"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": tool.model_dump(exclude={"type"}, exclude_none=True),
            }
            for tool in request.function_tools
        ]
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceFunction):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        body["tool_choice"] = choice
    if (response_format := _response_format(request)) is not None:
        body["response_format"] = response_format
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def native_body(
    request: ResponsesRequest, history_items: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The body for an upstream that serves `/v1/responses` itself (vLLM): the request
    with the conversation expanded into `input` and `store: false`, since the gateway,
    not one GPU server, keeps the state (the upstream never sees previous_response_id)."""
    body = request.model_dump(mode="json", exclude_none=True)
    body["input"] = [*(dict(item) for item in history_items), *input_items(request)]
    body["store"] = False
    body.pop("previous_response_id", None)
    return body


# --- answer -------------------------------------------------------------------------


def deleted(response_id: str) -> dict[str, Any]:
    """OpenAI's answer to `DELETE /v1/responses/{id}`."""
    return {"id": response_id, "object": "response", "deleted": True}


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


def reasoning_of(message: Mapping[str, Any]) -> str:
    """A chat message's (or delta's) reasoning: vLLM's `reasoning`, or the older
    `reasoning_content`."""
    for name in ("reasoning", "reasoning_content"):
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


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
        "tools": [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
                "strict": tool.strict,
            }
            for tool in request.function_tools
        ],
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


def first_choice(completion: Mapping[str, Any]) -> Mapping[str, Any]:
    """A chat completion's one choice ({} when the body has none, or a malformed one)."""
    choices = completion.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


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
