"""AWS clients, built once per process, and the one place AWS errors are mapped
(`map_error`: botocore's, through `botocore_errors`, and dynamodb_http.py's). The bottom
layer: it imports nothing of the gateway but its errors."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.errors import DependencyError

if TYPE_CHECKING:
    import boto3
    from botocore.credentials import Credentials
    from mypy_boto3_dynamodb import DynamoDBClient

T = TypeVar("T")

# Off the request path (CLI, aggregator, log write-back): standard retry mode backs off
# on throttling, within short timeouts.
_DYNAMODB_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=50,
)

# Error codes worth retrying at once (after a short, jittered pause): the item is busy in
# another transaction, the partition is throttled, or DynamoDB had a transient fault (a 5xx
# whose body names no error has its status as the code, which botocore also retries).
RETRYABLE_CODES = frozenset({
    "TransactionConflictException", "TransactionInProgressException",
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "500", "502", "503", "504",
})  # fmt: skip


def path_dynamodb_config(*, connect_timeout: float, read_timeout: float) -> Config:
    """The request path's DynamoDB client: no botocore retries (its backoff waits up to
    seconds); the stores retry quickly themselves, each call inside its own deadline."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=100,
    )


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to call DynamoDB: botocore's resolved endpoint and region, and the
    session's credentials (refreshable ones refresh themselves when frozen for a call)."""

    url: str
    region: str
    credentials: Credentials


@dataclass
class AwsClients:
    """Lazily built, process-wide boto3 clients (pass a session to inject a fake). Building
    one blocks for tens of milliseconds: the request path does it in worker threads, and a
    lock builds each once however many threads ask (a boto3 session is not thread-safe)."""

    session: boto3.session.Session | None = None
    region_name: str | None = None
    # SageMaker runtime client settings (timeouts, pool); see upstream.sagemaker.client_config.
    sagemaker_config: Config | None = None
    # DynamoDB client settings (default: _DYNAMODB_CONFIG; the app passes
    # path_dynamodb_config(...)).
    dynamodb_config: Config | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def _once(self, name: str, build: Callable[[], T]) -> T:
        """`build()` under the lock, kept as attribute `name` (as cached_property does)."""
        with self._lock:
            if name not in self.__dict__:
                self.__dict__[name] = build()
            return cast(T, self.__dict__[name])

    def _boto3_session(self) -> boto3.session.Session:
        def build() -> boto3.session.Session:
            import boto3  # with the first client: boto3 (and s3transfer) cost ~20 ms

            return self.session or boto3.session.Session(region_name=self.region_name)

        return self._once("_built_session", build)

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        config = self.dynamodb_config or _DYNAMODB_CONFIG
        return self._once(
            "dynamodb", lambda: self._boto3_session().client("dynamodb", config=config)
        )

    @cached_property
    def ssm(self) -> Any:
        return self._once("ssm", lambda: self._boto3_session().client("ssm"))

    @cached_property
    def sagemaker(self) -> Any:
        """SageMaker's control plane (DescribeEndpoint, for the endpoint probe)."""
        return self._once("sagemaker", lambda: self._boto3_session().client("sagemaker"))

    @cached_property
    def sagemaker_runtime(self) -> Any:
        """Blocking to build: backends/sagemaker.py builds it in a worker thread."""
        config = self.sagemaker_config
        return self._once(
            "sagemaker_runtime",
            lambda: self._boto3_session().client("sagemaker-runtime", config=config),
        )

    def dynamodb_endpoint(self) -> Endpoint:
        """The DynamoDB client's resolved endpoint, region and credentials, for
        dynamodb_http.py. Blocking (it builds the client, may fetch credentials)."""
        meta = self.dynamodb.meta
        with self._lock:
            credentials = self._boto3_session().get_credentials()
        if credentials is None:
            raise DependencyError("DynamoDB is unavailable (no AWS credentials)")
        return Endpoint(url=meta.endpoint_url, region=meta.region_name, credentials=credentials)

    def lazy_dynamodb(self) -> DynamoDBClient:
        """The DynamoDB client, built on its first call rather than now: building one loads
        botocore's service model and endpoint rules (~70 ms), which a cold start need not
        pay before it serves."""
        return cast("DynamoDBClient", LazyClient(lambda: self.dynamodb))

    def close_connections(self) -> None:
        """Close the pooled connections of every client built so far; each client stays
        usable and opens new connections (botocore's PoolManager.clear)."""
        for name in ("dynamodb", "ssm", "sagemaker", "sagemaker_runtime"):
            client = self.__dict__.get(name)  # set by cached_property once built
            if client is not None:
                client.close()

    def read_ssm_parameter(self, name: str) -> str:
        with botocore_errors("SSM"):
            response = self.ssm.get_parameter(Name=name, WithDecryption=True)
        return str(response["Parameter"]["Value"])


class LazyClient:
    """Stands for a boto3 client that `build()` makes on first attribute access. Each
    attribute read is then kept on this object, so later calls go straight to the client's
    bound method (no proxy cost on the request path)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build

    def __getattr__(self, name: str) -> Any:  # only for attributes not yet kept
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self._build(), name)
        self.__dict__[name] = value
        return value


class RetryableError(DependencyError):
    """A DynamoDB fault that a quick retry may clear (conflict, throttling, 5xx)."""


class ConditionFailed(Exception):
    """A conditional write found its condition false (not a fault). `codes`: the failed
    condition's code, or a cancelled transaction's per-item codes in its items' order
    ("None" for an item that did not fail); the message joins them."""

    def __init__(self, codes: Sequence[str]) -> None:
        super().__init__(", ".join(codes))
        self.codes = tuple(codes)


# Per-item cancellation reasons of a transaction that a quick retry may clear.
_RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


def cancellation_codes(response: Mapping[str, Any]) -> list[str]:
    """A cancelled transaction's per-item reason codes, from botocore's parsed response or
    DynamoDB's JSON error body (the same `CancellationReasons` list in both)."""
    reasons = response.get("CancellationReasons")
    if not isinstance(reasons, list):
        return []
    return [str(r.get("Code") or "None") for r in reasons if isinstance(r, dict)]


def map_error(code: str, service: str, *, reasons: Sequence[str] = ()) -> Exception:
    """The gateway's exception for an AWS error `code` (and a cancelled transaction's
    per-item `reasons`): a false condition, alone, is ConditionFailed; throttling, a conflict
    or a transient fault RetryableError; anything else DependencyError (a 503 to clients)."""
    if code == "ConditionalCheckFailedException":
        return ConditionFailed(["ConditionalCheckFailed"])
    if code == "TransactionCanceledException":
        if "ConditionalCheckFailed" in reasons and all(
            r in ("None", "ConditionalCheckFailed") for r in reasons
        ):
            return ConditionFailed(reasons)
        if _RETRYABLE_REASONS.intersection(reasons):
            return RetryableError(f"{service} is busy ({code}: {', '.join(reasons)})")
    elif code in RETRYABLE_CODES:
        return RetryableError(f"{service} is busy ({code})")
    return DependencyError(f"{service} is unavailable ({code or 'error'})")


@contextmanager
def botocore_errors(service: str) -> Iterator[None]:
    """Map botocore failures to the gateway's own exceptions (map_error)."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise map_error(code, service, reasons=cancellation_codes(exc.response)) from exc
    except BotoCoreError as exc:
        raise DependencyError(f"{service} is unavailable ({type(exc).__name__})") from exc


# Pauses between quick retries (each jittered down to half): a transaction holds an item
# for tens of milliseconds, so the first retries come soon. Without a deadline (off the
# path), one retry per pause at most.
QUICK_DELAYS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.25)


def retry_delay(
    attempt: int, *, deadline: float | None, now: float, delays: Sequence[float] = QUICK_DELAYS
) -> float | None:
    """The pause before retry number `attempt` (0-based) of a RetryableError, or None when
    no retry may start before `deadline` (None: after `len(delays)` retries)."""
    if deadline is None and attempt >= len(delays):
        return None
    delay = delays[min(attempt, len(delays) - 1)] * random.uniform(0.5, 1.0)
    return delay if deadline is None or now + delay < deadline else None


def retry_quickly(
    call: Callable[[], T],
    *,
    deadline: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    delays: Sequence[float] = QUICK_DELAYS,
) -> T:
    """`call()`, retrying RetryableError after short jittered pauses (`delays`) while a
    retry can still start before `deadline` (a `clock()` value; None: `len(delays)`
    retries). The last RetryableError (a DependencyError) is raised when time or retries
    run out."""
    attempt = 0
    while True:
        try:
            return call()
        except RetryableError:
            delay = retry_delay(attempt, deadline=deadline, now=clock(), delays=delays)
            if delay is None:
                raise
            attempt += 1
            sleep(delay)


async def retry_quickly_async(
    call: Callable[[], Awaitable[T]],
    *,
    deadline: float | None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """retry_quickly for a coroutine: the same pauses, on the event loop."""
    attempt = 0
    while True:
        try:
            return await call()
        except RetryableError:
            delay = retry_delay(attempt, deadline=deadline, now=clock())
            if delay is None:
                raise
            attempt += 1
            await anyio.sleep(delay)


def pages(client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Each page of a DynamoDB `query` or `scan`, through boto3's paginator (which follows
    LastEvaluatedKey); botocore's errors mapped as everywhere else. A page at a time, so
    a caller may stop early (a limit) and read no further."""
    with botocore_errors("DynamoDB"):
        yield from client.get_paginator(operation).paginate(**kwargs)


def items(client: Any, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paginated `query` or `scan` (pages()), one at a time."""
    for page in pages(client, operation, **kwargs):
        yield from page.get("Items", [])
