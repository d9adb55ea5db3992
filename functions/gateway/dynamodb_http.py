"""DynamoDB's JSON protocol over aiohttp, for the one DynamoDB call on every request's path.

botocore spends about 1 ms of CPU on one PutItem (validation against the service model,
serialization, its event system, the user agent, urllib3), and, being blocking, it ran in
a worker thread: a second hop of the same size. This client sends the same request (JSON
body by orjson, signed by botocore's own SigV4 signer with the session's credentials, to the
endpoint botocore resolved) over a keep-alive aiohttp session on the event loop, and maps
DynamoDB's error `__type` with `aws.map_error_code`, the mapping botocore's errors go
through. docs/BENCHMARKS.md has the measurement.

Only the usage PutItem uses it; everything off the request path keeps boto3.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from gateway.aws import RetryableError, map_error_code
from gateway.errors import DependencyError

if TYPE_CHECKING:
    import aiohttp
    from botocore.credentials import Credentials

_TARGET_PREFIX = "DynamoDB_20120810."
_CONTENT_TYPE = "application/x-amz-json-1.0"
SERVICE = "DynamoDB"


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to call DynamoDB: botocore's resolved endpoint, region and
    credentials (refreshable ones refresh themselves when frozen for a call)."""

    url: str
    region: str
    credentials: Credentials
    host: str = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        default = {"http": 80, "https": 443}.get(parts.scheme)
        host = parts.hostname or ""
        object.__setattr__(self, "host", host if parts.port in (None, default) else parts.netloc)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class SigV4:
    """AWS Signature Version 4 for a POST to `/` with a JSON body (what DynamoDB takes),
    as botocore's SigV4Auth computes it (tests compare the two); the day's signing key is
    derived once per secret, day and region instead of four HMACs per call."""

    def __init__(self, region: str, service: str = "dynamodb") -> None:
        self._region = region
        self._service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            key = _hmac(("AWS4" + secret).encode(), day)
            key = _hmac(_hmac(_hmac(key, self._region), self._service), "aws4_request")
            self._keys = {(secret, day): key}  # one entry: yesterday's key is dropped
        return key

    def headers(
        self, *, host: str, target: str, body: bytes, credentials: Any, amz_date: str
    ) -> dict[str, str]:
        """The request's headers, Authorization included. `credentials`: frozen ones
        (access_key, secret_key, token)."""
        signed = {
            "content-type": _CONTENT_TYPE,
            "host": host,
            "x-amz-date": amz_date,
            "x-amz-target": target,
        }
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = ";".join(sorted(signed))
        canonical = "POST\n/\n\n{}\n{}\n{}".format(
            "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
            names,
            hashlib.sha256(body).hexdigest(),
        )
        scope = f"{amz_date[:8]}/{self._region}/{self._service}/aws4_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
        signature = hmac.new(
            self._key(credentials.secret_key, amz_date[:8]), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": _CONTENT_TYPE,
            "X-Amz-Date": amz_date,
            "X-Amz-Target": target,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}",
        }
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
        return headers


class DynamoDBHttp:
    """`put_item` without botocore's per-call machinery. The endpoint is resolved on first
    use (building a boto3 client is not free at cold start) and the session is made on the
    running loop; `reset()` drops both (after a SnapStart restore, or in tests)."""

    def __init__(
        self,
        *,
        endpoint: Callable[[], Endpoint],
        connect_timeout: float,
        read_timeout: float,
        # A Lambda instance makes one call at a time; a local server many: bounded, so
        # a burst reuses connections instead of opening one per request.
        max_connections: int = 32,
        # X-Ray: start(operation, table, region) -> end(status) (Tracing.aws_call)
        tracer: Callable[[str, str, str], Callable[[int], None]] | None = None,
    ) -> None:
        self._resolve = endpoint
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._tracer = tracer
        self._endpoint: Endpoint | None = None
        self._signer: SigV4 | None = None
        self._session: aiohttp.ClientSession | None = None

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp  # imported on first use: the buffered-only function never calls it

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=30, enable_cleanup_closed=True
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout
                ),
                skip_auto_headers=("User-Agent", "Content-Type"),
                auto_decompress=False,
            )
        return self._session

    def _signed_headers(self, operation: str, body: bytes) -> tuple[str, dict[str, str]]:
        endpoint, signer = self._endpoint, self._signer
        if endpoint is None or signer is None:
            endpoint = self._endpoint = self._resolve()
            signer = self._signer = SigV4(endpoint.region)
        headers = signer.headers(
            host=endpoint.host,
            target=_TARGET_PREFIX + operation,
            body=body,
            credentials=endpoint.credentials.get_frozen_credentials(),
            amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        )
        return endpoint.url, headers

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One call; DynamoDB's answer, or the gateway's exception for its error (see
        aws.map_error_code: ConditionFailed, RetryableError or DependencyError)."""
        import aiohttp

        body = orjson.dumps(params)
        url, headers = self._signed_headers(operation, body)
        span = None
        if self._tracer is not None and self._endpoint is not None:
            span = self._tracer(operation, str(params.get("TableName", "")), self._endpoint.region)
        status = 0
        try:
            async with self._session_now().post(url, data=body, headers=headers) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Not connected, so nothing was sent: as safe to retry as a throttle.
            raise RetryableError(f"{SERVICE} is unreachable ({type(exc).__name__})") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DependencyError(f"{SERVICE} is unavailable ({type(exc).__name__})") from exc
        finally:
            if span is not None:
                span(status)
        if status == 200:
            answer: dict[str, Any] = orjson.loads(raw) if raw else {}
            return answer
        raise map_error_code(_error_code(raw, status), SERVICE)

    async def put_item(
        self, *, table: str, item: Mapping[str, Any], condition: str | None = None
    ) -> None:
        params: dict[str, Any] = {"TableName": table, "Item": item}
        if condition:
            params["ConditionExpression"] = condition
        await self.call("PutItem", params)

    async def reset(self) -> None:
        session, self._session, self._endpoint = self._session, None, None
        self._signer = None
        if session is not None and not session.closed:
            await session.close()


def _error_code(raw: bytes, status: int) -> str:
    """`com.amazonaws.dynamodb.v20120810#ThrottlingException` -> `ThrottlingException`;
    an unparseable 5xx is `InternalServerError` (retryable), anything else has no code."""
    try:
        data = orjson.loads(raw)
        code = str(data.get("__type", "")).rpartition("#")[2] if isinstance(data, dict) else ""
    except orjson.JSONDecodeError:
        code = ""
    if not code and status >= 500:
        return "InternalServerError"
    return code
