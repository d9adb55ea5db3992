"""The Responses API's output, built from gpusim's chat output as vLLM's Responses serving
builds it (``ResponsesResponse.from_request``, ``build_response_output_items``, the simple
streaming processor of ``responses/streaming_events.py``); gpusim/responses.py describes
what it looks like."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import orjson

from gpusim.relay import sse_event
from gpusim.responses_input import ResponsesRequest
from gpusim.responses_store import ResponsesStore

# The context length the simulated server reports as max_output_tokens when a request
# sets none (vLLM: max_model_len - prompt tokens).
DEFAULT_MAX_MODEL_LEN = 32768


def random_uuid() -> str:
    """vLLM's ``random_uuid``: 32 hex digits."""
    return os.urandom(16).hex()


def _echo_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        return dict(tool)
    return {
        "name": tool.get("name"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
        "type": "function",
        "description": tool.get("description"),
    }


def _usage(chat_usage: Any) -> dict[str, Any] | None:
    if not isinstance(chat_usage, Mapping):
        return None
    prompt = int(chat_usage.get("prompt_tokens", 0))
    completion = int(chat_usage.get("completion_tokens") or 0)
    details = chat_usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": int(cached or 0),
            "input_tokens_per_turn": [],
            "cached_tokens_per_turn": [],
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": 0,
            "tool_output_tokens": 0,
            "output_tokens_per_turn": [],
            "tool_output_tokens_per_turn": [],
        },
        "total_tokens": prompt + completion,
    }


def output_text(text: str, logprobs: Any = None) -> dict[str, Any]:
    return {"annotations": [], "text": text, "type": "output_text", "logprobs": logprobs}


def message_item(item_id: str, content: list[Any], status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "content": content,
        "role": "assistant",
        "status": status,
        "type": "message",
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
        "type": "function_call",
        "id": item_id,
        "namespace": None,
        "status": status,
    }


def response_logprobs(entries: list[Any], top: int) -> list[dict[str, Any]]:
    """Chat logprob entries as vLLM's ``_create_response_logprobs`` writes them."""
    return [
        {
            "token": e["token"],
            "logprob": e["logprob"],
            "bytes": e["bytes"],
            "top_logprobs": [
                {"token": t["token"], "logprob": t["logprob"], "bytes": t["bytes"]}
                for t in e.get("top_logprobs", [])[:top]
            ],
        }
        for e in entries
    ]


def delta_logprobs(entries: list[Any], top: int) -> list[dict[str, Any]]:
    """The same for a text delta event (``_create_stream_response_logprobs``: no bytes)."""
    return [
        {
            "token": e["token"],
            "logprob": e["logprob"],
            "top_logprobs": [
                {"token": t["token"], "logprob": t["logprob"]} for t in e["top_logprobs"]
            ],
        }
        for e in response_logprobs(entries, top)
    ]


def output_items(
    content: str | None, tool_calls: list[Any], logprobs: list[Any] | None = None
) -> list[dict[str, Any]]:
    """vLLM's ``build_response_output_items`` for the parser's content and calls."""
    items: list[dict[str, Any]] = []
    if content:
        part = output_text(content, logprobs)
        items.append(message_item(f"msg_{random_uuid()}", [part], "completed"))
    for call in tool_calls:
        function = call.get("function") or {}
        items.append(
            function_call_item(
                f"fc_{random_uuid()}",
                str(call.get("id")),
                str(function.get("name")),
                str(function.get("arguments", "")),
                "completed",
            )
        )
    return items


class ResponseShape:
    """The ``response`` object of one request (vLLM's ``ResponsesResponse.from_request``)."""

    def __init__(self, req: ResponsesRequest) -> None:
        self.req = req
        self.id = f"resp_{random_uuid()}"
        self.created_at = int(time.time())

    def build(
        self,
        *,
        output: list[dict[str, Any]],
        status: str,
        usage: dict[str, Any] | None,
    ) -> dict[str, Any]:
        body = self.req.body
        text = body.get("text")
        max_tokens = self.req.max_output_tokens
        if max_tokens is None:
            prompt = usage["input_tokens"] if usage else 0
            max_tokens = max(DEFAULT_MAX_MODEL_LEN - prompt, 0)
        return {
            "id": self.id,
            "created_at": self.created_at,
            "incomplete_details": (
                {"reason": "max_output_tokens"} if status == "incomplete" else None
            ),
            "instructions": body.get("instructions"),
            "metadata": body.get("metadata"),
            "model": self.req.model,
            "object": "response",
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
            "temperature": _float(body.get("temperature"), 1.0),
            "tool_choice": self.req.tool_choice,
            "tools": [_echo_tool(t) for t in self.req.tools],
            "top_p": _float(body.get("top_p"), 1.0),
            "background": self.req.background,
            "max_output_tokens": max_tokens,
            "max_tool_calls": body.get("max_tool_calls"),
            "previous_response_id": self.req.previous_response_id,
            "prompt": None,
            "reasoning": body.get("reasoning"),
            "service_tier": body.get("service_tier") or "auto",
            "status": status,
            "text": None
            if text is None
            else {"format": text.get("format"), "verbosity": text.get("verbosity")},
            "top_logprobs": self.req.top_logprobs if self.req.logprobs else None,
            "truncation": body.get("truncation") or "disabled",
            "usage": usage,
            "user": body.get("user"),
            "presence_penalty": _float(body.get("presence_penalty"), 0.0),
            "frequency_penalty": _float(body.get("frequency_penalty"), 0.0),
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "input_messages": None,
            "output_messages": None,
        }


def _float(value: Any, default: float) -> float:
    """The sampling value vLLM reports: the request's, else its default."""
    return default if value is None else float(value)


def _status(finish_reason: Any) -> str:
    return "incomplete" if finish_reason == "length" else "completed"


class StreamAborted(Exception):
    """Raised to drop the connection mid-stream, as vLLM's failed error event does."""


class _ToolCallAcc:
    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.arguments = ""


class ResponsesTranslation:
    """Chat output -> Responses output (buffered body, or the event stream)."""

    def __init__(
        self,
        req: ResponsesRequest,
        *,
        messages: list[dict[str, Any]],
        store: ResponsesStore | None,
    ) -> None:
        self.shape = ResponseShape(req)
        self._messages = messages  # the rendered conversation, kept with the response
        self._store = store  # where a completed response is kept (None: not stored)
        self._seq = 0
        self._started = False
        # the simple streaming processor's state
        self._state: str | None = None  # None, "content" or "tool_call"
        self._output_index = 0
        self._item_id = ""
        self._text = ""
        self._call_id = ""
        self._call_name = ""
        self._call_index: int | None = None
        self._call_args = ""
        self._call_has_delta = False
        # the whole output, for the final response (vLLM reparses it)
        self._content = ""
        self._calls: dict[int, _ToolCallAcc] = {}
        self._finish: Any = None
        self._usage: Any = None
        self._entries: list[Any] = []  # every chat logprob entry, for the final response

    # buffered

    def completion(self, body: Mapping[str, Any]) -> bytes:
        choice = body["choices"][0]
        message = choice.get("message") or {}
        items = output_items(
            message.get("content"), message.get("tool_calls") or [], self._logprobs(choice)
        )
        response = self.shape.build(
            output=items,
            status=_status(choice.get("finish_reason")),
            usage=_usage(body.get("usage")),
        )
        self._keep(response)
        return orjson.dumps(response)

    def _keep(self, response: dict[str, Any]) -> None:
        if self._store is not None:
            self._store.put(response=response, messages=self._messages)

    def error(self, _status: int, body: Mapping[str, Any]) -> bytes:
        return orjson.dumps(body)

    def _logprobs(self, choice: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        if not self.shape.req.logprobs:
            return None
        entries = (choice.get("logprobs") or {}).get("content") or []
        return response_logprobs(entries, self.shape.req.top_logprobs)

    # streamed

    def _event(self, data: dict[str, Any]) -> bytes:
        data["sequence_number"] = self._seq
        self._seq += 1
        return sse_event(data["type"], data)

    def _opening(self) -> bytes:
        self._started = True
        initial = self.shape.build(output=[], status="in_progress", usage=None)
        return self._event({"response": initial, "type": "response.created"}) + self._event(
            {"response": initial, "type": "response.in_progress"}
        )

    def begin(self) -> bytes:
        """vLLM sends these before the engine's first output (before the prefill)."""
        return self._opening()

    def chunk(self, chunk: Mapping[str, Any]) -> bytes:
        out = b"" if self._started else self._opening()
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not choices:
            return out
        choice = choices[0]
        if choice.get("finish_reason") is not None:
            self._finish = choice["finish_reason"]
        entries = (choice.get("logprobs") or {}).get("content") or []
        self._entries.extend(entries)
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:  # vLLM skips a step with no text: its logprobs are not streamed
            self._content += content
            logprobs = delta_logprobs(entries, self.shape.req.top_logprobs)
            out += self._content_delta(content, logprobs if self.shape.req.logprobs else [])
        for group in _by_index(delta.get("tool_calls") or []):
            out += self._tool_delta(group)
        return out

    def _close(self) -> bytes:
        out = b""
        if self._state == "content":
            out += self._content_done()
        elif self._state == "tool_call":
            out += self._call_done()
        self._state = None
        return out

    def _content_delta(self, text: str, logprobs: list[dict[str, Any]]) -> bytes:
        out = b""
        if self._state != "content":
            out += self._close()
            self._state, self._item_id, self._text = "content", random_uuid(), ""
            item = message_item(self._item_id, [], "in_progress")
            out += self._event(
                {
                    "item": item,
                    "output_index": self._output_index,
                    "type": "response.output_item.added",
                }
            )
            part = {"annotations": [], "text": "", "type": "output_text", "logprobs": []}
            out += self._event(
                {
                    "content_index": 0,
                    "item_id": self._item_id,
                    "output_index": self._output_index,
                    "part": part,
                    "type": "response.content_part.added",
                }
            )
        self._text += text
        return out + self._event(
            {
                "content_index": 0,
                "delta": text,
                "item_id": self._item_id,
                "logprobs": logprobs,
                "output_index": self._output_index,
                "type": "response.output_text.delta",
            }
        )

    def _content_done(self) -> bytes:
        common = {"content_index": 0, "item_id": self._item_id, "output_index": self._output_index}
        part = output_text(self._text)
        item = message_item(self._item_id, [part] if self._text else [], "completed")
        item["summary"] = []  # vLLM passes summary=[] to ResponseOutputMessage
        out = self._event(
            {**common, "logprobs": [], "text": self._text, "type": "response.output_text.done"}
        )
        out += self._event({**common, "part": part, "type": "response.content_part.done"})
        out += self._event(
            {"item": item, "output_index": self._output_index, "type": "response.output_item.done"}
        )
        self._output_index += 1
        return out

    def _tool_delta(self, group: list[Mapping[str, Any]]) -> bytes:
        first = group[0]
        function = first.get("function") or {}
        index = first.get("index")
        out = b""
        if index is not None and "id" in first:
            self._calls[index] = _ToolCallAcc(str(first["id"]), str(function.get("name")))
        arguments = "".join((c.get("function") or {}).get("arguments") or "" for c in group)
        if index is not None and index in self._calls:
            self._calls[index].arguments += arguments
        if self._state != "tool_call" or (
            self._call_index is not None and index is not None and index != self._call_index
        ):
            out += self._close()
            self._state, self._item_id = "tool_call", random_uuid()
            self._call_id, self._call_name = f"call_{random_uuid()}", str(function.get("name"))
            self._call_index, self._call_args, self._call_has_delta = index, "", False
            item = function_call_item(
                self._item_id, self._call_id, self._call_name, "", "in_progress"
            )
            out += self._event(
                {
                    "item": item,
                    "output_index": self._output_index,
                    "type": "response.output_item.added",
                }
            )
        if arguments:
            self._call_args += arguments
            self._call_has_delta = True
            out += self._event(
                {
                    "delta": arguments,
                    "item_id": self._item_id,
                    "output_index": self._output_index,
                    "type": "response.function_call_arguments.delta",
                }
            )
        return out

    def _call_done(self) -> bytes:
        out = b""
        if self._call_has_delta:
            out += self._event(
                {
                    "arguments": self._call_args,
                    "item_id": self._item_id,
                    "name": self._call_name,
                    "output_index": self._output_index,
                    "type": "response.function_call_arguments.done",
                }
            )
        item = function_call_item(
            self._item_id, self._call_id, self._call_name, self._call_args, "completed"
        )
        out += self._event(
            {"item": item, "output_index": self._output_index, "type": "response.output_item.done"}
        )
        self._output_index += 1
        return out

    def done(self) -> bytes:
        out = (b"" if self._started else self._opening()) + self._close()
        calls = [
            {"id": c.id, "function": {"name": c.name, "arguments": c.arguments}}
            for _, c in sorted(self._calls.items())
        ]
        final = self.shape.build(
            output=output_items(
                self._content, calls, self._logprobs({"logprobs": {"content": self._entries}})
            ),
            status=_status(self._finish),
            usage=_usage(self._usage),
        )
        self._keep(final)
        return out + self._event({"response": final, "type": "response.completed"})

    def failure(self, _body: Mapping[str, Any]) -> bytes:
        raise StreamAborted("simulated generation failure: vLLM drops the stream")


def _by_index(tool_calls: list[Any]) -> list[list[Mapping[str, Any]]]:
    """vLLM's ``split_delta``: the tool-call fragments of one delta, grouped by index."""
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for call in tool_calls:
        if isinstance(call, Mapping) and call.get("function") is not None:
            groups.setdefault(call.get("index"), []).append(call)
    return list(groups.values())
