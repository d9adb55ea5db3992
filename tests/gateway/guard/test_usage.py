"""The guard's decisions and tokens in the rollups: a line of its own (the guard model,
route `guard`), in the key's daily totals and monthly budget, and blocks per category."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import boto3
import openai
import pytest
from gateway.cli import main
from gateway.usage import UsageStore

from tests.conftest import Gateway
from tests.gateway.guard.test_guardrails import CLEAN_PROMPT, FLAGGED_PROMPT, SHORT, client
from tests.support.records import usage_record
from tests.support.usage import TABLE, drain


def item(table: str, pk: str, sk: str) -> dict[str, int]:
    with closing(boto3.client("dynamodb")) as client:
        found = client.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}})["Item"]
    return {k: int(v["N"]) for k, v in found.items() if "N" in v}


def test_rollups_count_guard_tokens_on_their_own_line_and_blocks_per_category(
    guarded: Gateway,
) -> None:
    key = guarded.new_key(monthly_tokens=1_000_000)
    openai_client = client(guarded, key)
    with pytest.raises(openai.BadRequestError):
        openai_client.chat.completions.create(model="qwen3", messages=FLAGGED_PROMPT)
    openai_client.chat.completions.create(model="qwen3", messages=CLEAN_PROMPT, extra_body=SHORT)
    openai_client.chat.completions.create(model="qwen3", messages=CLEAN_PROMPT)  # S6 output
    records = guarded.records(key)
    assert sorted(r.guard_action for r in records) == ["blocked_input", "blocked_output", "passed"]
    drain(boto3.client("dynamodb"))

    table = guarded.resources.settings.usage_table
    key_id = guarded.key_id(key)
    day = records[0].day
    model_tokens = sum(r.total_tokens for r in records)
    guard_prompt = sum(r.guard_prompt_tokens for r in records)
    guard_completion = sum(r.guard_completion_tokens for r in records)
    guard_line: dict[str, Any] = {
        "requests": 3,
        "prompt_tokens": guard_prompt,
        "completion_tokens": guard_completion,
        "total_tokens": guard_prompt + guard_completion,
    }
    for sk in (f"mday#{day}#llama-guard", f"rday#{day}#guard"):
        assert item(table, f"key#{key_id}", sk) == {
            **dict.fromkeys(("errors", "rate_limited", "cached_tokens"), 0),
            **guard_line,
        }
    model_line = item(table, f"key#{key_id}", f"mday#{day}#qwen3")
    assert model_line["requests"] == 3 and model_line["total_tokens"] == model_tokens
    assert model_line["guard_blocked"] == 2
    assert model_line["guard_blocked_S9"] == model_line["guard_blocked_S6"] == 1
    totals = item(table, f"key#{key_id}", f"day#{day}")
    assert totals["requests"] == 3 and totals["errors"] == 1
    assert totals["total_tokens"] == model_tokens + guard_line["total_tokens"]
    assert totals["guard_blocked"] == 2 and totals["guard_blocked_S9"] == 1
    guard_model = item(table, "model#llama-guard", f"day#{day}")
    assert guard_model["total_tokens"] >= guard_line["total_tokens"]
    # The key's budget is charged what its rollups say: its models' and its guard's tokens.
    spent = guarded.resources.limits.month_tokens(key_id=key_id)
    assert spent == model_tokens + guard_line["total_tokens"]


def _all_rollups(client: Any) -> dict[tuple[str, str], dict[str, int]]:
    items = client.scan(TableName=TABLE)["Items"]
    return {
        (i["pk"]["S"], i["sk"]["S"]): {k: int(v["N"]) for k, v in i.items() if "N" in v}
        for i in items
        if not i["sk"]["S"].startswith("req#")
    }


def test_rebuild_restores_guard_lines_and_block_counts(
    mock_dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = mock_dynamodb
    store = UsageStore(client=client, table=TABLE, retention_days=30)
    guard = {"guard_model": "lg", "guard_prompt_tokens": 210, "guard_completion_tokens": 3}
    records = [
        usage_record(request_id="plain"),
        usage_record(request_id="passed", guard_action="passed", **guard),
        usage_record(request_id="in", guard_action="blocked_input", guard_blocked="S9,S1",
                     prompt_tokens=0, completion_tokens=0, **guard),
        usage_record(request_id="out", guard_action="blocked_output", guard_blocked="S6",
                     **guard),
        usage_record(request_id="odd", guard_action="blocked_output", guard_blocked="S1,x y",
                     **guard),
    ]  # fmt: skip
    for record in records:
        store.write(record)
    drain(client)
    exact = _all_rollups(client)
    totals = exact[("key#key_a", "day#2026-11-22")]
    assert totals["total_tokens"] == 4 * 15 + 4 * 213  # "in" billed no model tokens
    assert (totals["guard_blocked"], totals["guard_blocked_S1"], totals["guard_blocked_S6"]) == (
        3, 2, 1
    )  # fmt: skip
    assert exact[("key#key_a", "rday#2026-11-22#guard")]["requests"] == 4
    assert exact[("model#lg", "day#2026-11-22")]["total_tokens"] == 4 * 213
    assert not any("x y" in name for counters in exact.values() for name in counters)

    client.delete_item(
        TableName=TABLE, Key={"pk": {"S": "key#key_a"}, "sk": {"S": "day#2026-11-22"}}
    )
    assert main(["usage", "rebuild-rollups", "--day", "2026-11-22"]) == 0
    assert "1 rewritten" in capsys.readouterr().out
    assert _all_rollups(client) == exact
    assert main(["usage", "rebuild-rollups", "--day", "2026-11-22"]) == 0
    assert "0 rewritten, 0 deleted" in capsys.readouterr().out
