"""`gateway usage rebuild-rollups --day D`: a day's rollups recomputed exactly from its raw
records, whatever happened to them, without racing the aggregator."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from gateway.cli import main
from gateway.usage import UsageStore
from gateway.usage.aggregate import COUNTERS, rollup_keys, rollup_values

from tests.support.records import usage_record
from tests.support.usage import TABLE, drain


def rollups(client: Any) -> dict[tuple[str, str], dict[str, int]]:
    items = client.scan(TableName=TABLE)["Items"]
    return {
        (i["pk"]["S"], i["sk"]["S"]): {n: int(i[n]["N"]) for n in COUNTERS}
        for i in items
        if i["sk"]["S"].startswith(("day#2026-11-22", "mday#2026-11-22#", "rday#2026-11-22#"))
    }


def test_rebuild_restores_a_day_exactly(
    mock_dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = mock_dynamodb
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    records = [
        usage_record(request_id=f"r{i}", key_id=f"k{i % 3}", model=f"m{i % 2}", prompt_tokens=i)
        for i in range(20)
    ]
    records.append(
        usage_record(request_id="other-day", created_at=datetime(2026, 11, 23, tzinfo=UTC))
    )
    for record in records:
        store.write(record)
    drain(client)
    exact = rollups(client)
    # Damage: one rollup wrong, one gone, one that no record explains.
    client.put_item(TableName=TABLE, Item={"pk": {"S": "key#k0"}, "sk": {"S": "day#2026-11-22"},
                                           **{n: {"N": "7"} for n in COUNTERS}})  # fmt: skip
    client.delete_item(
        TableName=TABLE, Key={"pk": {"S": "model#m1"}, "sk": {"S": "day#2026-11-22"}}
    )
    client.put_item(TableName=TABLE, Item={"pk": {"S": "model#ghost"}, "sk": {"S": "day#2026-11-22"},
                                           **{n: {"N": "1"} for n in COUNTERS}})  # fmt: skip
    late = usage_record(request_id="late", key_id="k1", model="m0", prompt_tokens=100)
    store.write(late)  # not aggregated yet: left to the aggregator

    assert main(["usage", "rebuild-rollups", "--day", "2026-11-22"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("2026-11-22: 21 raw records (1 not aggregated yet")
    assert "rollups: 2 rewritten, 1 deleted" in out and "0 changed meanwhile" in out
    assert "gateway: scanned " in err
    assert rollups(client) == exact

    drain(client)  # the aggregator adds the late record on top: exact again
    expected: dict[tuple[str, str], Counter[str]] = {}
    for record in [*records[:20], late]:
        for key in rollup_keys(record):
            expected.setdefault(key, Counter()).update(rollup_values(record))
    assert rollups(client) == {k: {n: v[n] for n in COUNTERS} for k, v in expected.items()}
    assert main(["usage", "rebuild-rollups", "--day", "2026-11-22"]) == 0
    assert "0 rewritten, 0 deleted" in capsys.readouterr().out


def route_rollups(client: Any) -> dict[tuple[str, str], dict[str, int]]:
    items = client.scan(TableName=TABLE)["Items"]
    return {
        (i["pk"]["S"], i["sk"]["S"]): {n: int(i[n]["N"]) for n in COUNTERS}
        for i in items
        if i["sk"]["S"].startswith("rday#2026-11-22#")
    }


def test_rebuild_recomputes_route_rollups_exactly(
    mock_dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = mock_dynamodb
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    routes = ("chat", "completions", "embeddings")
    records = [
        usage_record(
            request_id=f"r{i}", key_id=f"k{i % 2}", route=routes[i % 3], prompt_tokens=i,
            completion_tokens=0 if i % 3 == 2 else 2 * i,
        )
        for i in range(30)
    ]  # fmt: skip
    for record in records:
        store.write(record)
    # A record written before records had a route: it reads, and rolls up, as chat.
    legacy = usage_record(request_id="legacy", key_id="k0", prompt_tokens=1000).to_item(
        retention_days=30
    )
    del legacy["route"]
    client.put_item(TableName=TABLE, Item=legacy)
    drain(client)
    expected: dict[tuple[str, str], dict[str, int]] = {}
    for r in [*records, usage_record(key_id="k0", prompt_tokens=1000)]:
        sums = expected.setdefault(
            (f"key#{r.key_id}", f"rday#2026-11-22#{r.route}"), dict.fromkeys(COUNTERS, 0)
        )
        sums["requests"] += 1
        sums["prompt_tokens"] += r.prompt_tokens
        sums["completion_tokens"] += r.completion_tokens
        sums["total_tokens"] += r.prompt_tokens + r.completion_tokens
    assert len(expected) == 6
    assert route_rollups(client) == expected
    # Damage: one route rollup wrong, one gone, one for a route no record has.
    wrong = {n: {"N": "9"} for n in COUNTERS}
    client.put_item(TableName=TABLE, Item={"pk": {"S": "key#k0"},
                                           "sk": {"S": "rday#2026-11-22#chat"}, **wrong})  # fmt: skip
    client.delete_item(
        TableName=TABLE, Key={"pk": {"S": "key#k1"}, "sk": {"S": "rday#2026-11-22#embeddings"}}
    )
    client.put_item(TableName=TABLE, Item={"pk": {"S": "key#k1"},
                                           "sk": {"S": "rday#2026-11-22#ghost"}, **wrong})  # fmt: skip

    assert main(["usage", "rebuild-rollups", "--day", "2026-11-22"]) == 0
    out = capsys.readouterr().out
    assert "rollups: 2 rewritten, 1 deleted" in out and "0 changed meanwhile" in out
    assert route_rollups(client) == expected
