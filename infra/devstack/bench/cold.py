"""Cold instance: the first request of a fresh gateway process, as a new Lambda instance
serves it (StreamFunction: the Web Adapter waits for /health, then forwards the request).

Each run spawns a gateway (the bench's gateway settings, usage to the stand-in, its key
cache empty), polls /health every 5 ms until it answers (spawn to ready: interpreter,
imports, app build, tokenizers if preloaded), then sends one streamed chat completion on a
new connection and a second one after it; a streamed request straight to gpusim, also on a
new connection, is the direct path of the same run. Two variants alternate: tokenizers
loaded on first use (PRELOAD_TOKENIZERS=false) and preloaded (StreamFunction's default).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import aiohttp

from devstack.bench.config import DIRECT, GATEWAY, Progress
from devstack.bench.load import Measurement, Request, one_request, request_body
from devstack.bench.stack import Stack, Target, gateway_command
from devstack.ports import free_port

VARIANTS = (("tokenizers on first use", "false"), ("tokenizers preloaded", "true"))
STREAM = Request(request_body(True), stream=True)


@dataclass
class ColdSamples:
    ready: list[float] = field(default_factory=list)  # spawn to /health answering, seconds
    first_ttft: list[float] = field(default_factory=list)
    first_total: list[float] = field(default_factory=list)
    second_ttft: list[float] = field(default_factory=list)
    direct_ttft: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ColdRow:
    variant: str
    runs: int
    ready_ms: float
    first_ttft_ms: float
    added_ttft_ms: float  # median of (first TTFT - direct TTFT) per run
    first_total_ms: float
    second_ttft_ms: float
    direct_ttft_ms: float


async def _ready(session: aiohttp.ClientSession, url: str, stack: Stack, name: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if stack.services[name].process.poll() is not None:
            raise RuntimeError(f"{name} exited (log: {stack.services[name].log})")
        try:
            async with session.get(url + "/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.005)
    raise RuntimeError(f"{name} did not answer /health")


async def _stream_once(target: Target) -> Measurement:
    """One streamed request on a new connection."""
    out = Measurement()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await one_request(session, target, STREAM, out)
    if out.errors or not out.ttfts:
        raise RuntimeError(f"cold instance: {target.name} failed: {out.first_error}")
    return out


async def _one_run(stack: Stack, preload: str, samples: ColdSamples, run: int) -> None:
    name = f"cold gateway {run}"
    port = free_port()
    env = {**stack.gateway_env, "PRELOAD_TOKENIZERS": preload}
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    service = stack.spawn(name, gateway_command(port), env, url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as poll:
            await _ready(poll, url, stack, name)
        samples.ready.append(time.perf_counter() - started)
        samples.direct_ttft.append((await _stream_once(stack.target(DIRECT))).ttfts[0])
        cold = Target(name, url + "/v1/chat/completions", stack.target(GATEWAY).headers,
                      service.process.pid)  # fmt: skip
        first = await _stream_once(cold)
        samples.first_ttft.append(first.ttfts[0])
        samples.first_total.append(first.latencies[0])
        samples.second_ttft.append((await _stream_once(cold)).ttfts[0])
    finally:
        stack.stop_service(service)
        stack.services.pop(name, None)


async def measure_cold(stack: Stack, runs: int, progress: Progress) -> tuple[ColdRow, ...]:
    samples = {variant: ColdSamples() for variant, _ in VARIANTS}
    for run in range(runs):
        order = VARIANTS if run % 2 == 0 else VARIANTS[::-1]
        for variant, preload in order:
            await _one_run(stack, preload, samples[variant], run)
        progress(f"cold instance: run {run + 1}/{runs}")
    return tuple(_row(variant, samples[variant]) for variant, _ in VARIANTS)


def _ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def _row(variant: str, s: ColdSamples) -> ColdRow:
    added = [a - b for a, b in zip(s.first_ttft, s.direct_ttft, strict=True)]
    return ColdRow(
        variant=variant,
        runs=len(s.ready),
        ready_ms=_ms(s.ready),
        first_ttft_ms=_ms(s.first_ttft),
        added_ttft_ms=_ms(added),
        first_total_ms=_ms(s.first_total),
        second_ttft_ms=_ms(s.second_ttft),
        direct_ttft_ms=_ms(s.direct_ttft),
    )


def render_cold(rows: tuple[ColdRow, ...]) -> str:
    lines = [
        "| fresh gateway process | runs | spawn to ready ms | 1st request TTFT ms | "
        "+TTFT vs direct ms | 1st request total ms | 2nd request TTFT ms | direct TTFT ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.variant} | {r.runs} | {r.ready_ms:.0f} | {r.first_ttft_ms:.1f} | "
            f"{r.added_ttft_ms:+.1f} | {r.first_total_ms:.1f} | {r.second_ttft_ms:.1f} | "
            f"{r.direct_ttft_ms:.2f} |"
        )
    return "\n".join(lines)
