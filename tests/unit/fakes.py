"""In-memory fakes for the unit tier: no sockets, no DynamoDB, no tokenizer files.

The fake tokenizer counts whitespace-separated words (and renders a chat as `role: text`
lines); the fake backend replays scripted chunks or bodies, httpx-MockTransport style.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.errors import GatewayError
from gateway.guard import GuardService
from gateway.keys import ApiKey
from gateway.limits import Admission
from gateway.limits.concurrency import KeyConcurrency
from gateway.models.registry import ModelConfig, ModelRegistry
from gateway.pipeline import Pipeline, RouteResult
from gateway.tokens.errors import TemplateRefused
from gateway.usage import UsageRecord


def api_key(**overrides: Any) -> ApiKey:
    values: dict[str, Any] = {
        "key_id": "key_unit",
        "key_hash": "0" * 64,
        "name": "unit",
        "owner": "tests",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return ApiKey(**{**values, **overrides})


def model(model_id: str = "m", **overrides: Any) -> ModelConfig:
    data = {
        "id": model_id,
        "tokenizer": "fake",
        "upstream": {"type": "openai", "base_url": "http://upstream.invalid"},
        **overrides,
    }
    return ModelConfig.model_validate(data)


class FakeTokenizer:
    has_chat_template = True
    copies_contents_whole = True  # its template cuts no content: assistant turns bound too

    def __init__(self) -> None:
        self.counted = 0  # count_chat calls

    def count_text(self, text: str) -> int:
        return len(text.split())

    def lower_bound(self, texts: Sequence[str]) -> int:
        return sum(len(t.split()) // 2 for t in texts)  # half the words: a true lower bound

    def each_lower_bound(self, texts: Sequence[str], *, over_chars: int) -> list[int]:
        return [self.lower_bound([t]) for t in texts] if sum(map(len, texts)) > over_chars else []

    def count_text_with_special(self, text: str) -> int:
        return self.count_text(text) + 1  # + a BOS, as /v1/completions and embeddings count

    def count_chat(
        self, messages: Sequence[dict[str, Any]], tools: Any = None, *, template_kwargs: Any = None
    ) -> int:
        self.counted += 1
        rendered = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in messages)
        if "raise" in rendered:
            raise TemplateRefused("Conversation roles must alternate")
        if "crash" in rendered:
            raise TypeError("a bug in counting")
        return self.count_text(rendered) + 1  # + the generation prompt


class FakeTokenizers:
    def __init__(self) -> None:
        self.tokenizer = FakeTokenizer()

    def loaded(self, spec: str) -> FakeTokenizer:
        return self.tokenizer

    def get(self, spec: str) -> FakeTokenizer:
        return self.tokenizer


@dataclass
class RecordingSink:
    """Keeps every record written, with the admission it settled."""

    records: list[UsageRecord] = field(default_factory=list)
    admissions: list[Admission | None] = field(default_factory=list)

    async def write(self, record: UsageRecord, *, admission: Admission | None) -> None:
        await asyncio.sleep(0)  # a real write awaits: a cancellation point
        self.records.append(record)
        self.admissions.append(admission)


@dataclass
class NullTelemetry:
    mismatches: int = 0

    def completed(self, record: UsageRecord, *, mismatch: bool) -> None:
        self.mismatches += mismatch


def chunk(content: str | None = None, *, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


@dataclass
class FakeBackend:
    """Replays `chunks` for streams (raising `fail_after` chunks if set) or `body`."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    body: dict[str, Any] | None = None
    error: Exception | None = None
    fail_with: GatewayError | None = None
    fail_after: int | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)
    closed: int = 0

    async def complete(
        self, body: dict[str, Any], *, trace: Any = None, tenant: Any = None, hint: Any = None
    ) -> dict[str, Any]:
        self.sent.append(body)
        if self.error is not None:
            raise self.error
        assert self.body is not None
        return self.body

    async def open_stream(
        self, body: dict[str, Any], *, trace: Any = None, tenant: Any = None, hint: Any = None
    ) -> AsyncIterator[dict[str, Any]]:
        self.sent.append(body)
        if self.error is not None:
            raise self.error
        return self._stream()

    async def _stream(self) -> AsyncIterator[dict[str, Any]]:
        try:
            for position, item in enumerate(self.chunks):
                if self.fail_after is not None and position == self.fail_after:
                    assert self.fail_with is not None
                    raise self.fail_with
                await asyncio.sleep(0)
                yield item
        finally:
            self.closed += 1


def registry(*models: ModelConfig) -> ModelRegistry:
    return ModelRegistry(list(models) or [model()])


class FakeBackends:
    """The pipeline's Backends, answering every model and route with `backend` and noting
    each route asked for in `routes`."""

    def __init__(self, backend: Any, routes: list[Any] | None = None) -> None:
        self.backend = backend
        self.routes = routes if routes is not None else []

    def for_model(self, config: Any, route: Any) -> Any:
        self.routes.append(route)
        return self.backend


class FakeClient:
    """The pipeline's Client over a body reader; it never leaves unless told to."""

    def __init__(self, read_body: Callable[[], Any]) -> None:
        self._read_body = read_body
        self.gone = asyncio.Event()

    async def read_body(self) -> bytes:
        body: bytes = await self._read_body()
        return body

    async def wait_disconnected(self) -> None:
        await self.gone.wait()


def pipeline(
    config: ModelConfig,
    sink: RecordingSink,
    backend: Any,
    *,
    tokenizers: Any = None,
    limits: Any = None,
    routes: list[Any] | None = None,
    models: Sequence[ModelConfig] = (),
    max_concurrency: int = 64,
) -> Pipeline:
    """The pipeline over fakes: one model (and `models`), the fake tokenizer unless given,
    every model served by `backend`."""
    tokenizers = tokenizers or FakeTokenizers()
    models_registry = ModelRegistry([config, *models])
    backends = FakeBackends(backend, routes)
    return Pipeline(
        registry=models_registry,
        tokenizers=tokenizers,
        backends=backends,  # type: ignore[arg-type]
        guard=GuardService(registry=models_registry, backends=backends, tokenizers=tokenizers),  # type: ignore[arg-type]
        limits=limits,
        concurrency=KeyConcurrency(default_limit=max_concurrency),
        sink=sink,
        telemetry=NullTelemetry(),
    )


@dataclass
class Served:
    """A surface run through a pipeline, called as a route calls it."""

    pipeline: Pipeline
    surface: Any

    def __getattr__(self, name: str) -> Any:  # the surface's own helpers (upstream_body)
        return getattr(self.surface, name)

    async def create(
        self, read_body: Callable[[], Any], *, key: ApiKey, request_id: str
    ) -> RouteResult:
        client = FakeClient(read_body)
        return await self.pipeline.run(self.surface, client, key=key, request_id=request_id)
