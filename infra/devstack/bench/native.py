"""The Responses and Messages APIs on one model, translated to chat and forwarded natively,
side by side: the gateway's CPU, latency and DynamoDB calls per buffered request
(routes.py's measurement, the four routes alternating round by round), and the ratio of
native to translated. gpusim answers both ways from the same engine, so the difference is
the gateway's own work (and gpusim's own translation, which runs in its process).

    .venv/bin/python -m devstack.bench.native --requests 200
"""

from __future__ import annotations

import argparse

import orjson

from devstack.bench.config import MODEL, NATIVE_MODEL, PROMPT, BenchConfig, say
from devstack.bench.load import Request
from devstack.bench.routes import RouteRow, measure_routes, render_routes
from devstack.bench.run import asyncio_run
from devstack.bench.stack import Stack


def _responses(model: str) -> Request:
    return Request(orjson.dumps({"model": model, "input": PROMPT}), expect=b'"output"')


def _messages(model: str) -> Request:
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]}
    return Request(orjson.dumps(body), expect=b'"content"')


ROUTES: tuple[tuple[str, str, Request], ...] = (
    ("responses, translated", "/v1/responses", _responses(MODEL)),
    ("responses, native", "/v1/responses", _responses(NATIVE_MODEL)),
    ("messages, translated", "/v1/messages", _messages(MODEL)),
    ("messages, native", "/v1/messages", _messages(NATIVE_MODEL)),
)


def ratios(rows: tuple[RouteRow, ...]) -> str:
    by_name = {row.route: row for row in rows}
    lines = []
    for api in ("responses", "messages"):
        native, translated = by_name[f"{api}, native"], by_name[f"{api}, translated"]
        cpu = native.cpu_ms_per_request / max(translated.cpu_ms_per_request, 1e-9)
        p50 = native.p50_ms / max(translated.p50_ms, 1e-9)
        lines.append(f"{api}: native / translated CPU {cpu:.2f}x, p50 {p50:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per route (default 200)")
    args = parser.parse_args()
    config = BenchConfig(moto_usage=False, cold_runs=0, route_requests=args.requests)
    with Stack(config) as stack:
        rows = asyncio_run(measure_routes(stack, args.requests, routes=ROUTES))
    say(render_routes(rows))
    say(ratios(rows))


if __name__ == "__main__":
    main()
