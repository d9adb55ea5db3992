"""Settling an admission whose answer the gateway never had (usage/unconfirmed.py): refunded
once if it landed, however often the aggregator sees its record; never if it did not; and
barred from landing after its settlement. The record goes through the request path's sink
(metering/sink.py) and the aggregator reads it from the table's stream, as Lambda would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from gateway.keys.apikey import ApiKey
from gateway.limits import Admission, LimitStore
from gateway.limits.items import FENCE, window_attributes
from gateway.metering.sink import UsageSink
from gateway.usage import UsageRecord, UsageStatus, UsageStore
from gateway.usage.aggregate import Aggregator
from gateway.usage.batches import aggregate

from tests.gateway.limits.test_admission import Unanswered, admit_unanswered, markers
from tests.gateway.limits.test_store import T0, Clock, counters
from tests.support.records import usage_record
from tests.support.usage import TABLE, poller

MONTH = "month#2026-11"
MINUTE = int(T0 // 60)
TOKENS = window_attributes(MINUTE)[1]


@pytest.fixture
def client(mock_dynamodb: Any) -> Any:
    return mock_dynamodb


def budget_key() -> ApiKey:
    return ApiKey(key_id="key_a", key_hash="h", name="n", owner="o", tpm=10_000,
                  monthly_tokens=10_000)  # fmt: skip


def record(client: Any, request_id: str, admission: Admission, **figures: Any) -> UsageRecord:
    """The request's one record, written as the Meter's sink writes it."""
    values: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0}
    if not admission.confirmed:  # the 503 of a lost answer: nothing forwarded
        values |= {"status": UsageStatus.REJECTED, "http_status": 503}
    values |= figures
    usage = usage_record(request_id=request_id, created_at=datetime.fromtimestamp(T0, UTC),
                         **values)  # fmt: skip
    sink = UsageSink(usage=UsageStore(client=client, table=TABLE, retention_days=30))
    anyio.run(lambda: sink.write(usage, admission=admission))
    return usage


def served(client: Any, request_id: str) -> UsageRecord:
    """A request admitted (answer received) that used 50 of its 300 reserved tokens."""
    store = LimitStore(client=client, table=TABLE, clock=Clock())
    admission = store.admit(key=budget_key(), reserve_tokens=300, request_id=request_id)
    return record(client, request_id, admission, prompt_tokens=20, completion_tokens=30)


def unanswered(client: Any, request_id: str, *, lands: bool, release: bool = True) -> Any:
    slow = Unanswered(client, lands=lands)
    store = LimitStore(client=slow, table=TABLE, clock=Clock(), deadline_seconds=0.05)  # type: ignore[arg-type]
    lost = admit_unanswered(store, budget_key(), request_id)
    if release:
        slow.release.set()
        assert slow.done.wait(timeout=30)
    written = record(client, request_id, lost.admission)
    assert written.reserved_unconfirmed_ms == int(T0 * 1000)
    assert (written.reserved_tokens, written.reserved_month) == (300, "2026-11")
    return slow


def test_a_landed_admission_whose_answer_was_lost_is_settled_once(client: Any) -> None:
    served(client, "r0")
    unanswered(client, "r1", lands=True)
    assert counters(client, MONTH)["tokens"] == 600  # both reservations landed

    stream = poller(client, clock=Clock())
    stream.drain()
    event = stream.last_event
    assert event is not None and len(event["Records"]) == 2
    settled = counters(client, MONTH)
    assert settled == {"tokens": 50, TOKENS: 50}  # the records' sum: 50 + 0
    assert markers(client) == set()  # both marks gone: the item stays small

    # Lambda delivers the same stream records again, twice: no count changes (finding no
    # marker, the replay raises the fence to r1's admission, which is settled already).
    aggregator = Aggregator(client=client, table=TABLE, clock=Clock())
    for _ in range(2):
        assert aggregate(event, aggregator=aggregator) == {"batchItemFailures": []}
        assert counters(client, MONTH) == settled | {FENCE: int(T0 * 1000)}
        assert markers(client) == set()


def test_replaying_an_unconfirmed_record_refunds_it_once(client: Any) -> None:
    unanswered(client, "r1", lands=True)
    [stored] = UsageStore(client=client, table=TABLE, retention_days=30).query(key_id="key_a")
    aggregator = Aggregator(client=client, table=TABLE, clock=Clock())
    first = aggregator.apply([stored])
    assert (first.counted, first.refunded) == (1, 1)
    again = aggregator.apply([stored, stored])
    assert (again.counted, again.already, again.refunded) == (0, 1, 0)
    assert counters(client, MONTH) == {"tokens": 0, TOKENS: 0, FENCE: int(T0 * 1000)}


def test_an_admission_that_never_landed_is_not_refunded(client: Any) -> None:
    served(client, "r0")
    unanswered(client, "r1", lands=False)
    assert counters(client, MONTH)["tokens"] == 300  # only r0's reservation

    poller(client, clock=Clock()).drain()
    assert counters(client, MONTH) == {"tokens": 50, TOKENS: 50, FENCE: int(T0 * 1000)}


def test_an_admission_landing_after_its_settlement_is_barred(client: Any) -> None:
    """The record reaches the aggregator before DynamoDB applies the update (a pause that
    holds the call): the fence keeps the update from landing at all."""
    served(client, "r0")
    slow = unanswered(client, "r1", lands=True, release=False)
    poller(client, clock=Clock()).drain()
    assert counters(client, MONTH) == {"tokens": 50, TOKENS: 50, FENCE: int(T0 * 1000)}

    slow.release.set()  # the held update arrives now
    assert slow.done.wait(timeout=30)
    assert "ConditionalCheckFailed" in str(slow.error)
    assert counters(client, MONTH) == {"tokens": 50, TOKENS: 50, FENCE: int(T0 * 1000)}
    assert markers(client) == set()


def test_a_later_admission_is_not_barred_by_the_fence(client: Any) -> None:
    unanswered(client, "r1", lands=False)
    poller(client, clock=Clock()).drain()
    store = LimitStore(client=client, table=TABLE, clock=Clock(T0 + 0.001))
    admission = store.admit(key=budget_key(), reserve_tokens=300, request_id="r2")
    assert admission.headers["x-ratelimit-remaining-tokens-month"] == "9700"
