"""The usage table's layout: keys that sort as the queries need, items translated as boto3
translates them, and docs/USAGE.md's table in step with the code."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime
from decimal import Decimal, DecimalException
from pathlib import Path

import pytest
from boto3.dynamodb.types import TypeSerializer
from gateway import layout
from gateway.usage import UsageRecord, UsageStatus

DOCS = Path(__file__).resolve().parents[2] / "docs" / "USAGE.md"
AT = datetime(2026, 11, 29, 10, 0, 0, 123_000, tzinfo=UTC)


def test_a_records_sort_key_falls_inside_its_time_range_and_outside_others() -> None:
    sk = layout.record_sk(AT, "req_1")
    assert sk == "req#2026-11-29T10:00:00.123Z#req_1" and layout.is_record(sk)
    low, high = layout.records_between(AT, AT)  # both ends included, to the millisecond
    assert low <= sk <= high
    later = layout.records_between(datetime(2026, 11, 29, 10, 0, 1, tzinfo=UTC), None)
    assert not later[0] <= sk <= later[1]
    assert layout.records_between(None, None) == ("req#", "req#~")
    assert not layout.is_record(layout.day_sk("2026-11-29"))


def test_rollup_keys_and_their_day_ranges() -> None:
    day = "2026-11-29"
    per_model = layout.key_model_day_sk(day, "qwen3:8b#x")
    assert layout.day_of(per_model, layout.KEY_MODEL_DAY) == day
    assert layout.after_day(per_model, layout.KEY_MODEL_DAY) == "qwen3:8b#x"
    assert layout.after_day(layout.key_route_day_sk(day, "chat"), layout.KEY_ROUTE_DAY) == "chat"
    low, high = layout.days_between(layout.KEY_MODEL_DAY, date(2026, 11, 29), date(2026, 11, 29))
    assert low <= per_model <= high
    low, high = layout.days_between(layout.DAY, date(2026, 11, 30), None)
    assert not low <= layout.day_sk(day) <= high
    assert layout.day_sk(day).startswith(layout.month_days_prefix("2026-11"))
    assert not layout.day_sk("2026-12-01").startswith(layout.month_days_prefix("2026-11"))


def test_limit_and_endpoint_keys() -> None:
    minute = int(AT.timestamp() // 60)
    assert layout.window_sk(minute) == "win#2026-11-29T10:00"
    assert layout.window_minute(layout.window_sk(minute)) == minute
    assert layout.window_minute(layout.month_sk("2026-11")) is None
    assert (layout.endpoints_pk("m"), layout.endpoint_sk("a")) == ("endpoints#m", "ep#a")
    assert layout.load_sk("a") == "load#a"
    assert layout.item_key(layout.key_pk("k"), "s") == {"pk": {"S": "key#k"}, "sk": {"S": "s"}}


def test_items_are_translated_as_boto3_translates_them_and_back() -> None:
    values = {"s": "x", "n": 7, "f": 12.34567, "b": True, "none": None, "d": Decimal("2")}
    item = layout.to_item(values)
    serializer = TypeSerializer()
    assert item == {
        "s": serializer.serialize("x"),
        "n": serializer.serialize(7),
        "f": serializer.serialize(Decimal("12.346")),  # kept to 3 decimals
        "b": serializer.serialize(True),
        "d": serializer.serialize(Decimal("2")),
    }
    assert layout.from_item(item) == {"s": "x", "n": 7, "f": 12.346, "b": True, "d": 2}
    # the plain str and int shortcut writes what TypeSerializer writes, and leaves the rest
    # (bools, str and int subclasses, ints past 38 digits) to it
    tricky = {
        "empty": "", "neg": -5, "zero": 0, "big": 10**37, "false": False,
        "status": UsageStatus.COMPLETED, "unicode": "caf\u00e9 \U0001f600",
    }  # fmt: skip
    assert layout.to_item(tricky) == {k: serializer.serialize(v) for k, v in tricky.items()}
    with pytest.raises(DecimalException):
        layout.to_item({"huge": 10**40})  # refused by TypeSerializer, as before
    # finite floats too: rounded to 3 decimals, then written as TypeSerializer writes them
    floats = [0.0, -0.0, 1.0005, 2.5e-7, -3.14159, 1e20, 9.9e124, 123456789.1234, 0.1 + 0.2]
    rng = random.Random(7)
    floats += [rng.uniform(-1, 1) * 10 ** rng.randint(-6, 124) for _ in range(2000)]
    for number in floats:
        wanted = serializer.serialize(Decimal(str(round(number, 3))))
        assert layout.to_item({"f": number}) == {"f": wanted}, number
    for number in (float("inf"), float("nan"), 1.5e300, -2e127):
        with pytest.raises((TypeError, DecimalException)):  # refused by TypeSerializer
            layout.to_item({"f": number})
    assert layout.number(item, "n") == 7 and layout.number(item, "absent") == 0
    assert layout.number(None, "n") == 0
    assert layout.plain(Decimal("1.5")) == 1.5 and layout.plain("a") == "a"


def test_a_usage_record_round_trips_through_its_item() -> None:
    record = UsageRecord(
        request_id="req_1",
        key_id="key_1",
        model="qwen3",
        endpoint="http://gpu",
        created_at=AT,
        stream=True,
        status=UsageStatus.CLIENT_DISCONNECTED,
        prompt_tokens=10,
        completion_tokens=3,
        latency_ms=12.5,
        flags="upstream_usage_invalid",
    )
    item = record.to_item(retention_days=30)
    assert item["pk"] == {"S": "key#key_1"} and item["sk"] == {"S": record.sk}
    assert int(item["expires_at"]["N"]) == int(AT.timestamp()) + 30 * 86_400
    assert "error" not in item  # None values are not stored
    assert UsageRecord.from_item(item) == record


def test_docs_usage_table_lists_exactly_the_item_kinds_the_code_writes() -> None:
    """docs/USAGE.md's table is the schema's one description: its key prefixes are the
    ones layout.py builds, no more and no fewer."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## The usage table") :]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| item |"))
    rows = []
    for line in lines[start + 2 :]:  # after the header and its |---| line: the first table
        if not line.startswith("|"):
            break
        rows.append(line)
    cells = [re.findall(r"`([a-z]+#)", row) for row in rows]
    documented = {(found[0], found[1]) for found in cells if len(found) >= 2}
    code = {
        (layout.key_pk(""), layout.RECORD),
        (layout.key_pk(""), layout.DAY),
        (layout.key_pk(""), layout.KEY_MODEL_DAY),
        (layout.key_pk(""), layout.KEY_ROUTE_DAY),
        (layout.model_pk(""), layout.DAY),
        (layout.key_pk(""), layout.WINDOW),
        (layout.key_pk(""), layout.MONTH),
        (layout.endpoints_pk(""), layout.ENDPOINT),
        (layout.endpoints_pk(""), layout.LOAD),
    }
    assert documented == code
