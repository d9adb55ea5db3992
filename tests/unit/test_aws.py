"""gateway.aws: the one mapping of AWS errors to the gateway's exceptions, the quick
retries, and AWS clients built once and off the caller's toes."""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from gateway.aws import (
    AwsClients,
    ConditionFailed,
    RetryableError,
    botocore_errors,
    cancellation_codes,
    map_error,
    retry_delay,
    retry_quickly,
)
from gateway.errors import DependencyError


def _client_error(code: str, *reasons: str) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "m"}}
    if reasons:
        response["CancellationReasons"] = [{"Code": r} for r in reasons]
    return ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]


CASES: list[tuple[ClientError, type[Exception], tuple[str, ...] | None]] = [
    (_client_error("ConditionalCheckFailedException"), ConditionFailed, ("ConditionalCheckFailed",)),
    (_client_error("TransactionCanceledException", "None", "ConditionalCheckFailed"),
     ConditionFailed, ("None", "ConditionalCheckFailed")),
    (_client_error("TransactionCanceledException", "TransactionConflict", "None"), RetryableError, None),
    (_client_error("TransactionCanceledException", "ThrottlingError"), RetryableError, None),
    # a false condition beside a conflict: a retry may meet the condition alone
    (_client_error("TransactionCanceledException", "ConditionalCheckFailed", "TransactionConflict"),
     RetryableError, None),
    (_client_error("TransactionCanceledException", "ValidationError", "None"), DependencyError, None),
    (_client_error("TransactionCanceledException", "None"), DependencyError, None),
    (_client_error("ThrottlingException"), RetryableError, None),
    (_client_error("TransactionConflictException"), RetryableError, None),
    (_client_error("InternalServerError"), RetryableError, None),
    # a 5xx whose body botocore could not read: the status is the code (as in its retries)
    (_client_error("500"), RetryableError, None),
    (_client_error("503"), RetryableError, None),
    (_client_error("400"), DependencyError, None),
    (_client_error("ValidationException"), DependencyError, None),
    (_client_error(""), DependencyError, None),
]  # fmt: skip


@pytest.mark.parametrize(("error", "kind", "codes"), CASES)
def test_botocore_errors_map_through_map_error(
    error: ClientError, kind: type[Exception], codes: tuple[str, ...] | None
) -> None:
    with pytest.raises(kind) as info, botocore_errors("DynamoDB"):
        raise error
    assert type(info.value) is kind  # RetryableError is a DependencyError: exactly this one
    assert info.value.__cause__ is error
    if codes is not None:
        assert isinstance(info.value, ConditionFailed)
        assert info.value.codes == codes
    # the JSON-protocol client maps the same code and reasons the same way
    same = map_error(
        str(error.response["Error"]["Code"]),
        "DynamoDB",
        reasons=cancellation_codes(error.response),
    )
    assert type(same) is kind


def test_a_botocore_failure_without_an_answer_is_the_dependency_failing() -> None:
    with pytest.raises(DependencyError, match="EndpointConnectionError"), botocore_errors("SSM"):
        raise EndpointConnectionError(endpoint_url="https://ssm")


def test_cancellation_codes_read_what_dynamodb_and_botocore_write() -> None:
    assert cancellation_codes({}) == []
    assert cancellation_codes({"CancellationReasons": "garbled"}) == []
    reasons = [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Message": "m"}, {}, "x"]
    assert cancellation_codes({"CancellationReasons": reasons}) == [
        "None",
        "ConditionalCheckFailed",
        "None",
    ]


def test_without_a_deadline_one_retry_per_pause() -> None:
    delays = (0.1, 0.2, 0.4)
    pauses = [retry_delay(n, deadline=None, now=0.0, delays=delays) for n in range(4)]
    assert pauses[3] is None
    for pause, longest in zip(pauses[:3], delays, strict=True):
        assert pause is not None and longest / 2 <= pause <= longest
    # with a deadline: no retry that could not start before it
    assert retry_delay(0, deadline=1.0, now=0.99, delays=delays) is None
    assert retry_delay(9, deadline=100.0, now=0.0, delays=delays) is not None


def test_retry_quickly_retries_only_what_may_clear() -> None:
    calls: list[str] = []

    def busy_twice() -> str:
        calls.append("call")
        if len(calls) < 3:
            raise RetryableError("busy")
        return "done"

    pauses: list[float] = []
    assert retry_quickly(busy_twice, deadline=None, sleep=pauses.append) == "done"
    assert len(pauses) == 2

    def broken() -> str:
        calls.append("broken")
        raise DependencyError("unavailable")

    with pytest.raises(DependencyError):
        retry_quickly(broken, deadline=None, sleep=pauses.append)
    assert calls.count("broken") == 1


class _Session:
    """A boto3 session's stand-in: counts the clients built and the threads building."""

    def __init__(self) -> None:
        self.built: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def client(self, service: str, config: Any = None) -> object:
        self.built.append(service)
        self.entered.set()
        assert self.release.wait(10)
        return object()


def test_a_client_is_built_once_when_threads_ask_at_once() -> None:
    session = _Session()
    aws = AwsClients(session=session)  # type: ignore[arg-type]
    got: list[object] = []
    first = threading.Thread(target=lambda: got.append(aws.sagemaker_runtime))
    first.start()
    assert session.entered.wait(10)  # the first thread is building
    second = threading.Thread(target=lambda: got.append(aws.sagemaker_runtime))
    second.start()
    session.release.set()
    first.join(10)
    second.join(10)
    assert session.built == ["sagemaker-runtime"]
    assert len(got) == 2 and got[0] is got[1]


def _gateway_imports(module: str) -> set[str]:
    """The gateway modules `module` imports (at run time or for type checking)."""
    path = Path(__file__).resolve().parents[2] / "functions" / (module.replace(".", "/") + ".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "gateway"}


def test_aws_plumbing_sits_at_the_bottom() -> None:
    """aws.py imports only the gateway's errors, and the DynamoDB client only aws.py and
    the errors: no cycle between them (there was one: aws.py built dynamodb_http's
    Endpoint)."""
    assert _gateway_imports("gateway.aws") == {"gateway.errors"}
    assert _gateway_imports("gateway.dynamodb_http") == {"gateway.aws", "gateway.errors"}
