"""The request path's DynamoDB client (JSON protocol over aiohttp): against moto's server
for what DynamoDB answers, and against a scripted server for the faults moto does not
produce; requests are signed by botocore's SigV4Auth, errors map as botocore's do
(gateway.aws.map_error), and nothing blocking runs on the event loop."""

from __future__ import annotations

import asyncio
import datetime
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from functools import partial
from typing import Any

import anyio
import boto3
import botocore.auth
import orjson
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.aws import AwsClients, ConditionFailed, Endpoint, RetryableError, botocore_errors
from gateway.dynamodb_http import DynamoDBHttp, host_header, signed_headers
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
    with closing(boto3.client("dynamodb")) as client:
        stored = client.get_item(
            TableName=TABLE, Key={"key_hash": item["key_hash"]}, ConsistentRead=True
        )
    assert stored["Item"] == item


class Scripted:
    """A DynamoDB stand-in on 127.0.0.1 answering each call with the next scripted answer
    (status, body); it keeps the headers and bodies it was sent."""

    def __init__(self, answers: list[tuple[int, bytes]]) -> None:
        self.answers = answers
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        self.bodies.append(await request.read())
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
    loop.close()  # the server thread's loop, closed here rather than left to gc


def _endpoint(url: str) -> Endpoint:
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


SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _botocore_authorization(
    url: str, received: dict[str, str], body: bytes, credentials: Credentials, region: str
) -> str:
    """The Authorization header botocore's signer computes for the request as the server
    received it (its Host, target and body) at the instant of its X-Amz-Date: what
    DynamoDB's verification expects."""
    instant = datetime.datetime.strptime(received["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Host": received["Host"],
            "Content-Type": received["Content-Type"],
            "X-Amz-Target": received["X-Amz-Target"],
        },
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda: instant)
        SigV4Auth(credentials, "dynamodb", region).add_auth(request)
    return str(request.headers["Authorization"])


@pytest.mark.parametrize("token", [None, "session-token"])
def test_requests_are_signed_by_botocores_signer(
    scripted: tuple[Scripted, str], monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    script, url = scripted
    credentials = Credentials("AKIDEXAMPLE", SECRET, token)
    signed: list[SigV4Auth] = []
    add_auth = SigV4Auth.add_auth

    def spy(self: SigV4Auth, request: AWSRequest) -> None:
        signed.append(self)
        add_auth(self, request)

    monkeypatch.setattr(SigV4Auth, "add_auth", spy)
    http = _client(Endpoint(url=url, region="eu-west-1", credentials=credentials))

    async def main() -> None:
        await http.put_item(table="t", item={"pk": {"S": "caf\u00e9"}})
        await http.reset()

    anyio.run(main)
    assert len(signed) == 1
    monkeypatch.undo()
    [received], [body] = script.headers, script.bodies
    assert received["X-Amz-Target"] == "DynamoDB_20120810.PutItem"
    assert received.get("X-Amz-Security-Token") == token
    assert received["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert received["Authorization"] == _botocore_authorization(
        url, received, body, credentials, "eu-west-1"
    )


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize(
    "url", ["https://dynamodb.eu-west-1.amazonaws.com", "http://127.0.0.1:8123"]
)
def test_signed_headers_are_an_awsrequests_signed_headers(
    monkeypatch: pytest.MonkeyPatch, url: str, token: str | None
) -> None:
    """The signer is handed a plain request object (not an AWSRequest, whose headers are an
    email Message): every header it sets, the signature included, is what botocore sets on an
    AWSRequest of the same request at the same instant."""
    instant = datetime.datetime(2026, 12, 7, 4, 30, 15)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: instant)
    credentials = Credentials("AKIDEXAMPLE", SECRET, token)
    endpoint = Endpoint(url=url, region="eu-west-1", credentials=credentials)
    body = orjson.dumps({"TableName": "t", "Item": {"pk": {"S": "caf\u00e9 \u4e2d"}}})
    host = host_header(endpoint)
    ours = signed_headers(endpoint, credentials, host=host, operation="PutItem", body=body)
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Host": host,
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.PutItem",
        },
    )
    SigV4Auth(credentials, "dynamodb", "eu-west-1").add_auth(request)
    assert ours == dict(request.headers.items())
    assert ours.get("X-Amz-Security-Token") == token


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://dynamodb.eu-west-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com"),
        ("https://DynamoDB.eu-west-1.amazonaws.com:443", "dynamodb.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:8123", "127.0.0.1:8123"),
        ("http://[::1]:8123", "[::1]:8123"),
    ],
)
def test_the_host_signed_is_botocores_for_the_url(url: str, host: str) -> None:
    assert host_header(_endpoint(url)) == host


def test_a_cancelled_transaction_maps_as_botocores_does(dynamodb: str) -> None:
    """A transaction cancelled by a false condition: the same ConditionFailed, with the
    same per-item codes, through this client as through boto3 (moto's real answer)."""
    aws = AwsClients()
    key = {"key_hash": {"S": f"dynamodb-http-tx-{uuid.uuid4().hex}"}}
    items = [
        {"Put": {"TableName": TABLE, "Item": {**key, "n": {"N": "1"}}}},
        {
            "ConditionCheck": {
                "TableName": TABLE,
                "Key": {"key_hash": {"S": "dynamodb-http-tx-absent"}},
                "ConditionExpression": "attribute_exists(key_hash)",
            }
        },
    ]
    with pytest.raises(ConditionFailed) as through_boto3, botocore_errors("DynamoDB"):
        aws.dynamodb.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
    http = _client(aws.dynamodb_endpoint())

    async def main() -> ConditionFailed:
        try:
            with pytest.raises(ConditionFailed) as info:
                await http.call("TransactWriteItems", {"TransactItems": items})
            return info.value
        finally:
            await http.reset()

    ours = anyio.run(main)
    assert ours.codes == through_boto3.value.codes == ("None", "ConditionalCheckFailed")


def _cancelled(*codes: str) -> bytes:
    return orjson.dumps(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons",
            "CancellationReasons": [{"Code": code} for code in codes],
        }
    )


def test_a_transaction_cancelled_by_a_conflict_is_retryable(
    scripted: tuple[Scripted, str],
) -> None:
    """Before aws.map_error took the body's CancellationReasons, every cancelled
    transaction through this client was a DependencyError."""
    script, url = scripted
    script.answers = [
        (400, _cancelled("None", "TransactionConflict")),
        (400, _cancelled("ConditionalCheckFailed", "None")),
        (400, _cancelled("ValidationError", "None")),
    ]
    http = _client(_endpoint(url))

    async def main() -> list[Exception]:
        seen = []
        for _ in range(3):
            try:
                await http.call("TransactWriteItems", {"TransactItems": []})
            except Exception as exc:
                seen.append(exc)
        await http.reset()
        return seen

    conflict, condition, invalid = anyio.run(main)
    assert isinstance(conflict, RetryableError)
    assert isinstance(condition, ConditionFailed)
    assert condition.codes == ("ConditionalCheckFailed", "None")
    assert type(invalid) is DependencyError


def _on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_the_endpoint_is_resolved_once_outside_the_event_loop(
    scripted: tuple[Scripted, str],
) -> None:
    """Resolving builds botocore's client and finds credentials (tens of milliseconds,
    maybe a metadata service call): never on the event loop."""
    _, url = scripted
    resolved: list[bool] = []

    def resolve() -> Endpoint:
        resolved.append(_on_the_loop())
        return _endpoint(url)

    http = DynamoDBHttp(endpoint=resolve, connect_timeout=1, read_timeout=2)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(partial(http.put_item, table="t", item={"pk": {"S": str(n)}}))
        await http.reset()

    anyio.run(main)
    assert resolved == [False]


def test_credentials_due_for_refresh_are_refreshed_outside_the_event_loop(
    scripted: tuple[Scripted, str],
) -> None:
    script, url = scripted
    refreshed: list[bool] = []

    def metadata(access_key: str, minutes: int) -> dict[str, str]:
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
        return {
            "access_key": access_key,
            "secret_key": SECRET,
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    def refresh() -> dict[str, str]:
        refreshed.append(_on_the_loop())
        return metadata("AKIDREFRESHED", 60)

    # Five minutes left: botocore refreshes within fifteen.
    credentials = RefreshableCredentials.create_from_metadata(
        metadata=metadata("AKIDEXPIRING", 5), refresh_using=refresh, method="test"
    )
    http = _client(Endpoint(url=url, region="us-east-1", credentials=credentials))

    async def main() -> None:
        await http.put_item(table="t", item={"pk": {"S": "x"}})
        await http.put_item(table="t", item={"pk": {"S": "y"}})
        await http.reset()

    anyio.run(main)
    assert refreshed == [False]
    assert [h["Authorization"].split("/")[0] for h in script.headers] == [
        "AWS4-HMAC-SHA256 Credential=AKIDREFRESHED"
    ] * 2


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
