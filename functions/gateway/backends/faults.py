"""Which upstream failures say something about the endpoint, and whose word they are.

An endpoint is cooled down for everyone only on evidence that no single caller can forge
(docs/ROUTING.md, "Cooldowns that cannot be weaponized"):

- a failure to connect: the request never reached the server, so nothing in it caused
  this; each one is its own witness;
- a 5xx, a timeout, a dropped or malformed answer: the request reached the server and may
  have caused it (a huge `n`, a body the server chokes on), so it is the caller's key that
  witnesses it, and one key counts once however often it fails;
- backpressure (429, 503 with Retry-After, a SageMaker throttle) is not a fault: it steers
  other requests away for a while (Retry-After, capped) and never counts;
- a full connection pool in this process is this process's own load: it moves the request
  on and counts for nothing.

No aiohttp here: the routing layer imports this module, and aiohttp is loaded only by a
function that forwards.
"""

from __future__ import annotations

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError

# The witness of failures whose caller is unknown (no key id given): all of them together
# count as one caller, so an unknown caller can never cool an endpoint down alone.
UNKNOWN_CALLER = "-"
# Codes of upstream answers that ask for less traffic rather than report a fault.
BACKPRESSURE_CODES = frozenset(
    {"upstream_rate_limited", "upstream_overloaded", "upstream_http_429", "upstream_throttled"}
)


class PoolExhausted(UpstreamTimeoutError):
    """Every connection this process may hold to the endpoint stayed in use for the
    connect timeout: this process's own load, not a fault of the endpoint."""


class Unreachable(UpstreamError):
    """No connection could be made (refused, DNS, connect timeout): the request never
    reached the server."""


def is_backpressure(error: GatewayError) -> bool:
    return "Retry-After" in error.headers or error.code in BACKPRESSURE_CODES


def witness(error: GatewayError, *, tenant: str | None) -> object | None:
    """Who vouches that `error` is the endpoint's fault: a fresh object (counts alone)
    for a connection that could not be made, the caller's key for anything the request
    itself may have caused, None when it says nothing about the endpoint's health."""
    if isinstance(error, PoolExhausted) or is_backpressure(error):
        return None
    if isinstance(error, Unreachable):
        return object()
    return tenant if tenant is not None else UNKNOWN_CALLER
