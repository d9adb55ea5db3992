"""A Responses API request as a chat-completions body.

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

The answer's way back is answer.py (a buffered completion) and stream.py (a stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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
    not one GPU server, keeps the state (the upstream never sees previous_response_id).
    Fields the gateway does not know are not forwarded, as on the translated path."""
    body = request.model_dump(
        mode="json", exclude_none=True, exclude=set(request.model_extra or ())
    )
    body["input"] = [*(dict(item) for item in history_items), *input_items(request)]
    body["store"] = False
    body.pop("previous_response_id", None)
    return body


# --- answer -------------------------------------------------------------------------


def deleted(response_id: str) -> dict[str, Any]:
    """OpenAI's answer to `DELETE /v1/responses/{id}`."""
    return {"id": response_id, "object": "response", "deleted": True}
