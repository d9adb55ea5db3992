"""The bench's results: rows per phase and path, the markdown table and its notes, the
per-route CPU and cold-instance tables, and the files they are written to."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from devstack.bench.cold import ColdRow, render_cold
from devstack.bench.config import DIRECT, KEY_CACHE_TTL, MODEL, RESULTS_DIR, ROOT, BenchConfig
from devstack.bench.load import Measurement, percentile
from devstack.bench.routes import RouteRow, render_routes


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
    # Gateway CPU per request by route, and the first request of fresh gateway processes.
    routes: tuple[RouteRow, ...] = ()
    cold: tuple[ColdRow, ...] = ()


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
    return f"{title}\n\n{render_table(result.rows)}\n\n{bullets}\n" + _extra_sections(result)


def _extra_sections(result: BenchResult) -> str:
    text = ""
    if result.routes:
        text += (
            "\n## CPU per route\n\n"
            f"{render_routes(result.routes)}\n\n"
            "- The *gateway* path (stand-in DB), sequential requests (c=1), the routes "
            "alternating in 2 rounds after 5 unmeasured requests each; CPU is the gateway "
            "process's utime+stime per request (10 ms tick per round). Completions and "
            "embeddings are buffered; models is answered by the gateway alone.\n"
        )
    if result.cold:
        text += (
            "\n## Cold instance\n\n"
            f"{render_cold(result.cold)}\n\n"
            "- Medians over fresh gateway processes (same settings as *gateway*, empty key "
            "cache). Spawn to ready: until /health answers (polled every 5 ms), as the Web "
            "Adapter waits. TTFT: first content chunk of a streamed chat completion on a new "
            "connection; +TTFT: minus a streamed request straight to gpusim in the same run.\n"
        )
    return text


def _calls_note(result: BenchResult) -> str:
    if not result.calls_by_key:
        return ""
    parts = ", ".join(f"{kind}: {calls:.2f}" for kind, calls in result.calls_by_key.items())
    return f"DynamoDB calls per request, sequential, by key: {parts}."


def write_results(markdown: str, started_at: datetime, out_dir: Path = RESULTS_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{started_at:%Y%m%d-%H%M%S}.md"
    path.write_text(markdown)
    (out_dir / "latest.md").write_text(markdown)
    return path
