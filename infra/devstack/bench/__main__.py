"""`python -m devstack.bench` (`make bench`): the command line; docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack.__main__ import DEFAULT_TOKENIZERS
from devstack.bench.config import RESULTS_DIR, BenchConfig, default_phases, say
from devstack.bench.instantdb import serve_instant_dynamodb
from devstack.bench.report import render_markdown, write_results
from devstack.bench.run import run_benchmark

# Sequential requests per route for the per-route CPU, at scale 1.
ROUTE_REQUESTS = 200


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
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=3,
        help="fresh gateway processes per cold-instance variant (0: skip; default 3)",
    )
    parser.add_argument(
        "--route-requests",
        type=int,
        help=f"sequential requests per route for the per-route CPU (0: skip; default "
        f"{ROUTE_REQUESTS} x --scale)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument("--serve-instant-dynamodb", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--forward", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.rounds < 1 or args.cold_runs < 0:
        parser.error("--scale must be > 0, --rounds >= 1 and --cold-runs >= 0")
    if args.route_requests is None:
        args.route_requests = max(10, round(ROUTE_REQUESTS * args.scale))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_instant_dynamodb:
        serve_instant_dynamodb(args.serve_instant_dynamodb, args.forward, args.db_latency_ms)
        return 0

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
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
        cold_runs=args.cold_runs,
        route_requests=args.route_requests,
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
