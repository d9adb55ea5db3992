"""The table's phases: non-streaming and streaming, at each concurrency, on every path,
warm-up first, the paths alternating round by round; then the DynamoDB calls per request
by kind of key."""

from __future__ import annotations

import contextlib
import time

import aiohttp

from devstack.bench.config import GATEWAY, BenchConfig, Phase, Progress
from devstack.bench.load import Measurement, load, percentile, split
from devstack.bench.stack import Stack, Target


def session_for_path() -> aiohttp.ClientSession:
    # Idle connections are dropped after 3 s, before the servers' own keep-alive timeout
    # (uvicorn's 5 s) can race a request on them.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=3),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def _warm_up(
    session: dict[str, aiohttp.ClientSession], targets: list[Target], phase: Phase, warmup: int
) -> None:
    for target in targets:
        warm = Measurement()
        n = max(warmup, 2 * phase.concurrency)
        await load(
            session[target.name], target, stream=phase.stream,
            concurrency=phase.concurrency, requests=n, out=warm,
        )  # fmt: skip
        if warm.errors:
            raise RuntimeError(f"warm-up of {target.name} failed: {warm.first_error}")


def _summary(target: Target, m: Measurement) -> str:
    rps = m.ok / m.elapsed if m.elapsed else 0.0
    cpu_ms = 1000 * m.cpu / max(1, m.ok + m.errors)
    p50 = 1000 * percentile(m.latencies, 50)
    part = f"{target.name}: {rps:.0f} req/s, p50 {p50:.2f} ms, CPU {cpu_ms:.2f} ms/req"
    if m.errors:
        part += f", {m.errors} ERRORS ({m.first_error})"
    return part


async def run_phases(
    stack: Stack, config: BenchConfig, progress: Progress
) -> dict[tuple[str, str], Measurement]:
    targets = [stack.target(path) for path in config.paths]
    results: dict[tuple[str, str], Measurement] = {}
    async with contextlib.AsyncExitStack() as sessions:
        # One connection pool per path.
        session = {t.name: await sessions.enter_async_context(session_for_path()) for t in targets}
        for phase in config.phases:
            started = time.perf_counter()
            await _warm_up(session, targets, phase, config.warmup)
            measurements = {t.name: Measurement() for t in targets}
            rounds = split(phase.requests, max(1, min(config.rounds, phase.requests)))
            for i, count in enumerate(rounds):
                # Alternate the order too, so that no path always runs right after another.
                ordered = targets if i % 2 == 0 else targets[::-1]
                for target in ordered:
                    await load(
                        session[target.name], target, stream=phase.stream,
                        concurrency=phase.concurrency, requests=count,
                        out=measurements[target.name],
                    )  # fmt: skip
                stack.check_alive()
            for target in targets:
                results[(phase.name, target.name)] = measurements[target.name]
            parts = [_summary(t, measurements[t.name]) for t in targets]
            progress(
                f"{phase.name}: {phase.requests} requests per path in "
                f"{time.perf_counter() - started:.1f} s | " + " | ".join(parts)
            )
    return results


async def measure_calls(stack: Stack, requests: int = 40) -> dict[str, float]:
    """DynamoDB calls per request through the gateway path, for a key without limits and
    one with rpm, tpm and a monthly budget (after one warm-up request each)."""
    target = stack.target(GATEWAY)
    result: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for kind, secret in (("no limits", stack.secret), ("limits", stack.limited_secret)):
            keyed = Target(target.name, target.url, {"Authorization": f"Bearer {secret}"},
                           target.pid, target.db_pid, target.calls_url)  # fmt: skip
            await load(session, keyed, stream=False, concurrency=1, requests=1, out=Measurement())
            measured = Measurement()
            await load(session, keyed, stream=False, concurrency=1, requests=requests, out=measured)
            if measured.errors:
                raise RuntimeError(f"calls measurement failed: {measured.first_error}")
            result[kind] = measured.calls / requests
    return result
