"""What a model that serves the Responses or Messages API natively (`native_routes`) must
be, checked when the models config loads (models/registry.py): each problem is a sentence
naming the model and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from gateway.errors import ConfigurationError

# The APIs an upstream may serve itself (vLLM's /v1/responses and /v1/messages), of those
# the gateway otherwise translates to chat completions.
NativeRoute = Literal["responses", "messages"]


class Endpoint(Protocol):
    @property
    def type(self) -> str: ...


class NativeModel(Protocol):
    """What the checks read of a model (models/registry.py's ModelConfig)."""

    @property
    def id(self) -> str: ...
    @property
    def native_routes(self) -> tuple[str, ...]: ...
    @property
    def routes(self) -> tuple[str, ...]: ...
    @property
    def endpoints(self) -> tuple[Endpoint, ...]: ...
    @property
    def fallbacks(self) -> tuple[str, ...]: ...
    @property
    def prefix_cache_isolation(self) -> str: ...
    @property
    def priority_scheduling(self) -> bool: ...


def check_model(model: NativeModel) -> None:
    """A ValueError if the model's native routes cannot be served: they need an HTTP server
    for that API behind every endpoint, prompts that count over the chat template, and
    nothing the gateway sets only in a chat body (vLLM's Responses and Messages serving
    take no cache_salt or priority: the isolation would be lost silently)."""
    if not model.native_routes:
        return
    where = f"model {model.id!r}: native_routes"
    if "chat" not in model.routes:
        raise ValueError(f"{where} needs `chat` in routes (prompts count over its template)")
    if any(endpoint.type != "openai" for endpoint in model.endpoints):
        raise ValueError(f"{where} needs every endpoint of type `openai` (an HTTP server)")
    if model.prefix_cache_isolation != "none" or model.priority_scheduling:
        raise ValueError(
            f"{where} cannot be combined with prefix_cache_isolation or "
            "priority_scheduling: the native APIs do not carry cache_salt or priority"
        )


def check_fallbacks(model: NativeModel, models: Mapping[str, NativeModel]) -> None:
    """A ConfigurationError unless every fallback serves each of the model's native routes
    natively too: it is sent the same body, in the same API."""
    for route in model.native_routes:
        others = [f for f in model.fallbacks if route not in models[f].native_routes]
        if others:
            raise ConfigurationError(
                f"model {model.id!r} serves {route} natively but its fallbacks {others} "
                f"do not: list {route!r} in their native_routes too"
            )
