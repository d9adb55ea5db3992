"""One bench run: start the stack, run the phases on every path, the DynamoDB calls per
request, the per-route CPU and the cold-instance scenario; stop the stack."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from devstack.bench.cold import measure_cold
from devstack.bench.config import BenchConfig, Progress, say
from devstack.bench.phases import measure_calls, run_phases
from devstack.bench.report import BenchResult, make_rows
from devstack.bench.routes import measure_routes
from devstack.bench.stack import Stack


def asyncio_run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dev dependency
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_benchmark(config: BenchConfig | None = None, progress: Progress = say) -> BenchResult:
    """Start the stack, run every phase on every path, stop the stack; the figures."""
    config = config or BenchConfig()
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    routes: tuple[Any, ...] = ()
    cold: tuple[Any, ...] = ()
    with Stack(config, progress) as stack:
        progress(f"stack up in {time.perf_counter() - t0:.1f} s; paths: {', '.join(config.paths)}")
        results = asyncio_run(run_phases(stack, config, progress))
        calls_by_key = asyncio_run(measure_calls(stack))
        progress(
            "DynamoDB calls per request: "
            + ", ".join(f"{k} {v:.2f}" for k, v in calls_by_key.items())
        )
        if config.route_requests:
            routes = asyncio_run(measure_routes(stack, config.route_requests))
            progress(
                "CPU per route (ms/req): "
                + ", ".join(f"{r.route} {r.cpu_ms_per_request:.2f}" for r in routes)
            )
        if config.cold_runs:
            cold = asyncio_run(measure_cold(stack, config.cold_runs, progress))
    return BenchResult(
        config=config,
        rows=make_rows(config, results),
        started_at=started_at,
        seconds=time.perf_counter() - t0,
        load_before=load_before,
        load_after=os.getloadavg(),
        calls_by_key=calls_by_key,
        routes=routes,
        cold=cold,
    )
