"""SageMaker runtime's failures as the gateway's errors: the container's own answer
(ModelError) as an HTTP upstream's would be, throttling, stream errors, and calls that never
reached the endpoint (sagemaker.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from gateway.backends.faults import Unreachable
from gateway.backends.wire import status_error
from gateway.errors import GatewayError, UpstreamError, UpstreamTimeoutError

logger = logging.getLogger(__name__)

# Error codes SageMaker uses when it, not the model, turns a request away for load.
_THROTTLED = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "ModelNotReadyException"}
)
_STREAM_ERRORS = ("ModelStreamError", "InternalStreamFailure")


def client_error(exc: ClientError, endpoint: str) -> GatewayError:
    response: Mapping[str, Any] = exc.response
    error = response.get("Error") or {}
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or "")
    if code == "ModelError":
        # The container's own answer: its status and body, as an HTTP upstream's would be.
        status = response.get("OriginalStatusCode")
        original = response.get("OriginalMessage")
        if isinstance(status, int) and 400 <= status < 600:
            raw = original.encode() if isinstance(original, str) else b""
            return status_error(status, raw)
        return UpstreamError(
            "The model endpoint failed (model error).", code="upstream_model_error"
        )
    if code in _STREAM_ERRORS:
        return UpstreamError("The model endpoint failed mid-stream.", code="upstream_stream_error")
    logger.warning("SageMaker endpoint refused a call", extra={"endpoint": endpoint, "code": code})
    logger.debug("SageMaker error text", extra={"endpoint": endpoint, "text": message[:500]})
    if code in _THROTTLED:
        return UpstreamError(
            "The model endpoint is overloaded; retry later.", code="upstream_throttled"
        )
    if code == "ValidationError":
        # The endpoint's name or the request's shape: the gateway's fault, not the client's.
        return UpstreamError(
            "The model endpoint refused the call (ValidationError).",
            code="upstream_validation_error",
        )
    return UpstreamError(
        f"The model endpoint is unavailable ({code or 'error'}).", code="upstream_unavailable"
    )


@contextlib.contextmanager
def call_errors(endpoint: str) -> Iterator[None]:
    """Map failures of a call (before any stream is read) to the gateway's errors."""
    try:
        yield
    except ClientError as exc:
        raise client_error(exc, endpoint) from exc
    except (ConnectTimeoutError, EndpointConnectionError) as exc:  # never reached it
        raise Unreachable(f"The model endpoint is unreachable: {type(exc).__name__}") from exc
    except (ReadTimeoutError, TimeoutError) as exc:
        raise UpstreamTimeoutError("The model endpoint timed out.") from exc
    except (BotoCoreError, Urllib3Error, OSError) as exc:
        raise UpstreamError(f"The model endpoint is unreachable: {type(exc).__name__}") from exc
