"""One request as the pipeline carries it: created by the route, passed explicitly to
every step, never looked up from anywhere else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.backends.attempts import RouteTrace
from gateway.keys import ApiKey
from gateway.metering import Meter
from gateway.models.registry import ModelConfig


@dataclass
class RequestContext:
    """The key, the model (once resolved), the Meter (the one usage record) and the route
    trace of the model's call. A guard call keeps its own trace (guard/service.py)."""

    request_id: str
    key: ApiKey
    route: str
    meter: Meter
    model: ModelConfig | None = None

    @property
    def trace(self) -> RouteTrace:
        return self.meter.trace


class Client(Protocol):
    """The caller's side of the connection, as the pipeline needs it (http.py adapts a
    Starlette request): the body, and the moment the caller goes away."""

    async def read_body(self) -> bytes:
        """The whole body; ClientDisconnected if the caller left while sending it."""
        ...

    async def wait_disconnected(self) -> None:
        """Returns when the caller has gone (never, where the server cannot tell)."""
        ...


@dataclass(frozen=True)
class RouteResult:
    """A route's answer: a body or an SSE byte stream, and headers (x-ratelimit-*)."""

    body: Mapping[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
