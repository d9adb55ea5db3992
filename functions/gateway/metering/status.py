"""How a failed request's record is labelled (`status`), from the error it failed with."""

from __future__ import annotations

from gateway.errors import (
    ClientDisconnected,
    DependencyError,
    GatewayError,
    GuardUnavailableError,
    InternalError,
    RateLimitError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.usage import UsageStatus


def status_for(error: GatewayError) -> UsageStatus:
    if isinstance(error, ClientDisconnected):
        return UsageStatus.CLIENT_DISCONNECTED
    if isinstance(error, UpstreamTimeoutError):
        return UsageStatus.UPSTREAM_TIMEOUT
    if isinstance(error, UpstreamError) or error.code == "upstream_rejected_request":
        return UsageStatus.UPSTREAM_ERROR
    if isinstance(error, RateLimitError):
        return UsageStatus.RATE_LIMITED
    if isinstance(error, InternalError):
        return UsageStatus.INTERNAL_ERROR
    if isinstance(error, DependencyError | GuardUnavailableError):
        return UsageStatus.UNAVAILABLE
    return UsageStatus.REJECTED
