"""`make bench`'s routing row: what backends/routing.py adds to a request, in CPU.

A RoutedBackend over backends that answer at once (one and three endpoints), against the
same backend called directly, in this process: the difference is routing's own work per
request (the choice, in-flight and TTFT bookkeeping, attempts), with nothing else in it.
The gateway path of the main table already goes through it (every model is routed).

    python -m devstack.bench.routing [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from gateway.backends.attempts import RouteTrace
from gateway.backends.cooldowns import CooldownCache
from gateway.backends.routing import RoutedBackend, Router, RoutingPolicy, Target


class Instant:
    """A backend that answers at once: a body, or a two-chunk stream."""

    async def complete(self, _body: dict[str, Any]) -> dict[str, Any]:
        return {"choices": []}

    async def open_stream(self, _body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            yield {"choices": [{"index": 0, "delta": {"content": "x"}}]}
            yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}

        return chunks()


def routed(endpoints: int) -> RoutedBackend:
    router = Router(
        policy=RoutingPolicy(),
        cooldowns=CooldownCache(store=None, ttl=5),
        rng=random.Random(1),
    )
    targets = [
        Target(router.state("m", f"e{i}", weight=1, max_concurrency=None), Instant(), "m", f"e{i}")
        for i in range(endpoints)
    ]
    return RoutedBackend(router=router, tiers=[targets])


async def cpu_us(backend: Any, *, stream: bool, requests: int) -> float:
    body = {"model": "m"}
    start = time.process_time()
    routed = isinstance(backend, RoutedBackend)
    for _ in range(requests):
        kwargs = {"trace": RouteTrace()} if routed else {}
        if stream:
            async for _chunk in await backend.open_stream(body, **kwargs):
                pass
        else:
            await backend.complete(body, **kwargs)
    return (time.process_time() - start) / requests * 1e6


async def measure(requests: int) -> list[tuple[str, float, float]]:
    """(backend, µs CPU per buffered request, per stream) for direct, 1 and 3 endpoints."""
    rows = []
    for label, backend in (("direct", Instant()), ("routed, 1 endpoint", routed(1)),
                           ("routed, 3 endpoints", routed(3))):  # fmt: skip
        buffered = await cpu_us(backend, stream=False, requests=requests)
        streamed = await cpu_us(backend, stream=True, requests=requests)
        rows.append((label, buffered, streamed))
    return rows


def render(rows: Sequence[tuple[str, float, float]]) -> str:
    lines = [
        "| backend | µs CPU per buffered request | µs CPU per stream (2 chunks) |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {label} | {buffered:.1f} | {streamed:.1f} |" for label, buffered, streamed in rows
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.bench.routing")
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args(argv)
    sys.stdout.write(f"## Routing's own cost ({args.requests} requests per row, this process)\n\n")
    sys.stdout.write(render(asyncio.run(measure(args.requests))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
