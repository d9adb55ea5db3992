"""Usage by API route, through the real stack: chat, completions and embeddings requests
with one key leave records with their route; once the aggregator has run, `GET /v1/usage
?group_by=route` and `gateway usage --by route` give each route the sums of its records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway.cli import main

from tests.conftest import Gateway
from tests.support.routes import client, routes_gateway
from tests.support.usage import drain

COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "errors",
          "rate_limited", "cached_tokens")  # fmt: skip


@pytest.fixture(scope="module")
def gateway(dynamodb: str, tokenizers_dir: Path) -> Iterator[Gateway]:
    """A gateway whose models config serves chat, completions and an embedding model."""
    with routes_gateway(tokenizers_dir) as (running, _):
        yield running


def send_every_route(gateway: Gateway, key: str) -> None:
    sdk = client(gateway, key)
    messages = [{"role": "user", "content": "Name three rivers."}]
    sdk.chat.completions.create(model="qwen3", messages=messages, max_tokens=6)  # type: ignore[arg-type]
    for _ in sdk.chat.completions.create(
        model="qwen3",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    ):
        pass
    sdk.completions.create(model="qwen3", prompt="Once upon a time", max_tokens=5)
    sdk.completions.create(model="gpt2", prompt=["one", "two words"], max_tokens=3)
    for _ in sdk.completions.create(model="qwen3", prompt="Rivers:", max_tokens=4, stream=True):
        pass
    sdk.embeddings.create(model="embed-qwen3", input="a single text to embed")
    sdk.embeddings.create(model="embed-gpt2", input=["first", "second", "third"])
    with pytest.raises(openai.NotFoundError):  # an error counts too, on its own route
        sdk.embeddings.create(model="no-such-model", input="x")


def expected_by_route(gateway: Gateway, key: str) -> dict[str, dict[str, int]]:
    sums: dict[str, dict[str, int]] = {}
    for record in gateway.records(key):
        row = sums.setdefault(record.route, dict.fromkeys(COUNTS, 0))
        row["requests"] += 1
        row["prompt_tokens"] += record.prompt_tokens
        row["completion_tokens"] += record.completion_tokens
        row["total_tokens"] += record.prompt_tokens + record.completion_tokens
        row["errors"] += int(record.status not in ("completed", "client_disconnected"))
        row["rate_limited"] += int(record.status == "rate_limited")
        row["cached_tokens"] += record.cached_tokens or 0
    return sums


def test_usage_grouped_by_route_equals_the_records(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    key = gateway.new_key()
    send_every_route(gateway, key)
    drain(gateway.resources.aws.dynamodb)  # the aggregator has caught up (rollups lag seconds)

    expected = expected_by_route(gateway, key)
    assert sorted(expected) == ["chat", "completions", "embeddings"]
    assert [expected[r]["requests"] for r in sorted(expected)] == [2, 3, 3]
    assert (
        expected["embeddings"]["errors"] == 1 and expected["embeddings"]["completion_tokens"] == 0
    )
    assert all(row["prompt_tokens"] > 0 for row in expected.values())
    days = sorted({r.day for r in gateway.records(key)})
    params = {"start": days[0], "end": days[-1]}
    auth = {"Authorization": f"Bearer {key}"}

    response = httpx.get(
        f"{gateway.base_url}/usage", params={**params, "group_by": "route"}, headers=auth
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["group_by"] == "route"
    assert body["data"] == [{"route": r, **expected[r]} for r in sorted(expected)]
    assert body["totals"] == {n: sum(row[n] for row in expected.values()) for n in COUNTS}
    by_day = httpx.get(f"{gateway.base_url}/usage", params=params, headers=auth).json()
    assert by_day["totals"] == body["totals"]  # the route rollups add up to the daily ones

    key_id = gateway.key_id(key)
    since = ["--since", days[0], "--until", days[-1]]
    capsys.readouterr()  # the in-process gateway's own log and metric lines
    assert main(["usage", "--key-id", key_id, "--by", "route", "--json", *since]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == [{"key_id": key_id, "route": r, **expected[r]} for r in sorted(expected)]

    assert main(["usage", "--key-id", key_id, "--by", "route", *since]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["route", *COUNTS]
    assert [line.split()[:2] for line in lines[1:4]] == [
        [r, str(expected[r]["requests"])] for r in sorted(expected)
    ]
    total = sum(row["total_tokens"] for row in expected.values())
    assert lines[4] == f"8 requests, {total} tokens"


def test_by_route_is_refused_for_a_model_and_beside_daily(capsys: Any) -> None:
    for argv in (
        ["usage", "--model", "qwen3", "--by", "route"],
        ["usage", "--key-id", "key_x", "--daily", "--by", "route"],
        ["usage", "--key-id", "key_x", "--by", "day"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
        assert "--by" in capsys.readouterr().err
