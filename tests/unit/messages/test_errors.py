"""The gateway's errors in Anthropic's shape, with Anthropic's types by status, valid
under Anthropic's published ErrorResponse (but 413's request_too_large, which Anthropic
documents and the SDK's union does not list)."""

from __future__ import annotations

import pytest
from gateway.errors import (
    AuthenticationError,
    DependencyError,
    GatewayError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.messages.errors import error_body

from tests.conformance import validate_anthropic_error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequestError("bad"), "invalid_request_error"),
        (AuthenticationError("bad"), "authentication_error"),
        (PermissionDeniedError("bad"), "permission_error"),
        (NotFoundError("bad"), "not_found_error"),
        (RateLimitError("bad"), "rate_limit_error"),
        (InternalError("bad"), "api_error"),
        (UpstreamError("bad"), "api_error"),  # 502
        (DependencyError("bad"), "overloaded_error"),  # 503
        (UpstreamError("bad", status_code=529), "overloaded_error"),
        (UpstreamTimeoutError("bad"), "timeout_error"),  # 504
    ],
)
def test_types_by_status(error: GatewayError, kind: str) -> None:
    body = error_body(error, request_id="req_1")
    assert body == {
        "type": "error",
        "error": {"type": kind, "message": "bad"},
        "request_id": "req_1",
    }
    validate_anthropic_error(body)


def test_request_too_large() -> None:
    body = error_body(RequestTooLargeError("too big"))
    assert body == {"type": "error", "error": {"type": "request_too_large", "message": "too big"}}
