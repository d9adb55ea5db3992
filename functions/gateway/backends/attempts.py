"""Which endpoint served a request, and in how many attempts: for its usage record.

The Meter begins a `RouteTrace` when the request begins (in the request's task); the
routed backend, called later in the same task, fills it in. A ContextVar carries it, so
neither the Backend protocol nor the services change; tasks started by the request (the
embeddings batches) inherit the same trace object.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

_CURRENT: ContextVar[RouteTrace | None] = ContextVar("gateway_route_trace", default=None)


@dataclass
class RouteTrace:
    # The endpoint that served the request (or the last one tried, if none did).
    endpoint: str | None = None
    # Attempts made across the model's endpoints and fallbacks (0: none was routed).
    attempts: int = 0
    failovers: int = 0


def begin() -> RouteTrace:
    """A fresh trace for the request running in this context."""
    trace = RouteTrace()
    _CURRENT.set(trace)
    return trace


def current() -> RouteTrace:
    """The running request's trace (a throwaway one outside a metered request)."""
    trace = _CURRENT.get()
    return trace if trace is not None else RouteTrace()
