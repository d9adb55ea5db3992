"""The local DynamoDB's DynamoDB behaviours (devstack.motofix, devstack.dynamodb): items
held by an in-flight transaction refuse other writes with DynamoDB's error shapes, and
latency, throttling and pauses are injected through the control endpoint."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from devstack.dynamodb import FaultControl
from devstack.tables import LOCAL_TABLE_NAMES

TABLE = LOCAL_TABLE_NAMES["UsageTable"]
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=5)


@pytest.fixture
def faults(dynamodb: str) -> Iterator[FaultControl]:
    control = FaultControl(dynamodb)
    yield control
    control.set(transaction_seconds=0, latency_seconds=0, throttle_rate=0, paused=False)


def key() -> dict[str, Any]:
    return {"pk": {"S": f"motofix#{uuid.uuid4().hex}"}, "sk": {"S": "x"}}


def add(k: dict[str, Any]) -> dict[str, Any]:
    return {"Update": {"TableName": TABLE, "Key": k, "UpdateExpression": "ADD n :one",
                       "ExpressionAttributeValues": {":one": {"N": "1"}}}}  # fmt: skip


def test_an_item_in_a_transaction_refuses_other_writes(faults: FaultControl) -> None:
    client = boto3.client("dynamodb", config=ONE_ATTEMPT)
    hot, other = key(), key()
    faults.set(transaction_seconds=1.0)
    holder = threading.Thread(target=lambda: client.transact_write_items(TransactItems=[add(hot)]))
    holder.start()
    time.sleep(0.3)
    with pytest.raises(ClientError) as single:
        client.update_item(TableName=TABLE, **{k: v for k, v in add(hot)["Update"].items()
                                               if k != "TableName"})  # fmt: skip
    assert single.value.response["Error"] == {
        "Code": "TransactionConflictException",
        "Message": "Operation was rejected because there is an ongoing transaction for the item.",
    }
    assert single.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as second:
        client.transact_write_items(TransactItems=[add(other), add(hot)])
    assert second.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert second.value.response["CancellationReasons"] == [
        {"Code": "None"},
        {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
    ]
    with pytest.raises(ClientError):
        client.put_item(TableName=TABLE, Item={**hot, "n": {"N": "5"}})
    holder.join()
    # The transaction applied once; nothing else did, not even the other item.
    assert client.get_item(TableName=TABLE, Key=hot)["Item"]["n"] == {"N": "1"}
    assert "Item" not in client.get_item(TableName=TABLE, Key=other)
    client.update_item(TableName=TABLE, **{k: v for k, v in add(hot)["Update"].items()
                                           if k != "TableName"})  # fmt: skip
    assert faults.state()["conflicts"]["update_item"] >= 1


def test_throttling_pauses_and_call_counts(faults: FaultControl) -> None:
    client = boto3.client("dynamodb", config=ONE_ATTEMPT)
    faults.set(throttle_rate=1.0, reset_counts=True)
    with pytest.raises(ClientError) as throttled:
        client.get_item(TableName=TABLE, Key=key())
    assert throttled.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    faults.set(throttle_rate=0)
    # this test's one call; a gateway of another test in this process may still be writing
    # its endpoints' load items in the background (UpdateItem), on the same server
    assert faults.calls().get("GetItem") == 1

    impatient = boto3.client(
        "dynamodb", config=Config(retries={"total_max_attempts": 1}, read_timeout=0.5)
    )
    with faults.paused():
        started = time.monotonic()
        with pytest.raises(Exception, match="Read timeout"):
            impatient.get_item(TableName=TABLE, Key=key())
        assert time.monotonic() - started < 2
    client.get_item(TableName=TABLE, Key=key())  # answers again once resumed


def test_concurrent_updates_each_return_the_item_as_they_left_it(dynamodb: str) -> None:
    """ReturnValues=UPDATED_NEW is the item as that update left it (DynamoDB's answer),
    not as a concurrent update changed it before moto read it back."""
    hot = key()
    clients = [boto3.client("dynamodb", config=ONE_ATTEMPT) for _ in range(4)]
    start = threading.Barrier(24)
    seen: list[int] = []

    def one(i: int) -> None:
        start.wait()
        answer = clients[i % 4].update_item(
            TableName=TABLE,
            Key=hot,
            UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        seen.append(int(answer["Attributes"]["n"]["N"]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1, 25))
