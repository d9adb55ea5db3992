"""DynamoDB's JSON protocol over aiohttp, for the one DynamoDB call on every request's path.

botocore's client spends about 1 ms of CPU on one PutItem (validation against the service
model, serialization, its event system, the user agent, urllib3), and, being blocking, it
ran in a worker thread: a second hop of the same size. This client sends the same request
(JSON body by orjson, signed by botocore's own signer, `botocore.auth.SigV4Auth`, with the
session's credentials, to the endpoint botocore resolved) over a keep-alive aiohttp session
on the event loop, and maps DynamoDB's error body (its `__type`, and a cancelled
transaction's `CancellationReasons`) with `aws.map_error`, the mapping botocore's errors go
through. docs/BENCHMARKS.md has the measurement.

Nothing here blocks the event loop: the endpoint and credentials are resolved once, in a
worker thread (building botocore's client and finding credentials take tens of
milliseconds, and may call an instance metadata service), and credentials due for a refresh
are refreshed in one too.

Only the usage PutItem uses it; everything off the request path keeps boto3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from gateway.aws import Endpoint, RetryableError, cancellation_codes, map_error
from gateway.errors import DependencyError

if TYPE_CHECKING:
    import aiohttp
    from botocore.credentials import ReadOnlyCredentials

_TARGET_PREFIX = "DynamoDB_20120810."
_CONTENT_TYPE = "application/x-amz-json-1.0"
SERVICE = "DynamoDB"


def host_header(endpoint: Endpoint) -> str:
    """The Host header botocore signs for the endpoint's URL (lowercase, without a default
    port), derived once: each call then signs and sends it as given, which spares the
    signer parsing the URL twice a call (about a quarter of its CPU)."""
    request = AWSRequest(method="POST", url=endpoint.url)
    signer = SigV4Auth(endpoint.credentials, "dynamodb", endpoint.region)
    return str(signer.headers_to_sign(request)["host"])


class _Unsigned:
    """The part of a request botocore's `SigV4Auth.add_auth` reads and writes: method, url,
    headers, body, params and context. An `AWSRequest` carries them too, but its headers are
    an `email.message.Message` and each read of its `body` prepares the whole request again;
    with plain attributes the same signer gives the same signature
    (tests/gateway/test_dynamodb_http.py compares it with an AWSRequest's) for about two
    thirds of the CPU (docs/BENCHMARKS.md, "Signing")."""

    __slots__ = ("body", "context", "headers", "method", "params", "url")

    def __init__(self, *, url: str, headers: dict[str, str], body: bytes) -> None:
        self.method = "POST"
        self.url = url
        self.headers = headers
        self.body = body
        self.params: dict[str, str] = {}
        self.context: dict[str, Any] = {}


def signed_headers(
    endpoint: Endpoint,
    credentials: ReadOnlyCredentials,
    *,
    host: str,
    operation: str,
    body: bytes,
) -> dict[str, str]:
    """The headers of a POST of `body` to DynamoDB's `operation` on `host`, signed by
    botocore's SigV4Auth (Authorization, X-Amz-Date, X-Amz-Security-Token for a session's
    credentials). aiohttp sends the Host header given here, so it is the one signed."""
    headers = {
        "Host": host,
        "Content-Type": _CONTENT_TYPE,
        "X-Amz-Target": _TARGET_PREFIX + operation,
    }
    unsigned = _Unsigned(url=endpoint.url, headers=headers, body=body)
    # botocore's stubs name AWSRequest; the signer reads only what _Unsigned carries
    SigV4Auth(credentials, "dynamodb", endpoint.region).add_auth(cast("AWSRequest", unsigned))
    return headers


class DynamoDBHttp:
    """`put_item` without botocore's per-call machinery.

    `endpoint`: a blocking, zero-argument resolver (AwsClients.dynamodb_endpoint), called
    once, in a worker thread, on the first call. The aiohttp session is made on the running
    loop; `reset()` drops both (after a SnapStart restore, or in tests).
    """

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
        self._host = ""  # host_header(endpoint)
        self._refreshable = False  # the endpoint's credentials expire (RefreshableCredentials)
        self._resolving = anyio.Lock()
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

    async def _endpoint_now(self) -> Endpoint:
        endpoint = self._endpoint
        if endpoint is None:
            async with self._resolving:  # concurrent first calls resolve once
                endpoint = self._endpoint
                if endpoint is None:
                    endpoint = await anyio.to_thread.run_sync(self._resolve_blocking)
        return endpoint

    def _resolve_blocking(self) -> Endpoint:
        """Worker thread: the endpoint, and whether its credentials expire."""
        from botocore.credentials import RefreshableCredentials

        endpoint = self._resolve()
        self._refreshable = isinstance(endpoint.credentials, RefreshableCredentials)
        self._host = host_header(endpoint)
        self._endpoint = endpoint
        return endpoint

    async def _credentials(self, endpoint: Endpoint) -> ReadOnlyCredentials:
        """Frozen for one call. Refreshing (botocore does it within 15 minutes of expiry)
        fetches new ones over the network: in a worker thread."""
        credentials: Any = endpoint.credentials
        if self._refreshable and credentials.refresh_needed():
            frozen: ReadOnlyCredentials = await anyio.to_thread.run_sync(
                credentials.get_frozen_credentials
            )
            return frozen
        return endpoint.credentials.get_frozen_credentials()

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One call; DynamoDB's answer, or the gateway's exception for its error (see
        aws.map_error: ConditionFailed, RetryableError or DependencyError)."""
        import aiohttp

        body = orjson.dumps(params)
        endpoint = await self._endpoint_now()
        credentials = await self._credentials(endpoint)
        headers = signed_headers(
            endpoint, credentials, host=self._host, operation=operation, body=body
        )
        span = None
        if self._tracer is not None:
            span = self._tracer(operation, str(params.get("TableName", "")), endpoint.region)
        status = 0
        try:
            async with self._session_now().post(
                endpoint.url, data=body, headers=headers
            ) as response:
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
        raise _error(raw, status)

    async def put_item(
        self, *, table: str, item: Mapping[str, Any], condition: str | None = None
    ) -> None:
        params: dict[str, Any] = {"TableName": table, "Item": item}
        if condition:
            params["ConditionExpression"] = condition
        await self.call("PutItem", params)

    async def reset(self) -> None:
        session, self._session, self._endpoint = self._session, None, None
        if session is not None and not session.closed:
            await session.close()


def _error(raw: bytes, status: int) -> Exception:
    """The gateway's exception for DynamoDB's error body:
    `{"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", ...}` is
    `ThrottlingException`; a body without one is the status's code, as botocore reads it
    (a 5xx is then retryable: map_error)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        data = {}
    code = str(data.get("__type", "")).rpartition("#")[2] or str(status)
    return map_error(code, SERVICE, reasons=cancellation_codes(data))
