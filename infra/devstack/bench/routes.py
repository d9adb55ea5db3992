"""Per-route CPU: the gateway path's CPU, latency and DynamoDB calls per request for each
kind of request it serves, sequential (c=1) so that the figures are the request's own cost,
the routes alternating round by round."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from devstack.bench.config import EMBEDDING_MODEL, GATEWAY, MODEL, PROMPT
from devstack.bench.load import Measurement, Request, load, percentile, request_body, split
from devstack.bench.phases import session_for_path
from devstack.bench.stack import Stack

# (name, path, request): chat both ways, a buffered generation route, a buffered
# non-generation route upstream (embeddings), and one the gateway answers alone.
ROUTES: tuple[tuple[str, str, Request], ...] = (
    ("chat, non-stream", "/v1/chat/completions", Request(request_body(False))),
    ("chat, stream", "/v1/chat/completions", Request(request_body(True), stream=True)),
    (
        "completions, non-stream",
        "/v1/completions",
        Request(orjson.dumps({"model": MODEL, "prompt": PROMPT})),
    ),
    (
        "embeddings",
        "/v1/embeddings",
        Request(orjson.dumps({"model": EMBEDDING_MODEL, "input": PROMPT}), expect=b'"data"'),
    ),
    ("models (no upstream)", "/v1/models", Request(None, expect=b'"data"')),
)


@dataclass(frozen=True)
class RouteRow:
    route: str
    requests: int
    errors: int
    p50_ms: float
    cpu_ms_per_request: float
    db_calls_per_request: float


async def measure_routes(
    stack: Stack,
    requests: int,
    rounds: int = 2,
    routes: tuple[tuple[str, str, Request], ...] = ROUTES,
) -> tuple[RouteRow, ...]:
    """`requests` per route on the gateway path (stand-in DB), after 5 unmeasured each."""
    targets = {name: stack.target(GATEWAY, path) for name, path, _ in routes}
    kinds = {name: request for name, _, request in routes}
    measured = {name: Measurement() for name in targets}
    async with session_for_path() as session:
        for name, target in targets.items():
            warm = Measurement()
            await load(session, target, stream=False, concurrency=1, requests=5, out=warm,
                       request=kinds[name])  # fmt: skip
            if warm.errors:
                raise RuntimeError(f"warm-up of route {name} failed: {warm.first_error}")
        for i, count in enumerate(split(requests, max(1, min(rounds, requests)))):
            names = list(targets) if i % 2 == 0 else list(targets)[::-1]
            for name in names:
                await load(session, targets[name], stream=False, concurrency=1, requests=count,
                           out=measured[name], request=kinds[name])  # fmt: skip
    return tuple(_row(name, m) for name, m in measured.items())


def _row(name: str, m: Measurement) -> RouteRow:
    total = max(1, m.ok + m.errors)
    return RouteRow(
        route=name,
        requests=m.ok,
        errors=m.errors,
        p50_ms=1000 * percentile(m.latencies, 50),
        cpu_ms_per_request=1000 * m.cpu / total,
        db_calls_per_request=m.calls / total,
    )


def render_routes(rows: tuple[RouteRow, ...]) -> str:
    lines = [
        "| route | requests | p50 ms | gateway CPU ms/req | DB calls/req | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.route} | {r.requests} | {r.p50_ms:.2f} | {r.cpu_ms_per_request:.2f} | "
            f"{r.db_calls_per_request:.2f} | {r.errors} |"
        )
    return "\n".join(lines)
