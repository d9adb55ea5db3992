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
    chat_template: str | None
    add_generation_prompt: bool
    template_kwargs: dict[str, Any] | None
    sim: SimOptions


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
    )


def parse_request(body: Any, config: SimConfig) -> ChatRequest:
    """Validate a decoded body; the model's existence is checked by the caller."""
    if not isinstance(body, Mapping):
        raise _bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model is required", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list", "messages")
    stream = _bool(body, "stream", False)
    options = body.get("stream_options")
    if options is not None and not stream:
        raise _bad("Stream options can only be defined when `stream=True`.", "stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise _bad("stream_options must be an object", "stream_options")
    include_usage = _bool(options or {}, "include_usage", False, "stream_options.")
    n = _int(body, "n", 1, 1) or 1
    if n > MAX_N:
        raise _bad(f"n must be at most {MAX_N}", "n")
    # vLLM: max_completion_tokens wins over the deprecated max_tokens
    max_tokens = _int(body, "max_completion_tokens", 1, None)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, None)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _bad("seed must be an integer", "seed")
    chat_template = body.get("chat_template")
    if chat_template is not None and not isinstance(chat_template, str):
        raise _bad("chat_template must be a string", "chat_template")
    template_kwargs = body.get("chat_template_kwargs")
    if template_kwargs is not None and not isinstance(template_kwargs, Mapping):
        raise _bad("chat_template_kwargs must be an object", "chat_template_kwargs")
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
        seed=seed or 0,
        tools=body.get("tools"),
        chat_template=chat_template,
        add_generation_prompt=_bool(body, "add_generation_prompt", True),
        template_kwargs=dict(template_kwargs) if template_kwargs else None,
        sim=parse_sim(body.get("sim"), config),
    )
