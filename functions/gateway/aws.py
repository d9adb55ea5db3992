"""AWS clients, built once per process, and the one place botocore errors are mapped."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gateway.errors import DependencyError

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb import DynamoDBClient

    from gateway.dynamodb_http import Endpoint

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
# another transaction, the partition is throttled, or DynamoDB had a transient fault.
RETRYABLE_CODES = frozenset(
    {
        "TransactionConflictException",
        "TransactionInProgressException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


def path_dynamodb_config(*, connect_timeout: float, read_timeout: float) -> Config:
    """The request path's DynamoDB client: no botocore retries (its backoff waits up to
    seconds); the stores retry quickly themselves, each call inside its own deadline."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=100,
    )


@dataclass
class AwsClients:
    """Lazily built, process-wide boto3 clients. Pass a prebuilt client to inject a fake."""

    session: boto3.session.Session | None = None
    region_name: str | None = None
    # SageMaker runtime client settings (timeouts, pool); see upstream.sagemaker.client_config.
    sagemaker_config: Config | None = None
    # DynamoDB client settings (default: _DYNAMODB_CONFIG; the app passes
    # path_dynamodb_config(...)).
    dynamodb_config: Config | None = None

    @cached_property
    def _session(self) -> boto3.session.Session:
        import boto3  # with the first client: boto3 (and s3transfer) cost ~20 ms to import

        return self.session or boto3.session.Session(region_name=self.region_name)

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self._session.client("dynamodb", config=self.dynamodb_config or _DYNAMODB_CONFIG)

    @cached_property
    def ssm(self) -> Any:
        return self._session.client("ssm")

    @cached_property
    def sagemaker(self) -> Any:
        """SageMaker's control plane (DescribeEndpoint, for the endpoint probe)."""
        return self._session.client("sagemaker")

    @cached_property
    def sagemaker_runtime(self) -> Any:
        return self._session.client("sagemaker-runtime", config=self.sagemaker_config)

    def dynamodb_endpoint(self) -> Endpoint:
        """The DynamoDB client's resolved endpoint, region and credentials, for the
        request path's JSON-protocol client (dynamodb_http.py)."""
        from gateway.dynamodb_http import Endpoint

        meta = self.dynamodb.meta
        credentials = self._session.get_credentials()
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
        for name in ("dynamodb", "ssm", "sagemaker_runtime"):
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
    """A conditional write found its condition false (not a fault). Its message is the
    failed condition's code, or a transaction's per-item codes."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


_RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


def _reasons(exc: ClientError) -> list[dict[str, Any]]:
    reasons: Any = exc.response.get("CancellationReasons", [])
    return [r for r in reasons if isinstance(r, dict)]


@contextmanager
def botocore_errors(service: str) -> Iterator[None]:
    """Map botocore failures to the gateway's own exceptions.

    A false condition becomes ConditionFailed (with per-item codes for transactions);
    anything else is the dependency failing: DependencyError, a 503 to clients.
    """
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code != "TransactionCanceledException":
            raise map_error_code(code, service) from exc
        if code == "TransactionCanceledException":
            reasons = [r.get("Code", "None") for r in _reasons(exc)]
            if "ConditionalCheckFailed" in reasons and all(
                r in ("None", "ConditionalCheckFailed") for r in reasons
            ):
                raise ConditionFailed(", ".join(reasons)) from exc
        if code in RETRYABLE_CODES or (
            code == "TransactionCanceledException"
            and any(r.get("Code") in _RETRYABLE_REASONS for r in _reasons(exc))
        ):
            raise RetryableError(f"{service} is busy ({code})") from exc
        raise DependencyError(f"{service} is unavailable ({code or 'error'})") from exc
    except BotoCoreError as exc:
        raise DependencyError(f"{service} is unavailable ({type(exc).__name__})") from exc


def map_error_code(code: str, service: str) -> Exception:
    """The gateway's exception for an AWS error code (not a cancelled transaction's):
    botocore's ClientError and the JSON-protocol client (dynamodb_http.py) both map here."""
    if code == "ConditionalCheckFailedException":
        return ConditionFailed("ConditionalCheckFailed")
    if code in RETRYABLE_CODES:
        return RetryableError(f"{service} is busy ({code})")
    return DependencyError(f"{service} is unavailable ({code or 'error'})")


# Pauses between quick retries (each jittered down to half): a transaction holds an item
# for tens of milliseconds, so the first retries come soon.
QUICK_DELAYS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.25)
# Without a deadline (off the path): this many retries at most.
UNBOUNDED_RETRIES = 6


def retry_delay(attempt: int, *, deadline: float | None, now: float) -> float | None:
    """The pause before retry number `attempt` (0-based) of a RetryableError, or None when
    no retry may start before `deadline` (None: after UNBOUNDED_RETRIES retries)."""
    delay = QUICK_DELAYS[min(attempt, len(QUICK_DELAYS) - 1)] * random.uniform(0.5, 1.0)
    if deadline is None:
        return delay if attempt < UNBOUNDED_RETRIES else None
    return delay if now + delay < deadline else None


def retry_quickly(
    call: Callable[[], T],
    *,
    deadline: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retrying RetryableError after short jittered pauses while a retry can
    still start before `deadline` (a `clock()` value; None: UNBOUNDED_RETRIES retries).
    The last RetryableError (a DependencyError) is raised when time or retries run out."""
    attempt = 0
    while True:
        try:
            return call()
        except RetryableError:
            delay = retry_delay(attempt, deadline=deadline, now=clock())
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
