"""Anthropic's error shape for the gateway's errors on the Messages routes:
`{"type": "error", "error": {"type", "message"}, "request_id"}`, with the status the
gateway gives the error. Types by status, as Anthropic's API reference lists them
(docs "Errors"; the `anthropic` SDK's ErrorType)."""

from __future__ import annotations

from typing import Any

from gateway.errors import GatewayError

STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status: other 4xx are invalid requests, other
    5xx (a 502 from a failed upstream) are api errors."""
    if status in STATUS_TYPES:
        return STATUS_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(error: GatewayError, *, request_id: str | None = None) -> dict[str, Any]:
    """The error as Anthropic sends it, the body of the response (status
    `error.status_code`, headers `error.headers`) or of a stream's `error` event."""
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": error_type(error.status_code), "message": error.message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body
