"""`make bench`: the simulated GPU endpoint called directly and through the gateway.

Everything runs on this machine as separate processes on free 127.0.0.1 ports:

- DynamoDB: moto's server with motofix (`python -m devstack.dynamodb`), tables from
  template.yaml, one API key
- gpusim with zero delay and 50 completion tokens (a stream is ~50 chunks)
- "gateway": the gateway (uvicorn, uvloop, httptools) in front of gpusim, whose DynamoDB is a
  stand-in that answers the usage write (PutItem) at once (or after --db-latency-ms) and
  forwards everything else (key lookups, admission) to moto: the gateway's own cost,
  botocore included, without a database's service time
- "gateway, moto DB" (unless --no-moto): a second gateway writing its usage to moto itself,
  which costs moto 7-11 ms of CPU per write on the same two cores

The load generator (aiohttp, in this process) sends a fixed number of requests per phase
(non-streaming and streaming, at each concurrency), warm-up first, alternating the paths in
rounds so that noise hits all of them. It reports throughput, latency and time to first token
(streaming), the gateway's additions over direct, each server's CPU per request
(utime + stime from /proc/<pid>/stat), and the DynamoDB calls per request on the path
(counted by the stand-in, or by moto's control endpoint), then those calls for a key
without limits and one with rpm, tpm and a monthly budget. docs/BENCHMARKS.md explains the
method and figures.

    python -m devstack.bench [--scale 0.2] [--rounds 2] [--db-latency-ms 5] [--no-moto]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import aiohttp
import boto3
import orjson

from devstack.__main__ import DEFAULT_TOKENIZERS, LOCAL_AWS, wait_healthy
from devstack.dynamodb import CONTROL_PATH
from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables

ROOT = TEMPLATE_PATH.parent
RESULTS_DIR = ROOT / "bench-results"
MODEL = "qwen3"
PROMPT = "Hello! Tell me something about the sea."
# Requests per phase at scale 1, by concurrency; other concurrencies get the c=32 count.
BASE_REQUESTS = {1: 300, 32: 1500}
DIRECT = "direct"
GATEWAY = "gateway"
GATEWAY_MOTO = "gateway, moto DB"

KEY_CACHE_TTL = 30
Progress = Callable[[str], None]


def say(message: str) -> None:
    sys.stdout.write(f">> {message}\n")
    sys.stdout.flush()


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    stream: bool
    concurrency: int
    requests: int

    @property
    def name(self) -> str:
        return f"{'stream' if self.stream else 'non-stream'} c={self.concurrency}"


def default_phases(scale: float = 1.0, concurrencies: Sequence[int] = (1, 32)) -> tuple[Phase, ...]:
    return tuple(
        Phase(
            stream=stream,
            concurrency=c,
            requests=max(1, round(BASE_REQUESTS.get(c, BASE_REQUESTS[32]) * scale)),
        )
        for stream in (False, True)
        for c in concurrencies
    )


@dataclass(frozen=True)
class BenchConfig:
    phases: tuple[Phase, ...] = field(default_factory=default_phases)
    # Each phase's requests are split into this many rounds per path, paths alternating.
    rounds: int = 2
    # Unmeasured requests per path before a phase's first round (at least 2 x concurrency).
    warmup: int = 20
    completion_tokens: int = 50
    # The stand-in DynamoDB answers the usage write after this long (real DynamoDB: a few ms).
    db_latency_ms: float = 0.0
    moto_usage: bool = True
    tokenizers_dir: Path = DEFAULT_TOKENIZERS
    logs_dir: Path = RESULTS_DIR / "logs"

    @property
    def paths(self) -> tuple[str, ...]:
        return (DIRECT, GATEWAY, GATEWAY_MOTO) if self.moto_usage else (DIRECT, GATEWAY)


# --- processes -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the bench process dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path


class Stack:
    """moto, gpusim, the gateway(s) and the instant-DB stand-in; stopped on exit."""

    def __init__(self, config: BenchConfig, progress: Progress = say) -> None:
        self.config = config
        self.progress = progress
        self.services: dict[str, Service] = {}
        self.secret = ""
        self.limited_secret = ""
        self._logs: list[IO[bytes]] = []

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], url: str) -> Service:
        self.config.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.config.logs_dir / f"{name.replace(' ', '-').replace(',', '')}.log"
        log = log_path.open("wb")
        self._logs.append(log)
        process = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        service = Service(name=name, process=process, url=url, log=log_path)
        self.services[name] = service
        return service

    def _wait(self, service: Service, path: str) -> None:
        try:
            wait_healthy(service.url + path, service.process, service.name)
        except SystemExit:
            tail = service.log.read_text(errors="replace")[-2000:]
            self.progress(f"{service.name} failed to start; its log ({service.log}):\n{tail}")
            raise

    def start(self) -> None:
        config = self.config
        tokenizers = config.tokenizers_dir.resolve()
        if not (tokenizers / MODEL / "tokenizer.json").is_file():
            raise SystemExit(f"no {MODEL}/tokenizer.json under {tokenizers} (TOKENIZERS_DIR)")
        py = sys.executable
        base_env = {**os.environ, **LOCAL_AWS}
        for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            base_env.pop(var, None)
        ports = {name: free_port() for name in ("moto", "gpusim", "instant", *config.paths)}
        moto_url = f"http://127.0.0.1:{ports['moto']}"
        sim_url = f"http://127.0.0.1:{ports['gpusim']}"
        instant_url = f"http://127.0.0.1:{ports['instant']}"

        self.progress(
            f"starting moto, gpusim, the DynamoDB stand-in and {len(config.paths) - 1} gateway(s)"
        )
        moto = self._spawn(
            "moto",
            [py, "-m", "devstack.dynamodb", "--port", str(ports["moto"])],
            base_env,
            moto_url,
        )
        sim_cmd = [py, "-m", "gpusim", "--host", "127.0.0.1", "--port", str(ports["gpusim"]),
                   "--tokenizers-dir", str(tokenizers), "--ttft-ms", "0", "--tpot-ms", "0",
                   "--completion-tokens", str(config.completion_tokens), "--models", MODEL,
                   "--preload"]  # fmt: skip
        sim = self._spawn("gpusim", sim_cmd, base_env, sim_url)
        models = {
            "models": [
                {
                    "id": MODEL,
                    "tokenizer": MODEL,
                    "upstream": {"type": "openai", "base_url": sim_url, "model": MODEL},
                }
            ]
        }
        gateway_env = {
            **base_env,
            "KEYS_TABLE": LOCAL_TABLE_NAMES["KeysTable"],
            "USAGE_TABLE": LOCAL_TABLE_NAMES["UsageTable"],
            "TOKENIZERS_DIR": str(tokenizers),
            "PRELOAD_TOKENIZERS": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "LOG_LEVEL": "WARNING",
            "KEY_CACHE_TTL_SECONDS": str(KEY_CACHE_TTL),
            "MODELS_CONFIG": json.dumps(models),
        }
        instant_cmd = [py, "-m", "devstack.bench", "--serve-instant-dynamodb",
                       str(ports["instant"]), "--forward", moto_url,
                       "--db-latency-ms", str(config.db_latency_ms)]  # fmt: skip
        self._spawn("instant-db", instant_cmd, base_env, instant_url)
        gateways = [(GATEWAY, ports[GATEWAY], instant_url)]
        if config.moto_usage:
            gateways.append((GATEWAY_MOTO, ports[GATEWAY_MOTO], moto_url))
        for name, port, dynamodb_url in gateways:
            gateway_cmd = [py, "-m", "uvicorn", "--factory", "gateway.app:create_app",
                           "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
                           "--loop", "uvloop", "--http", "httptools"]  # fmt: skip
            env = {**gateway_env, "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url}
            self._spawn(name, gateway_cmd, env, f"http://127.0.0.1:{port}")

        self._wait(moto, "/moto-api/data.json")
        client = boto3.client(
            "dynamodb",
            endpoint_url=moto_url,
            region_name=LOCAL_AWS["AWS_REGION"],
            aws_access_key_id=LOCAL_AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_AWS["AWS_SECRET_ACCESS_KEY"],
        )
        create_tables(client, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
        from gateway.keys import KeyStore

        keys = KeyStore(client=client, table=LOCAL_TABLE_NAMES["KeysTable"])
        _, self.secret = keys.create(name="bench", owner="bench")
        # Limits that never refuse, so that every request makes its admission calls.
        _, self.limited_secret = keys.create(
            name="bench-limits", owner="bench", rpm=10**9, tpm=10**12, monthly_tokens=10**15
        )
        self._wait(sim, "/health")
        for name in self.services:
            if name not in ("moto", "gpusim"):
                self._wait(self.services[name], "/health")

    def stop(self) -> None:
        for service in self.services.values():
            if service.process.poll() is None:
                service.process.terminate()
        for service in self.services.values():
            try:
                service.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        for log in self._logs:
            log.close()

    def check_alive(self) -> None:
        for service in self.services.values():
            if service.process.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited with status {service.process.returncode} "
                    f"(log: {service.log})"
                )

    def target(self, path: str) -> Target:
        if path == DIRECT:
            server = self.services["gpusim"]
            return Target(path, server.url + "/v1/chat/completions", {}, server.process.pid)
        server = self.services[path]
        headers = {"Authorization": f"Bearer {self.secret}"}
        db = self.services["instant-db" if path == GATEWAY else "moto"]
        calls = db.url + ("/calls" if path == GATEWAY else CONTROL_PATH)
        return Target(
            path, server.url + "/v1/chat/completions", headers, server.process.pid,
            db.process.pid, calls,
        )  # fmt: skip

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- load ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: dict[str, str]
    pid: int  # the server whose CPU is this path's "CPU per request"
    db_pid: int | None = None  # its DynamoDB (the stand-in, or moto)
    calls_url: str | None = None  # where its DynamoDB's call counts are read


def db_calls(url: str | None) -> int:
    """DynamoDB calls counted so far at `url` (the stand-in's /calls, moto's control)."""
    if url is None:
        return 0
    with urllib.request.urlopen(url, timeout=10) as response:
        return sum(json.loads(response.read())["calls"].values())


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


# A chunk whose delta has non-empty content (not `"content":""`, not `reasoning_content`).
# A byte search, not JSON parsing per chunk: the load generator shares the 2 cores.
_CONTENT = re.compile(rb'"content":\s*"[^"]')
_DONE = b"data: [DONE]"


async def one_request(
    session: aiohttp.ClientSession, target: Target, body: bytes, stream: bool, out: Measurement
) -> None:
    headers = {"Content-Type": "application/json", **target.headers}
    start = time.perf_counter()
    first: float | None = None
    try:
        async with session.post(target.url, data=body, headers=headers) as resp:
            if not stream:
                payload = await resp.read()
                ok = resp.status == 200 and b'"choices"' in payload
            else:
                seen = b""  # the stream until its first content chunk, then only its tail
                async for data in resp.content.iter_any():
                    seen = seen[-16:] + data if first is not None else seen + data
                    if first is None and _CONTENT.search(seen):
                        first = time.perf_counter()
                ok = resp.status == 200 and first is not None and _DONE in seen[-64:]
            if not ok and not out.first_error:
                out.first_error = f"HTTP {resp.status} from {target.name}"
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
) -> None:
    """`requests` requests, `concurrency` at a time, into `out` (with wall time and CPU)."""
    body = request_body(stream)
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one_request(session, target, body, stream, out)

    cpu_before = cpu_seconds(target.pid)
    db_before = cpu_seconds(target.db_pid) if target.db_pid else 0.0
    client_before = _self_cpu()
    calls_before = await asyncio.to_thread(db_calls, target.calls_url)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    out.elapsed += time.perf_counter() - start
    out.calls += await asyncio.to_thread(db_calls, target.calls_url) - calls_before
    out.client_cpu += _self_cpu() - client_before
    out.cpu += cpu_seconds(target.pid) - cpu_before
    if target.db_pid:
        out.db_cpu += cpu_seconds(target.db_pid) - db_before


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_phases(
    stack: Stack, config: BenchConfig, progress: Progress
) -> dict[tuple[str, str], Measurement]:
    targets = [stack.target(path) for path in config.paths]
    results: dict[tuple[str, str], Measurement] = {}
    timeout = aiohttp.ClientTimeout(total=120)
    async with contextlib.AsyncExitStack() as sessions:
        # One connection pool per path. Idle connections are dropped after 3 s, before the
        # servers' own keep-alive timeout (uvicorn's 5 s) can race a request on them.
        session = {
            t.name: await sessions.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=3),
                    timeout=timeout,
                )
            )
            for t in targets
        }
        for phase in config.phases:
            started = time.perf_counter()
            for target in targets:
                warm = Measurement()
                n = max(config.warmup, 2 * phase.concurrency)
                await load(
                    session[target.name], target, stream=phase.stream,
                    concurrency=phase.concurrency, requests=n, out=warm,
                )  # fmt: skip
                if warm.errors:
                    raise RuntimeError(f"warm-up of {target.name} failed: {warm.first_error}")
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
            parts = []
            for target in targets:
                m = measurements[target.name]
                results[(phase.name, target.name)] = m
                rps = m.ok / m.elapsed if m.elapsed else 0.0
                cpu_ms = 1000 * m.cpu / max(1, m.ok + m.errors)
                part = f"{target.name}: {rps:.0f} req/s, p50 {1000 * percentile(m.latencies, 50):.2f} ms, CPU {cpu_ms:.2f} ms/req"  # noqa: E501
                if m.errors:
                    part += f", {m.errors} ERRORS ({m.first_error})"
                parts.append(part)
            progress(
                f"{phase.name}: {phase.requests} requests per path in "
                f"{time.perf_counter() - started:.1f} s | " + " | ".join(parts)
            )
    return results


# --- results -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Row:
    phase: str
    path: str
    requests: int
    errors: int
    rps: float
    rps_vs_direct: float | None
    p50_ms: float
    p99_ms: float
    added_p50_ms: float | None
    added_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    added_ttft_p50_ms: float | None
    added_ttft_p99_ms: float | None
    cpu_ms_per_request: float
    db_cpu_ms_per_request: float | None
    client_cpu_ms_per_request: float
    db_calls_per_request: float | None = None


@dataclass(frozen=True)
class BenchResult:
    config: BenchConfig
    rows: tuple[Row, ...]
    started_at: datetime
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    # DynamoDB calls per request on the gateway path, by kind of key (sequential requests).
    calls_by_key: dict[str, float] = field(default_factory=dict)


def make_rows(config: BenchConfig, results: dict[tuple[str, str], Measurement]) -> tuple[Row, ...]:
    rows = []
    for phase in config.phases:
        direct = results[(phase.name, DIRECT)]
        d_rps = direct.ok / direct.elapsed if direct.elapsed else 0.0
        d_p50, d_p99 = percentile(direct.latencies, 50), percentile(direct.latencies, 99)
        d_t50, d_t99 = percentile(direct.ttfts, 50), percentile(direct.ttfts, 99)
        for path in config.paths:
            m = results[(phase.name, path)]
            rps = m.ok / m.elapsed if m.elapsed else 0.0
            p50, p99 = percentile(m.latencies, 50), percentile(m.latencies, 99)
            t50, t99 = percentile(m.ttfts, 50), percentile(m.ttfts, 99)
            is_gw = path != DIRECT
            stream = phase.stream
            rows.append(
                Row(
                    phase=phase.name,
                    path=path,
                    requests=m.ok,
                    errors=m.errors,
                    rps=rps,
                    rps_vs_direct=rps / d_rps if is_gw and d_rps else None,
                    p50_ms=1000 * p50,
                    p99_ms=1000 * p99,
                    added_p50_ms=1000 * (p50 - d_p50) if is_gw else None,
                    added_p99_ms=1000 * (p99 - d_p99) if is_gw else None,
                    ttft_p50_ms=1000 * t50 if stream else None,
                    ttft_p99_ms=1000 * t99 if stream else None,
                    added_ttft_p50_ms=1000 * (t50 - d_t50) if stream and is_gw else None,
                    added_ttft_p99_ms=1000 * (t99 - d_t99) if stream and is_gw else None,
                    cpu_ms_per_request=1000 * m.cpu / max(1, m.ok + m.errors),
                    db_cpu_ms_per_request=(
                        1000 * m.db_cpu / max(1, m.ok + m.errors) if is_gw else None
                    ),
                    client_cpu_ms_per_request=1000 * m.client_cpu / max(1, m.ok + m.errors),
                    db_calls_per_request=m.calls / max(1, m.ok + m.errors) if is_gw else None,
                )
            )
    return tuple(rows)


COLUMNS = (
    "phase", "path", "req/s", "vs direct", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms",
    "TTFT p50", "TTFT p99", "+TTFT p50", "+TTFT p99", "CPU ms/req", "DB CPU ms/req",
    "client CPU ms/req", "DB calls/req", "errors",
)  # fmt: skip


def _num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def table_cells(row: Row) -> list[str]:
    return [
        row.phase,
        row.path,
        _num(row.rps, 0),
        "—" if row.rps_vs_direct is None else f"{row.rps_vs_direct:.2f}x",
        _num(row.p50_ms),
        _num(row.p99_ms),
        _num(row.added_p50_ms, signed=True),
        _num(row.added_p99_ms, signed=True),
        _num(row.ttft_p50_ms),
        _num(row.ttft_p99_ms),
        _num(row.added_ttft_p50_ms, signed=True),
        _num(row.added_ttft_p99_ms, signed=True),
        _num(row.cpu_ms_per_request),
        _num(row.db_cpu_ms_per_request),
        _num(row.client_cpu_ms_per_request),
        _num(row.db_calls_per_request),
        str(row.errors),
    ]


def render_table(rows: Sequence[Row]) -> str:
    right = {i for i in range(2, len(COLUMNS))}
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(COLUMNS))) + "|",
    ]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True)
    return out.stdout.decode().strip() + ("+dirty" if dirty.stdout.strip() else "")


def render_markdown(result: BenchResult) -> str:
    config = result.config
    counts = ", ".join(f"{p.name}: {p.requests}" for p in config.phases)
    load = " / ".join(
        ", ".join(f"{x:.2f}" for x in la) for la in (result.load_before, result.load_after)
    )
    notes = [
        f"Requests per path: {counts}; {config.rounds} rounds per phase, the paths alternating; "
        f"{config.warmup}+ unmeasured warm-up requests per path and phase.",
        f"gpusim: zero delay, {config.completion_tokens} completion tokens "
        f"(a stream is ~{config.completion_tokens} chunks). Model {MODEL}, one short user message.",
        "*direct*: gpusim itself. *gateway*: the gateway in front of it. Its usage write goes to "
        f"a DynamoDB stand-in that answers after {config.db_latency_ms:g} ms (botocore's own "
        f"cost stays in the gateway); key lookups (cached {KEY_CACHE_TTL} s) go to moto.",
        "`+` columns: gateway minus direct, same phase. TTFT: until the first content chunk.",
        "DB calls/req: DynamoDB calls the gateway made per request during the rounds (key "
        f"lookups cached {KEY_CACHE_TTL} s; the bench key has no limits). " + _calls_note(result),
        "CPU ms/req: utime+stime of the path's server process (gpusim for *direct*, the gateway "
        "for the others) during the measured rounds, per request. DB CPU: the stand-in's "
        "(moto's for *gateway, moto DB*). Client CPU: the load generator's, on the same cores.",
        f"Took {result.seconds:.0f} s. Load average before / after: {load}. "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, commit {_git_commit()}.",
    ]
    if config.moto_usage:
        notes.insert(
            3,
            "*gateway, moto DB*: a second gateway writing its usage to moto itself (with "
            "motofix), far slower than DynamoDB and on the same cores.",
        )
    bullets = "\n".join(f"- {note}" for note in notes)
    title = f"# Gateway benchmark, {result.started_at:%Y-%m-%d %H:%M:%S} UTC"
    return f"{title}\n\n{render_table(result.rows)}\n\n{bullets}\n"


def _calls_note(result: BenchResult) -> str:
    if not result.calls_by_key:
        return ""
    parts = ", ".join(f"{kind}: {calls:.2f}" for kind, calls in result.calls_by_key.items())
    return f"DynamoDB calls per request, sequential, by key: {parts}."


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


def _asyncio_run(coro: Coroutine[Any, Any, Any]) -> Any:
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
    with Stack(config, progress) as stack:
        progress(f"stack up in {time.perf_counter() - t0:.1f} s; paths: {', '.join(config.paths)}")
        results = _asyncio_run(run_phases(stack, config, progress))
        calls_by_key = _asyncio_run(measure_calls(stack))
        progress(
            "DynamoDB calls per request: "
            + ", ".join(f"{k} {v:.2f}" for k, v in calls_by_key.items())
        )
    return BenchResult(
        config=config,
        rows=make_rows(config, results),
        started_at=started_at,
        seconds=time.perf_counter() - t0,
        load_before=load_before,
        load_after=os.getloadavg(),
        calls_by_key=calls_by_key,
    )


def write_results(markdown: str, started_at: datetime, out_dir: Path = RESULTS_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{started_at:%Y%m%d-%H%M%S}.md"
    path.write_text(markdown)
    (out_dir / "latest.md").write_text(markdown)
    return path


# --- the instant DynamoDB stand-in ---------------------------------------------------


def serve_instant_dynamodb(port: int, forward: str, latency_ms: float = 0.0) -> None:
    """Answer PutItem (the usage write) with success at once (or after `latency_ms`);
    forward every other call. GET /calls: the calls seen, by operation."""
    from aiohttp import web

    calls: dict[str, int] = {}

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            if request.path == "/calls":
                return web.json_response({"calls": calls})
            return web.Response(text="ok")
        body = await request.read()
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        calls[operation] = calls.get(operation, 0) + 1
        if operation == "PutItem":
            if latency_ms > 0:
                await asyncio.sleep(latency_ms / 1000)
            return web.Response(body=b"{}", content_type="application/x-amz-json-1.0")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(forward + request.path_qs, data=body, headers=headers) as resp:
            return web.Response(
                body=await resp.read(),
                status=resp.status,
                headers={"Content-Type": resp.headers.get("Content-Type", "")},
            )

    async def client(app: web.Application) -> AsyncIterator[None]:
        app["session"] = aiohttp.ClientSession()
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- command line --------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.bench",
        description="gpusim directly vs through the gateway (docs/BENCHMARKS.md).",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("BENCH_REQUESTS_SCALE") or 1.0),
        help="multiply the requests per phase (300 at c=1, 1500 at c=32); env BENCH_REQUESTS_SCALE",
    )
    parser.add_argument(
        "--concurrency", default="1,32", help="comma-separated concurrencies (default 1,32)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds per phase and path")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests per phase")
    parser.add_argument("--completion-tokens", type=int, default=50)
    parser.add_argument(
        "--db-latency-ms",
        type=float,
        default=0.0,
        help="the DynamoDB stand-in answers usage writes after this long (default 0)",
    )
    parser.add_argument(
        "--no-moto",
        action="store_true",
        help="skip the second gateway, whose usage is written to moto (halves the run time)",
    )
    parser.add_argument(
        "--tokenizers-dir",
        type=Path,
        default=Path(os.environ.get("TOKENIZERS_DIR") or DEFAULT_TOKENIZERS),
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--serve-instant-dynamodb", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--forward", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.rounds < 1:
        parser.error("--scale must be > 0 and --rounds >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_instant_dynamodb:
        serve_instant_dynamodb(args.serve_instant_dynamodb, args.forward, args.db_latency_ms)
        return 0

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    config = BenchConfig(
        phases=default_phases(args.scale, concurrencies),
        rounds=args.rounds,
        warmup=args.warmup,
        completion_tokens=args.completion_tokens,
        db_latency_ms=args.db_latency_ms,
        moto_usage=not args.no_moto,
        tokenizers_dir=args.tokenizers_dir,
        logs_dir=args.out / "logs",
    )
    try:
        result = run_benchmark(config)
    except KeyboardInterrupt:
        say("interrupted; the stack is stopped")
        return 130
    except RuntimeError as exc:
        say(f"failed: {exc}")
        return 1
    markdown = render_markdown(result)
    path = write_results(markdown, result.started_at, args.out)
    sys.stdout.write("\n" + markdown + "\n")
    say(f"written to {path} and {args.out / 'latest.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
