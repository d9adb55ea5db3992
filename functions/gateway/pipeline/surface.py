"""What an API surface (chat, completions, embeddings, ...) supplies to the pipeline: its
wire adapters. Everything else (keys, models, limits, guardrails, routing, the record)
is the pipeline's, the same for every surface."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway.backends.affinity import NO_HINT, RouteHint
from gateway.backends.routing import RoutedBackend
from gateway.backends.wire import WireRoute
from gateway.guard import GuardService, Screening
from gateway.pipeline.context import RequestContext
from gateway.tokens import TokenizerStore

Request = TypeVar("Request")


@dataclass(frozen=True)
class Plan:
    """What the count decided: the upstream's body (its `max_tokens` fixed once), the
    tokens admission reserves (the worst case), what routing may use of the prompt (its
    prefix key: backends/affinity.py), and the API the body is in when it is not the
    surface's `wire` (a model that serves the surface's API natively)."""

    body: dict[str, Any]
    reserve: int
    hint: RouteHint = NO_HINT
    wire: WireRoute | None = None


class Surface(Protocol[Request]):
    """The pipeline calls these positionally (its parameters are positional-only), so a
    surface may name a parameter it does not use `_name`."""

    # The usage record's `route`, and the models config's name for what a model serves.
    route: str
    # What the upstream is spoken to in.
    wire: WireRoute

    def parse(self, raw: bytes, /) -> Request:
        """The validated request (InvalidRequestError, a 400, names the field)."""
        ...

    def model_id(self, request: Request, /) -> str:
        """The model the request names."""
        ...

    def streams(self, request: Request, /) -> bool:
        """Whether the answer is an SSE stream."""
        ...

    async def plan(
        self, request: Request, ctx: RequestContext, tokenizers: TokenizerStore, /
    ) -> Plan:
        """Count the prompt, decide the upstream body, check the context length."""
        ...

    def screening(self, request: Request, ctx: RequestContext, guard: GuardService, /) -> Screening:
        """The request's guardrails (NO_SCREENING where the surface has none)."""
        ...

    async def forward(
        self, request: Request, ctx: RequestContext, backend: RoutedBackend, plan: Plan, /
    ) -> dict[str, Any]:
        """A buffered answer from the upstream, observed by the Meter."""
        ...

    async def answer(
        self, request: Request, ctx: RequestContext, data: Mapping[str, Any], /
    ) -> Mapping[str, Any]:
        """The client's body, after the record was written (it carries the billed usage).
        Async: a surface may keep what it answered (stored responses) before answering."""
        ...

    def relay(
        self, request: Request, ctx: RequestContext, chunks: AsyncIterator[dict[str, Any]], /
    ) -> AsyncIterator[bytes]:
        """The client's SSE frames from the upstream's (screened) chunks; the relay closes
        the Meter however the stream ends."""
        ...
