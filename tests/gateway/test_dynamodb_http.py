"""The request path's DynamoDB client (JSON protocol over aiohttp): against moto's server
for what DynamoDB answers, and against a scripted server for the faults moto does not
produce; errors map as botocore's do (gateway.aws.map_error_code)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import boto3
import pytest
from aiohttp import web
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.aws import AwsClients, ConditionFailed, RetryableError
from gateway.dynamodb_http import DynamoDBHttp, Endpoint
from gateway.errors import DependencyError
from gateway.usage import UsageStore

from tests.gateway.usage.test_store import record as usage_record

# The keys table: it has no stream, so this test's item never reaches the usage aggregator
# (the usage table's stream would take it for a malformed record).
TABLE = LOCAL_TABLE_NAMES["KeysTable"]


def _client(endpoint: Endpoint, **kw: Any) -> DynamoDBHttp:
    return DynamoDBHttp(
        endpoint=lambda: endpoint, connect_timeout=1, read_timeout=kw.pop("read_timeout", 2), **kw
    )


def test_put_item_writes_what_boto3_reads_back_and_refuses_a_false_condition(
    dynamodb: str,
) -> None:
    aws = AwsClients()
    http = _client(aws.dynamodb_endpoint())
    item = {"key_hash": {"S": f"dynamodb-http-{uuid.uuid4().hex}"}, "n": {"N": "3"}}

    async def main() -> None:
        try:
            await http.put_item(table=TABLE, item=item, condition="attribute_not_exists(key_hash)")
            with pytest.raises(ConditionFailed):
                await http.put_item(
                    table=TABLE, item=item, condition="attribute_not_exists(key_hash)"
                )
            with pytest.raises(DependencyError, match="ResourceNotFoundException"):
                await http.put_item(table="no-such-table", item=item)
        finally:
            await http.reset()

    anyio.run(main)
    stored = boto3.client("dynamodb").get_item(
        TableName=TABLE, Key={"key_hash": item["key_hash"]}, ConsistentRead=True
    )
    assert stored["Item"] == item


class Scripted:
    """A DynamoDB stand-in on 127.0.0.1 answering each call with the next scripted answer
    (status, body); it keeps the headers it was sent."""

    def __init__(self, answers: list[tuple[int, bytes]]) -> None:
        self.answers = answers
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        await request.read()
        status, body = self.answers.pop(0) if self.answers else (200, b"{}")
        if status == 0:  # hang past the client's read timeout
            await anyio.sleep(5)
        return web.Response(status=status or 200, body=body)


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, str]]:
    script = Scripted([])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ready = threading.Event()
    stop: list[Any] = []

    def serve() -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_post("/", script.handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            done = anyio.Event()
            stop.append(done)
            ready.set()
            await done.wait()
            await runner.cleanup()

        import asyncio

        loop = asyncio.new_event_loop()
        stop.append(loop)
        loop.run_until_complete(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield script, f"http://127.0.0.1:{port}"
    loop, done = stop
    loop.call_soon_threadsafe(done.set)
    thread.join(10)


def _endpoint(url: str) -> Endpoint:
    from botocore.credentials import Credentials

    return Endpoint(url=url, region="us-east-1", credentials=Credentials("AKIDEXAMPLE", "secret"))


def _type(name: str) -> bytes:
    return b'{"__type":"com.amazonaws.dynamodb.v20120810#' + name.encode() + b'","message":"m"}'


def test_errors_map_as_botocore_errors_do_and_requests_are_signed(
    scripted: tuple[Scripted, str],
) -> None:
    script, url = scripted
    script.answers = [
        (400, _type("ThrottlingException")),
        (400, _type("ProvisionedThroughputExceededException")),
        (500, b"not json"),
        (400, _type("ValidationException")),
        (0, b""),
    ]
    http = _client(_endpoint(url), read_timeout=0.3)

    async def main() -> list[type[Exception]]:
        seen = []
        for _ in range(5):
            try:
                await http.put_item(table="t", item={"pk": {"S": "x"}})
            except Exception as exc:
                seen.append(type(exc))
        await http.reset()
        return seen

    assert anyio.run(main) == [RetryableError] * 3 + [DependencyError] * 2
    first = script.headers[0]
    assert first["X-Amz-Target"] == "DynamoDB_20120810.PutItem"
    assert first["Content-Type"] == "application/x-amz-json-1.0"
    assert first["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/dynamodb/aws4_request" in first["Authorization"]


def test_usage_store_retries_throttling_then_writes_once(
    scripted: tuple[Scripted, str], caplog: pytest.LogCaptureFixture
) -> None:
    script, url = scripted
    script.answers = [(400, _type("ThrottlingException")), (200, b"{}")]
    store = UsageStore(
        client=None,  # type: ignore[arg-type]  # the boto3 path is not used
        table="t",
        retention_days=30,
        deadline_seconds=2,
        http=_client(_endpoint(url)),
    )

    async def main() -> None:
        await store.record(usage_record("r-throttled"))
        await store.close()

    anyio.run(main)
    assert len(script.headers) == 2
    assert "usage_record_unwritten" not in caplog.text


def test_usage_store_logs_the_record_when_dynamodb_keeps_failing(
    scripted: tuple[Scripted, str], caplog: pytest.LogCaptureFixture
) -> None:
    script, url = scripted
    script.answers = [(400, _type("ValidationException"))]
    store = UsageStore(
        client=None,  # type: ignore[arg-type]
        table="t",
        retention_days=30,
        http=_client(_endpoint(url)),
    )

    async def main() -> None:
        await store.record(usage_record("r-refused"))
        await store.close()

    anyio.run(main)
    (line,) = [r for r in caplog.records if r.getMessage() == "usage_record_unwritten"]
    assert line.usage_record["request_id"] == "r-refused"  # type: ignore[attr-defined]
    assert "ValidationException" in line.reason  # type: ignore[attr-defined]


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize(
    "url", ["https://dynamodb.eu-west-1.amazonaws.com", "http://127.0.0.1:8123"]
)
def test_signature_equals_botocores(
    monkeypatch: pytest.MonkeyPatch, token: str | None, url: str
) -> None:
    """The hand-rolled SigV4 signs exactly as botocore's SigV4Auth for the same instant."""
    import datetime

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from gateway.dynamodb_http import SigV4

    instant = datetime.datetime(2026, 11, 28, 23, 5, 9)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: instant)
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = b'{"TableName":"t","Item":{"pk":{"S":"caf\xc3\xa9"}}}'
    target = "DynamoDB_20120810.PutItem"
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    botocore.auth.SigV4Auth(credentials, "dynamodb", "eu-west-1").add_auth(request)
    ours = SigV4("eu-west-1").headers(
        host=_endpoint(url).host,
        target=target,
        body=body,
        credentials=credentials.get_frozen_credentials(),
        amz_date=instant.strftime("%Y%m%dT%H%M%SZ"),
    )
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_an_unreachable_endpoint_is_retryable_as_nothing_was_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    http = _client(_endpoint(f"http://127.0.0.1:{port}"))

    async def main() -> None:
        with pytest.raises(RetryableError, match="unreachable"):
            await http.put_item(table="t", item={"pk": {"S": "x"}})
        await http.reset()

    anyio.run(main)
