"""Parse and validate a chat-completions request body (cheaply, without pydantic)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpusim.config import SimConfig
from gpusim.errors import RequestError

MAX_N = 128


@dataclass(frozen=True)
class SimOptions:
    """Per-request behaviour, from config defaults and the body's ``sim`` object."""

    ttft_ms: float
    tpot_ms: float
    completion_tokens: int
    fail_status: int | None = None
    fail_after_tokens: int | None = None
    retry_after: float | None = None
    hang: bool = False
    omit_usage: bool = False
    # How many tool calls the model makes under tool_choice "auto" (0: it answers in text);
    # under "required" it makes max(1, this) calls.
    tool_calls: int = 0


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[Any]
    stream: bool
    include_usage: bool
    n: int
    max_tokens: int | None
    min_tokens: int
    ignore_eos: bool
    stop: tuple[str, ...]
    seed: int
    tools: Any
    tool_choice: Any
    parallel_tool_calls: bool
    logprobs: bool
    top_logprobs: int
    response_format: str  # "text", "json_object" or "json_schema"
    json_schema: Any
    chat_template: str | None
    add_generation_prompt: bool
    template_kwargs: dict[str, Any] | None
    sim: SimOptions
    # vLLM's extra fields: the prefix-cache salt (enters the first block's hash) and the
    # scheduling priority (lower runs first, with --scheduling-policy priority).
    cache_salt: str | None = None
    priority: int = 0


def _bad(message: str, param: str | None = None) -> RequestError:
    return RequestError(400, message, param=param)


def _int(body: Mapping[str, Any], key: str, minimum: int, default: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{key} must be an integer", key)
    if value < minimum:
        raise _bad(f"{key} must be at least {minimum}, got {value}", key)
    return value


def _number(body: Mapping[str, Any], key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _bad(f"sim.{key} must be a number >= 0", f"sim.{key}")
    return float(value)


def _bool(body: Mapping[str, Any], key: str, default: bool, prefix: str = "") -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(f"{prefix}{key} must be a boolean", f"{prefix}{key}")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _bad("stop must be a string or a list of strings", "stop")
    return tuple(s for s in value if s)


def _cache_salt(body: Mapping[str, Any]) -> str | None:
    salt = body.get("cache_salt")
    if salt is not None and (not isinstance(salt, str) or not salt):
        # vLLM's protocol validator, word for word
        raise _bad("Parameter 'cache_salt' must be a non-empty string if provided.", "cache_salt")
    return salt


def _priority(body: Mapping[str, Any]) -> int:
    value = body.get("priority", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad("priority must be an integer", "priority")
    return value


def parse_sim(raw: Any, config: SimConfig) -> SimOptions:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _bad("sim must be an object", "sim")
    fail_status = _int(raw, "fail_status", 100, None)
    if fail_status is not None and not 400 <= fail_status <= 599:
        raise _bad("sim.fail_status must be an HTTP error status (400-599)", "sim.fail_status")
    retry_after = raw.get("retry_after")
    return SimOptions(
        ttft_ms=_number(raw, "ttft_ms", config.ttft_ms),
        tpot_ms=_number(raw, "tpot_ms", config.tpot_ms),
        completion_tokens=_int(raw, "completion_tokens", 1, config.completion_tokens)
        or config.completion_tokens,
        fail_status=fail_status,
        fail_after_tokens=_int(raw, "fail_after_tokens", 0, None),
        retry_after=None if retry_after is None else _number(raw, "retry_after", 0.0),
        hang=_bool(raw, "hang", False, "sim."),
        omit_usage=_bool(raw, "omit_usage", False, "sim."),
        tool_calls=_int(raw, "tool_calls", 0, 0) or 0,
    )


def _tool_choice(body: Mapping[str, Any]) -> Any:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is not None and not isinstance(tools, list):
        raise _bad("tools must be a list", "tools")
    if choice is None:
        return "auto" if tools else "none"
    if choice in ("none", "auto", "required"):
        if choice != "none" and not tools:
            raise _bad("When using `tool_choice`, `tools` must be set.", "tool_choice")
        return choice
    function = choice.get("function") if isinstance(choice, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str):
        raise _bad("Invalid tool_choice", "tool_choice")
    names = [t.get("function", {}).get("name") for t in tools or [] if isinstance(t, Mapping)]
    if name not in names:
        raise _bad(f"Tool '{name}' has not been passed in `tools`.", "tool_choice")
    return choice


def _response_format(body: Mapping[str, Any]) -> tuple[str, Any]:
    value = body.get("response_format")
    if value is None:
        return "text", None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise _bad("response_format.type must be text, json_object or json_schema")
    schema = value.get("json_schema") if kind == "json_schema" else None
    if kind == "json_schema" and not isinstance(schema, Mapping):
        raise _bad("response_format.json_schema is required", "response_format")
    return kind, (schema or {}).get("schema")


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model is required", "model")
    return model


def _messages(body: Mapping[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", "messages")
    return messages


def _include_usage(body: Mapping[str, Any], stream: bool) -> bool:
    options = body.get("stream_options")
    if options is not None and not stream:
        raise _bad("Stream options can only be defined when `stream=True`.", "stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise _bad("stream_options must be an object", "stream_options")
    return _bool(options or {}, "include_usage", False, "stream_options.")


def _n(body: Mapping[str, Any]) -> int:
    n = _int(body, "n", 1, 1) or 1
    if n > MAX_N:
        raise _bad(f"n must be at most {MAX_N}", "n")
    return n


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    # vLLM: max_completion_tokens wins over the deprecated max_tokens
    max_tokens = _int(body, "max_completion_tokens", 1, None)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, None)
    return max_tokens


def _seed(body: Mapping[str, Any]) -> int:
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("seed must be an integer", "seed")
    return seed or 0


def _chat_template(body: Mapping[str, Any]) -> str | None:
    chat_template = body.get("chat_template")
    if chat_template is not None and not isinstance(chat_template, str):
        raise _bad("chat_template must be a string", "chat_template")
    return chat_template


def _logprobs(body: Mapping[str, Any]) -> tuple[bool, int]:
    """(logprobs, top_logprobs)."""
    top_logprobs = _int(body, "top_logprobs", 0, 0) or 0
    logprobs = _bool(body, "logprobs", False)
    if top_logprobs > 20 or (top_logprobs and not logprobs):
        raise _bad("top_logprobs must be 0-20, and needs logprobs", "top_logprobs")
    return logprobs, top_logprobs


def _template_kwargs(body: Mapping[str, Any]) -> dict[str, Any] | None:
    template_kwargs = body.get("chat_template_kwargs")
    if template_kwargs is not None and not isinstance(template_kwargs, Mapping):
        raise _bad("chat_template_kwargs must be an object", "chat_template_kwargs")
    return dict(template_kwargs) if template_kwargs else None


def parse_request(body: Any, config: SimConfig) -> ChatRequest:
    """Validate a decoded body; the model's existence is checked by the caller. The fields
    are checked in this order, so that a body with several faults gets the first one's
    error."""
    if not isinstance(body, Mapping):
        raise _bad("the request body must be a JSON object")
    model = _model(body)
    messages = _messages(body)
    stream = _bool(body, "stream", False)
    include_usage = _include_usage(body, stream)
    n = _n(body)
    max_tokens = _max_tokens(body)
    seed = _seed(body)
    chat_template = _chat_template(body)
    logprobs, top_logprobs = _logprobs(body)
    response_format, json_schema = _response_format(body)
    template_kwargs = _template_kwargs(body)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        n=n,
        max_tokens=max_tokens,
        min_tokens=_int(body, "min_tokens", 0, 0) or 0,
        ignore_eos=_bool(body, "ignore_eos", False),
        stop=_stop(body.get("stop")),
        seed=seed,
        tools=body.get("tools"),
        tool_choice=_tool_choice(body),
        parallel_tool_calls=_bool(body, "parallel_tool_calls", True),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        response_format=response_format,
        json_schema=json_schema,
        chat_template=chat_template,
        add_generation_prompt=_bool(body, "add_generation_prompt", True),
        template_kwargs=template_kwargs,
        sim=parse_sim(body.get("sim"), config),
        cache_salt=_cache_salt(body),
        priority=_priority(body),
    )
