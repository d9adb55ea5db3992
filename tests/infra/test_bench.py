"""`make bench` smoke test: the whole bench runs with tiny counts and yields a full table.

No timing assertions: figures on a shared machine are for docs/BENCHMARKS.md, not for tests.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from devstack.bench import (
    COLUMNS,
    DIRECT,
    GATEWAY,
    GATEWAY_MOTO,
    ROUTES,
    BenchConfig,
    Phase,
    percentile,
    render_markdown,
    run_benchmark,
    split,
    write_results,
)


def test_percentile_and_split() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 100) == 2.0
    assert math.isnan(percentile([], 50))
    assert split(5, 2) == [3, 2]
    assert sum(split(7, 3)) == 7


def test_bench_smoke(tokenizers_dir: Path, tmp_path: Path) -> None:
    phases = tuple(
        Phase(stream=stream, concurrency=c, requests=5) for stream in (False, True) for c in (1, 2)
    )
    config = BenchConfig(
        phases=phases,
        rounds=2,
        warmup=2,
        tokenizers_dir=tokenizers_dir,
        logs_dir=tmp_path / "logs",
        cold_runs=1,
        route_requests=4,
    )
    messages: list[str] = []
    result = run_benchmark(config, progress=messages.append)

    assert [(r.phase, r.path) for r in result.rows] == [
        (p.name, path) for p in phases for path in (DIRECT, GATEWAY, GATEWAY_MOTO)
    ]
    for row in result.rows:
        assert row.requests == 5 and row.errors == 0, row
        assert row.rps > 0 and row.p50_ms > 0 and row.p99_ms >= row.p50_ms, row
        assert row.cpu_ms_per_request >= 0 and row.client_cpu_ms_per_request >= 0, row
        gateway = row.path != DIRECT
        assert (row.rps_vs_direct is not None) == gateway
        assert (row.added_p50_ms is not None) == gateway
        assert (row.db_cpu_ms_per_request is not None) == gateway
        assert (row.db_calls_per_request is not None) == gateway
        if gateway:  # the usage PutItem, and a key lookup now and then (cached)
            assert row.db_calls_per_request is not None
            assert 1 <= row.db_calls_per_request <= 1.5, row
        streaming = row.phase.startswith("stream")
        if streaming:
            assert row.ttft_p50_ms is not None and row.ttft_p50_ms > 0, row
            assert row.ttft_p99_ms is not None and row.ttft_p99_ms >= row.ttft_p50_ms, row
            assert row.ttft_p50_ms <= row.p50_ms, row
        else:
            assert row.ttft_p50_ms is None and row.added_ttft_p50_ms is None
        assert (row.added_ttft_p50_ms is not None) == (gateway and streaming)
    assert any(m.startswith("stream c=2") for m in messages)
    # Issue 10: at most 2 DynamoDB calls per request with limits, 1 without.
    assert result.calls_by_key == {"no limits": 1.0, "limits": 2.0}

    routes = {r.route: r for r in result.routes}
    assert list(routes) == [name for name, _, _ in ROUTES]
    for route in routes.values():
        assert route.requests == 4 and route.errors == 0, route
        assert route.cpu_ms_per_request >= 0 and route.p50_ms > 0, route
    # Generation and embeddings write usage; the models list (key cached) calls nothing.
    assert routes["chat, stream"].db_calls_per_request >= 1
    assert routes["embeddings"].db_calls_per_request >= 1
    assert routes["models (no upstream)"].db_calls_per_request == 0

    assert [c.variant for c in result.cold] == ["tokenizers on first use", "tokenizers preloaded"]
    for cold in result.cold:
        assert cold.runs == 1, cold
        assert cold.ready_ms > 0 and cold.direct_ttft_ms > 0, cold
        assert cold.first_total_ms >= cold.first_ttft_ms > 0 and cold.second_ttft_ms > 0, cold
        assert cold.added_ttft_ms == pytest.approx(cold.first_ttft_ms - cold.direct_ttft_ms)
    assert any(m.startswith("cold instance: run 1/1") for m in messages)

    markdown = render_markdown(result)
    main_table = markdown.split("\n\n")[1]
    lines = main_table.splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    assert len(lines) == 2 + len(result.rows)
    assert all(line.count("|") == len(COLUMNS) + 1 for line in lines)
    assert "## CPU per route" in markdown and "| chat, stream |" in markdown
    assert "## Cold instance" in markdown and "| tokenizers preloaded | 1 |" in markdown

    written = write_results(markdown, result.started_at, tmp_path / "results")
    assert written.read_text() == markdown
    assert (tmp_path / "results" / "latest.md").read_text() == markdown
