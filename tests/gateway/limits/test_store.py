"""Per-key limits on moto's in-process DynamoDB, with an injected clock (no sleeps).

Settling is the aggregator's (usage/aggregate.py): `settle` below does what a request and
the aggregator do, a raw record carrying the reservation, then its aggregation."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.errors import DependencyError, RateLimitError
from gateway.keys.apikey import ApiKey
from gateway.layout import month_sk, window_sk
from gateway.limits import Admission, BudgetExceededError, LimitStore
from gateway.usage import UsageRecord, UsageStore
from gateway.usage.aggregate import Aggregator

TABLE = LOCAL_TABLE_NAMES["UsageTable"]
# 48 s into a minute: the window resets in 12 s.
T0 = datetime(2026, 11, 22, 10, 4, 48, tzinfo=UTC).timestamp()
MINUTE = int(T0 // 60)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingClient:
    """Forwards to the real client, counting calls; `fail` names operations to break."""

    def __init__(self, client: Any, fail: Any = None, code: str = "InternalServerError") -> None:
        self._client = client
        self.calls: list[str] = []
        self.fail = fail or (lambda name, kwargs: False)
        self.code = code

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            if self.fail(name, kwargs):
                raise ClientError({"Error": {"Code": self.code}}, name)
            return method(**kwargs)

        return call


class NoCalls:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected DynamoDB call: {name}")


@pytest.fixture
def client(mock_dynamodb: Any) -> Any:
    return mock_dynamodb


def settle(client: Any, admission: Admission, *, used: int, clock: Clock) -> UsageRecord:
    """The request's record, carrying its reservation, then the aggregator's pass."""
    record = UsageRecord(
        request_id=uuid.uuid4().hex, key_id=admission.key_id, model="m", endpoint="e",
        stream=False, created_at=datetime.fromtimestamp(clock.now, UTC), prompt_tokens=used,
        reserved_tokens=admission.reserved_tokens,
        reserved_window_minute=admission.window_minute, reserved_month=admission.month,
    )  # fmt: skip
    UsageStore(client=client, table=TABLE, retention_days=30).write(record)
    Aggregator(client=client, table=TABLE, clock=clock).apply([record])
    return record


def key(**limits: Any) -> ApiKey:
    return ApiKey(key_id="key_a", key_hash="h", name="n", owner="o", **limits)


def counters(client: Any, sk: str, key_id: str = "key_a") -> dict[str, int]:
    item = client.get_item(TableName=TABLE, Key={"pk": {"S": f"key#{key_id}"}, "sk": {"S": sk}})
    return {
        k: int(v["N"]) for k, v in item.get("Item", {}).items() if "N" in v and k != "expires_at"
    }


def test_keys_without_limits_make_no_call() -> None:
    store = LimitStore(client=NoCalls(), table=TABLE)  # type: ignore[arg-type]
    admission = store.admit(key=key(), reserve_tokens=500)
    assert admission == Admission(key_id="key_a")
    assert admission.headers == {}


def test_admits_rpm_requests_per_minute_then_refuses(client: Any) -> None:
    clock = Clock()
    counting = CountingClient(client)
    store = LimitStore(client=counting, table=TABLE, clock=clock)  # type: ignore[arg-type]
    k = key(rpm=3)
    remaining = [store.admit(key=k, reserve_tokens=10).headers for _ in range(3)]
    assert counting.calls == ["update_item"] * 3  # one call per admission
    assert [h["x-ratelimit-remaining-requests"] for h in remaining] == ["2", "1", "0"]
    assert remaining[0] == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "12s",
    }
    with pytest.raises(RateLimitError) as refused:
        store.admit(key=k, reserve_tokens=10)
    assert refused.value.status_code == 429
    assert refused.value.headers == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "12s",
        "Retry-After": "12",
    }
    assert "requests per minute (RPM): limit 3, used 3" in refused.value.message
    assert counting.calls == ["update_item"] * 4  # ALL_OLD told why: no follow-up read
    assert counters(client, window_sk(MINUTE)) == {"requests": 3}  # refusal consumed nothing

    clock.now += 12  # the next minute
    assert store.admit(key=k, reserve_tokens=10).headers["x-ratelimit-remaining-requests"] == "2"


def test_tpm_reserves_and_settles(client: Any) -> None:
    clock = Clock()
    store = LimitStore(client=client, table=TABLE, clock=clock)
    k = key(tpm=1000)
    first = store.admit(key=k, reserve_tokens=400)
    assert first.reserved_tokens == 400 and first.window_minute == MINUTE and first.month is None
    assert first.headers == {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "600",
        "x-ratelimit-reset-tokens": "12s",
    }
    store.admit(key=k, reserve_tokens=400)
    with pytest.raises(RateLimitError) as refused:
        store.admit(key=k, reserve_tokens=400)  # 800 + 400 > 1000
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "200"
    assert refused.value.headers["Retry-After"] == "12"
    assert "TPM): limit 1000, used 800, requested 400" in refused.value.message

    # The first request used 150 of its 400: settling frees 250 in this minute.
    settle(client, first, used=150, clock=clock)
    assert counters(client, window_sk(MINUTE)) == {"tokens": 550}
    third = store.admit(key=k, reserve_tokens=400)
    assert third.headers["x-ratelimit-remaining-tokens"] == "50"

    # Settling after the minute is over touches nothing: that window limits nothing now.
    clock.now += 60
    settle(client, third, used=10, clock=clock)
    assert counters(client, window_sk(MINUTE)) == {"tokens": 950}


def test_reservation_larger_than_a_limit_is_refused_without_a_call() -> None:
    store = LimitStore(client=NoCalls(), table=TABLE, clock=Clock())  # type: ignore[arg-type]
    with pytest.raises(RateLimitError) as too_large:
        store.admit(key=key(rpm=10, tpm=100), reserve_tokens=101)
    assert "Request too large for tokens per minute (TPM): limit 100, requested 101" in (
        too_large.value.message
    )
    assert too_large.value.headers["x-should-retry"] == "false"
    assert "Retry-After" not in too_large.value.headers  # waiting would not help
    with pytest.raises(BudgetExceededError) as over_budget:
        store.admit(key=key(monthly_tokens=1000), reserve_tokens=1001)
    assert over_budget.value.status_code == 429
    assert over_budget.value.to_dict()["error"]["code"] == "insufficient_quota"
    assert "monthly token budget: limit 1000, requested 1001" in over_budget.value.message
    with pytest.raises(RateLimitError):
        store.admit(key=key(rpm=0), reserve_tokens=1)


def test_monthly_budget_refuses_until_next_month(client: Any) -> None:
    clock = Clock()
    store = LimitStore(client=client, table=TABLE, clock=clock)
    k = key(monthly_tokens=1000)
    admissions = [store.admit(key=k, reserve_tokens=300) for _ in range(3)]
    assert admissions[0].month == "2026-11" and admissions[0].window_minute is None
    assert admissions[-1].headers == {
        "x-ratelimit-limit-tokens-month": "1000",
        "x-ratelimit-remaining-tokens-month": "100",
        "x-ratelimit-reset-tokens-month": "205h55m12s",  # to 2026-12-01T00:00Z
    }
    with pytest.raises(BudgetExceededError) as refused:
        store.admit(key=k, reserve_tokens=300)
    assert refused.value.headers["Retry-After"] == str(205 * 3600 + 55 * 60 + 12)
    assert refused.value.headers["x-should-retry"] == "false"
    assert refused.value.headers["x-ratelimit-remaining-tokens-month"] == "100"
    assert "used 900, requested 300. It resets at 2026-12-01T00:00:00Z" in refused.value.message
    assert store.month_tokens(key_id="key_a") == 900

    # Settling to the real usage makes room again; the month never goes over.
    for admission in admissions:
        settle(client, admission, used=200, clock=clock)
    assert store.month_tokens(key_id="key_a", month="2026-11") == 600
    store.admit(key=k, reserve_tokens=300)
    with pytest.raises(BudgetExceededError):
        store.admit(key=k, reserve_tokens=101)
    assert counters(client, month_sk("2026-11")) == {"tokens": 900}

    clock.now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert store.admit(key=k, reserve_tokens=300).month == "2026-12"
    assert store.month_tokens(key_id="key_a") == 300


def test_all_limits_in_one_call_and_a_refusal_consumes_nothing(client: Any) -> None:
    counting = CountingClient(client)
    clock = Clock()
    store = LimitStore(client=counting, table=TABLE, clock=clock)  # type: ignore[arg-type]
    k = key(rpm=100, tpm=10_000, monthly_tokens=500)
    admission = store.admit(key=k, reserve_tokens=400)
    assert counting.calls == ["update_item"]  # window and month: one item, one call
    assert set(admission.headers) == {
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
        "x-ratelimit-limit-tokens-month", "x-ratelimit-remaining-tokens-month",
        "x-ratelimit-reset-tokens-month",
    }  # fmt: skip
    assert admission.headers["x-ratelimit-remaining-requests"] == "99"
    assert admission.headers["x-ratelimit-remaining-tokens"] == "9600"
    assert admission.headers["x-ratelimit-remaining-tokens-month"] == "100"
    counting.calls.clear()
    with pytest.raises(BudgetExceededError):
        store.admit(key=k, reserve_tokens=400)
    assert counting.calls == ["update_item"]  # refused by its condition: nothing to undo
    month = {"tokens": 400, f"w{MINUTE}r": 1, f"w{MINUTE}t": 400}
    assert counters(client, month_sk("2026-11")) == month

    # Both reservations settle with the usage record's aggregation.
    settle(client, admission, used=100, clock=clock)
    assert counters(client, month_sk("2026-11")) == {
        "tokens": 100, f"w{MINUTE}r": 1, f"w{MINUTE}t": 100,
    }  # fmt: skip
    # A later minute's admission removes the earlier minutes' window attributes.
    clock.now += 60
    store.admit(key=k, reserve_tokens=10)
    assert counters(client, month_sk("2026-11")) == {
        "tokens": 110, f"w{MINUTE + 1}r": 1, f"w{MINUTE + 1}t": 10,
    }  # fmt: skip


def test_window_refusal_leaves_the_month_alone(client: Any) -> None:
    store = LimitStore(client=client, table=TABLE, clock=Clock())
    k = key(rpm=1, monthly_tokens=1000)
    store.admit(key=k, reserve_tokens=100)
    with pytest.raises(RateLimitError) as refused:
        store.admit(key=k, reserve_tokens=100)
    assert not isinstance(refused.value, BudgetExceededError)
    assert "requests per minute (RPM): limit 1, used 1" in refused.value.message
    assert counters(client, month_sk("2026-11")) == {"tokens": 100, f"w{MINUTE}r": 1}


def test_settling_happens_once_however_often_the_aggregator_sees_the_record(
    client: Any,
) -> None:
    clock = Clock()
    store = LimitStore(client=client, table=TABLE, clock=clock)
    admission = store.admit(key=key(monthly_tokens=1000), reserve_tokens=500)
    record = settle(client, admission, used=50, clock=clock)
    again = Aggregator(client=client, table=TABLE, clock=clock).apply([record, record])
    assert (again.counted, again.already) == (0, 1)
    assert store.month_tokens(key_id="key_a") == 50


def test_conflicts_are_retried_quickly_within_the_deadline(client: Any) -> None:
    """An item busy in the aggregator's transaction: admission retries, no 503."""
    busy = iter([True, True, False])
    counting = CountingClient(
        client, fail=lambda name, kw: next(busy), code="TransactionConflictException"
    )
    store = LimitStore(client=counting, table=TABLE, clock=Clock())  # type: ignore[arg-type]
    admission = store.admit(key=key(monthly_tokens=1000), reserve_tokens=10)
    assert admission.month == "2026-11" and counting.calls == ["update_item"] * 3

    always = CountingClient(client, fail=lambda n, kw: True, code="TransactionConflictException")
    store = LimitStore(client=always, table=TABLE, clock=Clock())  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(DependencyError):
        store.admit(key=key(monthly_tokens=1000), reserve_tokens=10, deadline=started + 0.2)
    assert time.monotonic() - started < 0.5 and len(always.calls) > 3


def test_admit_within_refuses_with_503_at_its_deadline(client: Any) -> None:
    class Hangs:
        def update_item(self, **kw: Any) -> Any:
            time.sleep(3)
            return client.update_item(**kw)

    store = LimitStore(client=Hangs(), table=TABLE, deadline_seconds=0.2)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(DependencyError) as refused:
        anyio.run(lambda: store.admit_within(key=key(rpm=5), reserve_tokens=1, request_id="r1"))
    assert time.monotonic() - started < 1.0
    assert refused.value.status_code == 503


def test_month_tokens_without_budget_sums_daily_rollups(client: Any) -> None:
    store = LimitStore(client=client, table=TABLE, clock=Clock())
    assert store.month_tokens(key_id="key_a") == 0
    usage = UsageStore(client=client, table=TABLE, retention_days=30)

    for i, day in enumerate((1, 22, 30)):
        usage.write(
            UsageRecord(
                request_id=f"r{i}", key_id="key_a", model="m", endpoint="e", stream=False,
                created_at=datetime(2026, 11, day, tzinfo=UTC), prompt_tokens=10,
                completion_tokens=5,
            )
        )  # fmt: skip
    usage.write(
        UsageRecord(
            request_id="dec", key_id="key_a", model="m", endpoint="e", stream=False,
            created_at=datetime(2026, 12, 1, tzinfo=UTC), prompt_tokens=1000,
        )
    )  # fmt: skip
    records = [r for r in usage.query(key_id="key_a")]
    Aggregator(client=client, table=TABLE).apply(records)
    assert store.month_tokens(key_id="key_a") == 45
    assert store.month_tokens(key_id="key_a", month="2026-12") == 1000


def test_dynamodb_failures_are_dependency_errors(client: Any) -> None:
    def month_fails(name: str, kwargs: dict[str, Any]) -> bool:
        return str(kwargs.get("Key", {}).get("sk", {}).get("S", "")).startswith("month#")

    counting = CountingClient(client, fail=month_fails)
    store = LimitStore(client=counting, table=TABLE, clock=Clock())  # type: ignore[arg-type]
    with pytest.raises(DependencyError):
        store.admit(key=key(rpm=5, monthly_tokens=1000), reserve_tokens=10)
    # one update (window and month), a 5xx: retried quickly, then given up
    assert counting.calls == ["update_item"] * 7
    assert counters(client, month_sk("2026-11")) == {}

    broken = CountingClient(client, fail=lambda name, kwargs: True)
    store = LimitStore(client=broken, table=TABLE, clock=Clock())  # type: ignore[arg-type]
    with pytest.raises(DependencyError):
        store.admit(key=key(rpm=5), reserve_tokens=10)
