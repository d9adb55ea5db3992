"""A gateway process's routing, alone: `python -m tests.support.affinity_probe TOKENIZERS
URL...` reads conversations (JSON lists of messages) from stdin, routes each turn as the
chat surface does (its prefix key, chat/prefix.py; the model's RoutedBackend from
Backends, backends/pool.py) to the replicas at URL..., and prints the endpoint that
served each turn, one JSON list per conversation. Two of these share nothing but their
input."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.backends.attempts import RouteTrace
from gateway.backends.cooldowns import CooldownCache
from gateway.backends.pool import Backends
from gateway.backends.routing import Router, RoutingPolicy
from gateway.backends.wire import CHAT
from gateway.chat.prefix import route_hint
from gateway.chat.protocol import ChatCompletionRequest
from gateway.inputs import validate
from gateway.models.registry import ModelRegistry
from gateway.observability.tracing import Tracing
from gateway.settings import Settings
from gateway.tokens import TokenizerStore

MODEL = "qwen3"


async def route(tokenizers: Path, urls: list[str], talks: list[list[dict[str, Any]]]) -> None:
    endpoints = [{"type": "openai", "base_url": u, "name": f"r{n}"} for n, u in enumerate(urls)]
    config = {"models": [{"id": MODEL, "tokenizer": MODEL, "endpoints": endpoints}]}
    registry = ModelRegistry.from_json(json.dumps(config))
    settings = Settings(tokenizers_dir=tokenizers)
    router = Router(policy=RoutingPolicy(), cooldowns=CooldownCache(store=None, ttl=5))
    backends = Backends(
        settings=settings, registry=registry, router=router, tracer=Tracing(), aws=None
    )
    model = registry.get(MODEL)
    assert model is not None
    routed = backends.for_model(model, CHAT)
    tokenizer = TokenizerStore(settings).get(MODEL)
    try:
        for talk in talks:
            served = []
            ends = [n + 1 for n, message in enumerate(talk) if message["role"] == "user"]
            for end in ends:  # each turn: the messages up to its user message
                body = {"model": MODEL, "messages": talk[:end], "max_tokens": 4}
                hint = await route_hint(tokenizer, validate(ChatCompletionRequest, body))
                trace = RouteTrace()
                await routed.complete(body, trace=trace, hint=hint)
                served.append(trace.endpoint)
            sys.stdout.write(json.dumps(served) + "\n")
    finally:
        await backends.close()


if __name__ == "__main__":
    asyncio.run(route(Path(sys.argv[1]), sys.argv[2:], json.loads(sys.stdin.read())))
