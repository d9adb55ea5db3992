"""The one request pipeline every metered route runs (pipeline.py), the request context
it carries (context.py), what a surface supplies (surface.py), the relays of the answer:
OpenAI's chunks as they come (sse.py) or translated into another API's events (events.py),
and the reading of chat answers those translations share (chat_reading.py)."""

from gateway.pipeline.context import Client, RequestContext, RouteResult
from gateway.pipeline.pipeline import Pipeline, echo_id
from gateway.pipeline.sse import MeteredStream, StreamKind, billed_usage, relay
from gateway.pipeline.surface import Plan, Surface

__all__ = [
    "Client",
    "MeteredStream",
    "Pipeline",
    "Plan",
    "RequestContext",
    "RouteResult",
    "StreamKind",
    "Surface",
    "billed_usage",
    "echo_id",
    "relay",
]
