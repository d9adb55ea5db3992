"""The gateway's exceptions and OpenAI's error envelope.

Every failure, streamed ones included, leaves the gateway as
`{"error": {"message", "type", "param", "code"}}` with the status of its class.
"""

from __future__ import annotations

from typing import Any, NotRequired

import orjson
from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' on Python < 3.12


@with_config(ConfigDict(use_attribute_docstrings=True))
class ErrorDetail(TypedDict):
    message: str
    """What went wrong, and what to do about it."""
    type: str
    """OpenAI's error type, e.g. `invalid_request_error`, `rate_limit_error`."""
    param: str | None
    """The request parameter at fault, if one is."""
    code: str | int | None
    """A machine-readable code, e.g. `invalid_api_key`, `rate_limit_exceeded`."""
    # --- not OpenAI's: the guardrails' (guard/) ---
    categories: NotRequired[list[str]]
    """With code `content_filter`: the guard's categories that blocked the request."""


@with_config(ConfigDict(use_attribute_docstrings=True))
class ErrorResponse(TypedDict):
    """OpenAI's error envelope: every failure, a stream's last event included."""

    error: ErrorDetail
    """OpenAI's error envelope."""


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status_code: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def to_dict(self) -> ErrorResponse:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


class InvalidRequestError(GatewayError):
    status_code = 400
    type = "invalid_request_error"


class RequestTooLargeError(GatewayError):
    status_code = 413
    type = "invalid_request_error"
    code = "request_too_large"


class AuthenticationError(GatewayError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status_code = 403
    type = "permission_error"
    code = "model_not_allowed"


class NotFoundError(GatewayError):
    status_code = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RateLimitError(GatewayError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    """The GPU endpoint failed or answered with an error."""

    status_code = 502
    type = "upstream_error"
    code = "upstream_error"

    def __init__(self, message: str, *, status_code: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        if status_code is not None:
            self.status_code = status_code


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class InternalError(GatewayError):
    """The gateway itself failed: a bug. Clients get this generic 500; the log has the rest."""

    status_code = 500
    type = "server_error"
    code = "internal_error"


class DependencyError(GatewayError):
    """An AWS dependency (DynamoDB, SSM) failed."""

    status_code = 503
    type = "server_error"
    code = "dependency_unavailable"


class ClientDisconnected(GatewayError):
    """The client went away before its answer (while sending the body, or waiting): its
    record says client_disconnected; the answer (nginx's 499) reaches nobody."""

    status_code = 499
    type = "invalid_request_error"
    code = "client_disconnected"


class ContentFilterError(InvalidRequestError):
    """The guard model flagged the prompt (gateway/guard): nothing was forwarded. The error
    object also lists the categories that blocked it."""

    code = "content_filter"

    def __init__(self, message: str, *, categories: list[str], **kw: Any) -> None:
        kw.setdefault("param", "messages")
        super().__init__(message, **kw)
        self.categories = categories

    def to_dict(self) -> ErrorResponse:
        body = super().to_dict()
        body["error"]["categories"] = list(self.categories)
        return body


class GuardUnavailableError(GatewayError):
    """A fail-closed guard failed or missed its deadline: the request is refused."""

    status_code = 503
    type = "server_error"
    code = "guard_unavailable"


class ConfigurationError(Exception):
    """The gateway's own configuration is invalid (raised at start-up, never to clients)."""


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | int | None = None
) -> ErrorResponse:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def sse_error_event(error: GatewayError) -> bytes:
    """The one event that ends a stream that failed after it started."""
    return b"data: " + orjson.dumps(error.to_dict()) + b"\n\n"
