"""One routing policy over the replicas, through the gateway's own routing code.

"round-robin" sends turn after turn to the next replica; "p2c" is the gateway's weighted
power of two choices with no prefix key and no load samples (as before issue 24);
"affinity" is the gateway's router as it now runs: each request's prefix key computed
from its tokens (chat/prefix.py, as the chat surface plans it) and each replica's
/metrics sampled in the background (backends/load.py). Every request streams, and its
first chunk's time, its usage and the replica that served it are kept.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.backends.affinity import BALANCE, NO_HINT, Ring, RouteHint
from gateway.backends.attempts import RouteTrace
from gateway.backends.base import Backend
from gateway.backends.cooldowns import CooldownCache
from gateway.backends.pool import Backends
from gateway.backends.routing import RoutedBackend, Router, RoutingPolicy
from gateway.backends.wire import CHAT
from gateway.chat.prefix import route_hint
from gateway.chat.protocol import ChatCompletionRequest
from gateway.inputs import validate
from gateway.models.registry import ModelRegistry
from gateway.settings import Settings
from gateway.tokens import ChatTokenizer, TokenizerStore

from devstack.cachebench.replicas import MODEL
from devstack.cachebench.workload import Conversation

POLICIES = ("round-robin", "p2c", "affinity")


@dataclass
class Served:
    ttft: float
    prompt_tokens: int
    cached_tokens: int
    endpoint: str


@dataclass
class Run:
    policy: str
    served: list[Served] = field(default_factory=list)
    failed: int = 0
    key_seconds: float = 0.0  # spent computing prefix keys (affinity only)
    keyed: int = 0  # requests that carried a prefix key
    spilled: int = 0  # of those, served off their key's first replica on the ring


class _Untraced:
    def traced(self, backend: Backend, *, model: str, endpoint: str) -> Backend:  # noqa: ARG002
        return backend  # the EndpointTracer protocol's keywords, unused when not tracing


class _NoAws:
    sagemaker_config: Any = None
    sagemaker_runtime: Any = None


def _backends(
    urls: list[str], tokenizers_dir: Path, *, affinity: bool, balance: float
) -> tuple[Backends, ModelRegistry]:
    endpoints = [{"type": "openai", "base_url": url, "name": f"r{n}"} for n, url in enumerate(urls)]
    model = {"id": MODEL, "tokenizer": MODEL, "endpoints": endpoints}
    registry = ModelRegistry.from_json(json.dumps({"models": [model]}))
    policy = RoutingPolicy(
        affinity=affinity, load_sample_seconds=1.0 if affinity else 0.0, balance=balance
    )
    router = Router(policy=policy, cooldowns=CooldownCache(store=None, ttl=5))
    settings = Settings(tokenizers_dir=tokenizers_dir)
    backends = Backends(
        settings=settings, registry=registry, router=router, tracer=_Untraced(), aws=_NoAws()
    )
    return backends, registry


class Driver:
    def __init__(
        self, policy: str, urls: list[str], tokenizers_dir: Path, *, balance: float = BALANCE
    ) -> None:
        self.run = Run(policy)
        self._backends, registry = _backends(
            urls, tokenizers_dir, affinity=policy == "affinity", balance=balance
        )
        model = registry.get(MODEL)
        assert model is not None
        self._routed: RoutedBackend = self._backends.for_model(model, CHAT)
        # Round-robin: each replica alone behind a RoutedBackend, so its first chunk is
        # awaited (and timed) exactly as the routed policies' are.
        self._next = itertools.cycle(
            [(RoutedBackend(router=self._backends.router, tiers=[[t]]), t.label)
             for t in self._routed.targets]
        )  # fmt: skip
        targets = self._routed.targets
        self._ring = Ring([t.state.name for t in targets], [t.state.weight for t in targets])
        self._names = [t.state.name for t in targets]
        self._tokenizer: ChatTokenizer = TokenizerStore(
            Settings(tokenizers_dir=tokenizers_dir)
        ).get(MODEL)

    async def close(self) -> None:
        await self._backends.close()

    async def conversation(self, talk: Conversation, *, started: float, think: float) -> None:
        await asyncio.sleep(max(0.0, started + talk.start - time.monotonic()))
        messages: list[dict[str, str]] = [{"role": "system", "content": talk.system}]
        for question in talk.questions:
            messages.append({"role": "user", "content": question})
            answer = await self._turn(messages)
            if answer is None:
                return
            messages.append({"role": "assistant", "content": answer})
            await asyncio.sleep(think)

    async def _turn(self, messages: list[dict[str, str]]) -> str | None:
        body = {
            "model": MODEL,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        keyed = time.monotonic()
        hint = await self._hint(body)
        begun = time.monotonic()
        self.run.key_seconds += begun - keyed
        try:
            chunks, endpoint = await self._open(body, hint)
            ttft = time.monotonic() - begun
            text, usage = await _drain(chunks)
        except Exception:  # noqa: BLE001 - counted; the table says how many failed
            self.run.failed += 1
            return None
        if hint.prefix is not None:
            self.run.keyed += 1
            self.run.spilled += endpoint != self._names[next(self._ring.walk(hint.prefix))]
        details = usage.get("prompt_tokens_details") or {}
        self.run.served.append(
            Served(ttft, usage["prompt_tokens"], details.get("cached_tokens") or 0, endpoint)
        )
        return text

    async def _hint(self, body: dict[str, Any]) -> RouteHint:
        """The prefix key, as the chat surface's plan computes it. Its time is kept apart
        from TTFT: here one event loop computes every request's key, where each Lambda
        instance computes only its own, so queueing behind the others' keys is the
        bench's artefact, not the gateway's (the key's own cost is reported). The key is
        computed in a worker thread, for the same reason: inline, every key's render
        stalled the other conversations' streams on this loop, whose first chunks were
        then timed late (on a loaded machine, affinity's TTFT p50 went above P2C's)."""
        if self.run.policy != "affinity":
            return NO_HINT
        request = validate(ChatCompletionRequest, body)
        return await asyncio.to_thread(_key_alone, self._tokenizer, request)

    async def _open(self, body: dict[str, Any], hint: RouteHint) -> tuple[Any, str]:
        if self.run.policy == "round-robin":
            alone, label = next(self._next)
            return await alone.open_stream(body), label
        trace = RouteTrace()
        chunks = await self._routed.open_stream(body, trace=trace, hint=hint)
        return chunks, trace.endpoint or "?"


def _key_alone(tokenizer: ChatTokenizer, request: ChatCompletionRequest) -> RouteHint:
    """route_hint on a loop of its own (a worker thread's), as a Lambda instance computes
    only its own request's key."""
    return asyncio.run(route_hint(tokenizer, request))


async def _drain(chunks: Any) -> tuple[str, dict[str, Any]]:
    parts: list[str] = []
    usage: dict[str, Any] = {}
    async for chunk in chunks:
        for choice in chunk.get("choices") or ():
            parts.append((choice.get("delta") or {}).get("content") or "")
        usage = chunk.get("usage") or usage
    return "".join(parts), usage
