"""Admissions whose answer is lost (limits/admission.py): what they carry, how they mark the
month item, and how the marks are kept few. On moto's in-process DynamoDB; a call that
"hangs" waits on an event the test sets, so nothing here depends on timing."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.errors import DependencyError
from gateway.keys.apikey import ApiKey
from gateway.layout import month_sk
from gateway.limits import AdmissionUnconfirmedError, BudgetExceededError, LimitStore
from gateway.limits.items import FENCE, MARKER_PREFIX, marker_attribute

from tests.gateway.limits.test_store import T0, Clock, counters, key

TABLE = LOCAL_TABLE_NAMES["UsageTable"]
MONTH = month_sk("2026-11")


@pytest.fixture
def client(mock_dynamodb: Any) -> Any:
    return mock_dynamodb


class Unanswered:
    """A DynamoDB whose update_item answers too late for the admission's deadline: it waits
    for `release`, then the update lands (`lands`) or not, and the caller gets a read
    timeout either way (botocore's own error)."""

    def __init__(self, client: Any, *, lands: bool) -> None:
        self._client = client
        self.lands = lands
        self.release = threading.Event()
        self.done = threading.Event()
        self.error: Exception | None = None

    def update_item(self, **kwargs: Any) -> Any:
        self.release.wait(timeout=30)
        try:
            if self.lands:
                self._client.update_item(**kwargs)
        except Exception as exc:  # kept for the test to look at
            self.error = exc
        finally:
            self.done.set()
        raise ReadTimeoutError(endpoint_url="http://dynamodb")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def admit_unanswered(store: LimitStore, budget_key: ApiKey, request_id: str) -> Any:
    with pytest.raises(AdmissionUnconfirmedError) as lost:
        anyio.run(
            lambda: store.admit_within(key=budget_key, reserve_tokens=300, request_id=request_id)
        )
    return lost.value


def markers(client: Any) -> set[str]:
    item = client.get_item(TableName=TABLE, Key={"pk": {"S": "key#key_a"}, "sk": {"S": MONTH}})
    names = item.get("Item", {}).keys()
    return {n for n in names if n.startswith(MARKER_PREFIX)}


def test_an_unanswered_admission_is_a_503_carrying_what_it_would_have_reserved(
    client: Any,
) -> None:
    slow = Unanswered(client, lands=True)
    store = LimitStore(client=slow, table=TABLE, clock=Clock(), deadline_seconds=0.05)  # type: ignore[arg-type]
    lost = admit_unanswered(store, key(tpm=10_000, monthly_tokens=1000), "req-1")
    assert lost.status_code == 503 and isinstance(lost, DependencyError)
    admission = lost.admission
    assert not admission.confirmed and admission.headers == {}
    assert (admission.reserved_tokens, admission.month) == (300, "2026-11")
    assert admission.window_minute == int(T0 // 60)
    assert admission.marker == marker_attribute("req-1")
    assert admission.sent_ms == int(T0 * 1000)

    slow.release.set()  # DynamoDB answers at last: the update lands, with its marker
    assert slow.done.wait(timeout=30) and slow.error is None
    assert counters(client, MONTH)["tokens"] == 300
    assert markers(client) == {marker_attribute("req-1")}


def test_a_failure_before_any_answer_is_unconfirmed_too(client: Any) -> None:
    """A 5xx may have been applied (DynamoDB says so): the outcome is unknown."""
    slow = Unanswered(client, lands=False)
    slow.release.set()
    store = LimitStore(client=slow, table=TABLE, clock=Clock(), deadline_seconds=5)  # type: ignore[arg-type]
    lost = admit_unanswered(store, key(monthly_tokens=1000), "req-1")
    assert lost.admission.window_minute is None and not lost.admission.confirmed


def test_a_window_without_budget_is_a_plain_503(client: Any) -> None:
    """A window's reservation lapses with its minute: nothing to settle later."""
    slow = Unanswered(client, lands=False)
    slow.release.set()
    store = LimitStore(client=slow, table=TABLE, clock=Clock(), deadline_seconds=5)  # type: ignore[arg-type]
    with pytest.raises(DependencyError) as refused:
        anyio.run(lambda: store.admit_within(key=key(tpm=1000), reserve_tokens=3, request_id="r"))
    assert not isinstance(refused.value, AdmissionUnconfirmedError)


class LandsThenFails:
    """The first update lands, and its answer is a 500 (which DynamoDB may send for a
    write it applied): admission retries it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0

    def update_item(self, **kwargs: Any) -> Any:
        self.calls += 1
        answer = self._client.update_item(**kwargs)
        if self.calls == 1:
            raise ClientError({"Error": {"Code": "InternalServerError"}}, "UpdateItem")
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_retried_admission_that_had_landed_counts_once(client: Any) -> None:
    flaky = LandsThenFails(client)
    store = LimitStore(client=flaky, table=TABLE, clock=Clock())  # type: ignore[arg-type]
    admission = store.admit(key=key(monthly_tokens=1000), reserve_tokens=300, request_id="r1")
    assert flaky.calls == 2 and admission.confirmed
    assert admission.headers["x-ratelimit-remaining-tokens-month"] == "700"
    assert counters(client, MONTH)["tokens"] == 300


def test_an_instance_removes_its_confirmed_markers_with_its_next_admission(client: Any) -> None:
    store = LimitStore(client=client, table=TABLE, clock=Clock())
    budget = key(monthly_tokens=100_000)
    for i in range(3):
        store.admit(key=budget, reserve_tokens=10, request_id=f"r{i}")
        assert markers(client) == {marker_attribute(f"r{i}")}
    # A refused admission removes nothing; the next admitted one does.
    with pytest.raises(BudgetExceededError):
        store.admit(key=key(monthly_tokens=1), reserve_tokens=1, request_id="x")
    store.admit(key=budget, reserve_tokens=10, request_id="r3")
    assert markers(client) == {marker_attribute("r3")}
    assert counters(client, MONTH)["tokens"] == 40


def test_the_fence_bars_an_admission_sent_before_it(client: Any) -> None:
    client.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "key#key_a"}, "sk": {"S": MONTH}},
        UpdateExpression="SET #f = :t",
        ExpressionAttributeNames={"#f": FENCE},
        ExpressionAttributeValues={":t": {"N": str(int(T0 * 1000))}},
    )
    store = LimitStore(client=client, table=TABLE, clock=Clock())
    with pytest.raises(DependencyError) as late:
        store.admit(key=key(monthly_tokens=1000), reserve_tokens=300, request_id="late")
    assert late.value.status_code == 503 and "after its settlement" in late.value.message
    assert counters(client, MONTH) == {FENCE: int(T0 * 1000)}
    later = LimitStore(client=client, table=TABLE, clock=Clock(T0 + 0.001))
    later.admit(key=key(monthly_tokens=1000), reserve_tokens=300, request_id="next")
    assert counters(client, MONTH)["tokens"] == 300
