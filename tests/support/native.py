"""A gateway with one model twice over the same simulated GPU server: `qwen3`, translated to
chat completions (the default), and `qwen3-native`, whose upstream serves the Responses and
Messages APIs itself (`native_routes`). The server is wrapped to note the path of each
request it gets, so a test can tell which API the gateway spoke."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import Gateway, running_gateway
from tests.support.servers import serve_asgi

TRANSLATED = "qwen3"
NATIVE = "qwen3-native"


@dataclass
class PathLog:
    """An ASGI wrapper that notes each HTTP request's path, then serves it unchanged."""

    app: Any
    paths: list[str] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)

    def generation_paths(self) -> list[str]:
        """The paths of generation requests (not the load sampler's /metrics)."""
        return [p for p in self.paths if p.startswith("/v1/")]


@dataclass
class NativeStack:
    gateway: Gateway
    sim: PathLog


def models_config(sim_url: str) -> str:
    upstream = {"type": "openai", "base_url": sim_url, "model": "qwen3"}
    models = [
        {"id": TRANSLATED, "tokenizer": "qwen3", "upstream": upstream},
        {
            "id": NATIVE,
            "tokenizer": "qwen3",
            "upstream": upstream,
            "native_routes": ["responses", "messages"],
        },
    ]
    return json.dumps({"models": models})


@contextmanager
def native_stack(tokenizers_dir: Path) -> Iterator[NativeStack]:
    from gpusim import SimConfig, create_app

    sim = PathLog(create_app(SimConfig(tokenizers_dir=tokenizers_dir)))
    with (
        serve_asgi(sim) as sim_url,
        running_gateway(tokenizers_dir, sim_url, models_config=models_config(sim_url)) as gw,
    ):
        yield NativeStack(gateway=gw, sim=sim)


_IDS = re.compile(r"\b(resp|msg|fc|rs|call|toolu|chatcmpl-tool)_[0-9A-Za-z_-]+|chatcmpl-tool-\w+")


def comparable(value: Any, *, request_id: str, model: str) -> Any:
    """`value` with what differs between two requests of one conversation made alike:
    the request's own ids (and the ids derived from them), call ids, the model's public
    id and timestamps."""
    text = json.dumps(value).replace(request_id, "REQUEST").replace(f'"{model}"', '"MODEL"')
    data = json.loads(_IDS.sub("ID", text))
    return _without_times(data)


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k != "created_at"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def record_fields(record: Any) -> dict[str, Any]:
    """What a usage record says of a request's outcome and billing (not its ids or times)."""
    names = (
        "route",
        "status",
        "http_status",
        "stream",
        "prompt_tokens",
        "completion_tokens",
        "upstream_prompt_tokens",
        "upstream_completion_tokens",
        "gateway_prompt_tokens",
        "gateway_completion_tokens",
        "cached_tokens",
        "finish_reason",
        "error",
        "flags",
    )
    return {name: getattr(record, name) for name in names}


def outcome(record: Any) -> dict[str, Any]:
    """`record_fields` less `cached_tokens`: vLLM's Responses and Messages usage always report
    cached tokens (0), its chat usage only with --enable-prompt-tokens-details, and the
    record keeps what the upstream said."""
    return {k: v for k, v in record_fields(record).items() if k != "cached_tokens"}
