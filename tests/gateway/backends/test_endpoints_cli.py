"""`gateway endpoints list` says one thing per endpoint: its state and the reason agree.

Issue 26: after an embeddings endpoint answered 404 (cooled down for `upstream_http_404`)
and the cooldown ended, the list showed `ok` beside reason `upstream_http_404`. Now `ok`
has no reason; the ended cooldown shows as `last_failure`, and a probe that gets 404s
cools the endpoint down, which the list shows as `cooled_down` with the probe's finding.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from gateway.backends.cooldowns import CooldownStore
from gateway.backends.loadstore import Figures, LoadStore
from gateway.cli import main
from gateway.settings import Settings
from starlette.applications import Starlette

from tests.support.servers import serve_asgi


def _config(base_url: str) -> str:
    return json.dumps({"models": [{
        "id": "qwen3-embedding", "tokenizer": "qwen3", "routes": ["embeddings"],
        "upstream": {"type": "openai", "base_url": base_url, "model": "qwen3"},
    }]})  # fmt: skip


def _list(settings: Settings, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["endpoints", "list", "--json"], settings=settings) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return dict(row)


def test_an_ended_cooldown_is_ok_without_its_reason(
    mock_dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(models_config=_config("http://127.0.0.1:9/v1"))
    label = _list(settings, capsys)["endpoint"]
    store = CooldownStore(client=mock_dynamodb, table=settings.usage_table)
    now = time.time()
    store.put(model="qwen3-embedding", endpoint=label, until=now + 600,
              reason="upstream_http_404", now=now)  # fmt: skip
    row = _list(settings, capsys)
    assert (row["state"], row["reason"]) == ("cooled_down", "upstream_http_404")

    store.put(model="qwen3-embedding", endpoint=label, until=now - 5,
              reason="upstream_http_404", now=now - 65)  # fmt: skip
    row = _list(settings, capsys)
    assert (row["state"], row["until"], row["reason"]) == ("ok", None, None)
    assert row["last_failure"].startswith("upstream_http_404 until ")

    assert main(["endpoints", "list"], settings=settings) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "model", "endpoint", "type", "target", "weight", "state", "until", "reason",
        "last_failure", "running", "waiting", "kv_usage", "sampled_at",
    ]  # fmt: skip
    cells = line.split()
    assert cells[5:8] == ["ok", "-", "-"] and cells[8] == "upstream_http_404"
    assert cells[-4:] == ["-", "-", "-", "-"]  # never sampled


def test_a_probe_that_gets_404s_leaves_the_endpoint_cooled_down_with_that_reason(
    mock_dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_asgi(Starlette()) as url:  # no route at all: /health and /v1/models are 404
        settings = Settings(models_config=_config(url + "/v1"))
        assert main(["endpoints", "probe", "--json"], settings=settings) == 0
        [probed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (probed["healthy"], probed["detail"], probed["change"]) == (
        False, "/v1/models 404", "cooled"
    )  # fmt: skip
    row = _list(settings, capsys)
    assert (row["state"], row["reason"]) == ("cooled_down", "probe: /v1/models 404")


def test_the_list_shows_the_load_an_instance_last_sampled(
    mock_dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a gateway instance last read from the endpoint's /metrics and shared (the
    load item), and when; a sample without vLLM's gauges clears the figures."""
    settings = Settings(models_config=_config("http://127.0.0.1:9/v1"))
    label = _list(settings, capsys)["endpoint"]
    store = LoadStore(client=mock_dynamodb, table=settings.usage_table)
    store.put(model="qwen3-embedding", endpoint=label, figures=Figures(3.0, 7.0, 0.4567),
              sampled_at=1_800_000_000.0)  # fmt: skip
    row = _list(settings, capsys)
    assert (row["running"], row["waiting"], row["kv_usage"]) == (3, 7, 0.457)
    assert row["sampled_at"] == "2027-01-15T08:00:00Z"

    store.put(model="qwen3-embedding", endpoint=label, figures=None, sampled_at=1_800_000_060.0)
    row = _list(settings, capsys)
    assert (row["running"], row["waiting"], row["kv_usage"]) == (None, None, None)
    assert row["sampled_at"] == "2027-01-15T08:01:00Z"
