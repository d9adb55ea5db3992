"""The load generator: aiohttp on this process's event loop, a fixed number of requests at a
fixed concurrency, with the server's CPU, its database's CPU and its DynamoDB calls read
before and after."""

from __future__ import annotations

import asyncio
import json
import math
import re
import resource
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson

from devstack.bench.config import MODEL, PROMPT
from devstack.bench.stack import Target, cpu_seconds


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def db_calls(url: str | None) -> int:
    """DynamoDB calls counted so far at `url` (the stand-in's /calls, moto's control)."""
    if url is None:
        return 0
    with urllib.request.urlopen(url, timeout=10) as response:
        return sum(json.loads(response.read())["calls"].values())


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclass
class Measurement:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0  # wall time of the measured rounds
    cpu: float = 0.0  # the server's CPU seconds during the rounds
    db_cpu: float = 0.0
    client_cpu: float = 0.0  # this process's (the load generator's)
    calls: int = 0  # DynamoDB calls the path made during the rounds
    first_error: str = ""

    @property
    def ok(self) -> int:
        return len(self.latencies)


def request_body(stream: bool) -> bytes:
    return orjson.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    )


# A chunk whose delta has non-empty content (not `"content":""`, not `reasoning_content`),
# or a legacy completion chunk's non-empty text. A byte search, not JSON parsing per chunk:
# the load generator shares the 2 cores.
_CONTENT = re.compile(rb'"(?:content|text)":\s*"[^"]')
_DONE = b"data: [DONE]"


@dataclass(frozen=True)
class Request:
    """One kind of request: its body (None: a GET), whether it streams, and the bytes a
    successful buffered answer contains."""

    body: bytes | None
    stream: bool = False
    expect: bytes = b'"choices"'


async def one_request(
    session: aiohttp.ClientSession, target: Target, request: Request, out: Measurement
) -> None:
    headers = {"Content-Type": "application/json", **target.headers}
    start = time.perf_counter()
    first: float | None = None
    method = "GET" if request.body is None else "POST"
    try:
        async with session.request(method, target.url, data=request.body, headers=headers) as resp:
            payload = b""
            if not request.stream:
                payload = await resp.read()
                ok = resp.status == 200 and request.expect in payload
            else:
                seen = b""  # the stream until its first content chunk, then only its tail
                async for data in resp.content.iter_any():
                    seen = seen[-16:] + data if first is not None else seen + data
                    if first is None and _CONTENT.search(seen):
                        first = time.perf_counter()
                ok = resp.status == 200 and first is not None and _DONE in seen[-64:]
            if not ok and not out.first_error:
                out.first_error = f"HTTP {resp.status} from {target.name} {payload[:300]!r}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        ok = False
        if not out.first_error:
            out.first_error = f"{type(exc).__name__}: {exc}"
    end = time.perf_counter()
    if not ok:
        out.errors += 1
        return
    out.latencies.append(end - start)
    if first is not None:
        out.ttfts.append(first - start)


async def load(
    session: aiohttp.ClientSession,
    target: Target,
    *,
    stream: bool,
    concurrency: int,
    requests: int,
    out: Measurement,
    request: Request | None = None,
) -> None:
    """`requests` requests, `concurrency` at a time, into `out` (with wall time and CPU).
    The request is a chat completion (`stream` or not) unless `request` says otherwise."""
    request = request or Request(body=request_body(stream), stream=stream)
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one_request(session, target, request, out)

    cpu_before = cpu_seconds(target.pid)
    db_before = cpu_seconds(target.db_pid) if target.db_pid else 0.0
    client_before = self_cpu()
    calls_before = await asyncio.to_thread(db_calls, target.calls_url)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    out.elapsed += time.perf_counter() - start
    out.calls += await asyncio.to_thread(db_calls, target.calls_url) - calls_before
    out.client_cpu += self_cpu() - client_before
    out.cpu += cpu_seconds(target.pid) - cpu_before
    if target.db_pid:
        out.db_cpu += cpu_seconds(target.db_pid) - db_before
