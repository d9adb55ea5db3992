"""Instructions per request through the gateway, two checkouts side by side, counted by
callgrind: a CPU figure that the machine's load does not move.

    python -m devstack.bench.instructions --base /tmp/base/functions [--requests 100]

`make bench`'s CPU-seconds per request scatter by 20-50 % between runs on a shared two-core
machine, more than the differences worth finding. An instruction count is the same from
one run to the next (within the audit sample's completion counts, USAGE_AUDIT_RATE), so
two checkouts compare in one pass each. For each checkout and each mode (buffered,
streamed), the bench's stack starts (gpusim, the DynamoDB stand-in, moto for the keys) with
the gateway process under `valgrind --tool=callgrind` and its counting off; after a
warm-up, counting is switched on (`callgrind_control -i on`) for `--requests` sequential
chat completions, then off. The gateway's instructions divided by the requests are the
figure (user space only: no kernel time, no cache misses; docs/BENCHMARKS.md, "Counted in
instructions").

`--base`: the other checkout's functions/ directory (`git archive <commit> functions`);
the harness, gpusim and the keys are this checkout's for both.

`--timed ROUNDS`: no callgrind; the CPU-seconds per request and the TTFT that `make bench`
reports, base and new alternated ROUNDS times at c=1 and c=16, medians side by side: for a
quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from devstack.bench.config import MODEL, BenchConfig, say
from devstack.bench.load import Measurement, load
from devstack.bench.stack import Stack

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"
WARMUP = 30


def chat_model_only(sim_url: str) -> str:
    """MODELS_CONFIG with the bench's chat model alone, in fields every checkout knows."""
    upstream = {"type": "openai", "base_url": sim_url, "model": MODEL}
    return json.dumps({"models": [{"id": MODEL, "tokenizer": MODEL, "upstream": upstream}]})


def totals(path: Path) -> int:
    """The instructions a callgrind output file counted: its `totals:` line (its header's
    `summary:` is 0 when counting started switched off)."""
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"no totals in {path}")


async def _requests(stack: Stack, *, stream: bool, count: int, concurrency: int = 1) -> Measurement:
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        out = Measurement()
        target = stack.target("gateway")
        await load(session, target, stream=stream, concurrency=concurrency, requests=count, out=out)
        return out


def _config(tokenizers: Path, logs: Path) -> BenchConfig:
    return BenchConfig(
        moto_usage=False, tokenizers_dir=tokenizers, cold_runs=0, route_requests=0, logs_dir=logs
    )


def timed(
    functions: Path, *, stream: bool, concurrency: int, requests: int, tokenizers: Path
) -> tuple[float, float]:
    """(CPU ms per request, TTFT p50 ms) of the gateway imported from `functions`, without
    callgrind: the CPU-seconds `make bench` reports, for a quiet machine (`--timed`)."""
    with tempfile.TemporaryDirectory(prefix="gw-timed-") as tmp:
        stack = Stack(
            _config(tokenizers, Path(tmp)),
            progress=lambda _: None,
            gateway_functions=functions,
            models=chat_model_only,
        )
        with stack:
            asyncio.run(_requests(stack, stream=stream, count=200, concurrency=concurrency))
            done = asyncio.run(
                _requests(stack, stream=stream, count=requests, concurrency=concurrency)
            )
        if done.errors:
            raise SystemExit(f"{done.errors} requests failed: {done.first_error}")
        ttft = statistics.median(done.ttfts) * 1000 if done.ttfts else 0.0
        return 1000 * done.cpu / done.ok, ttft


def measure(functions: Path, *, stream: bool, requests: int, tokenizers: Path) -> float:
    """Instructions per request of the gateway imported from `functions`."""
    with tempfile.TemporaryDirectory(prefix="gw-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                  f"--callgrind-out-file={out}"]  # fmt: skip
        stack = Stack(
            _config(tokenizers, Path(tmp) / "logs"),
            progress=lambda _: None,
            gateway_functions=functions,
            gateway_prefix=prefix,
            start_seconds=600,
            models=chat_model_only,
        )
        with stack:
            pid = stack.target("gateway").pid
            warm = asyncio.run(_requests(stack, stream=stream, count=WARMUP))
            if warm.errors:
                raise SystemExit(f"the gateway failed its warm-up: {warm.first_error}")
            subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True,
                           capture_output=True)  # fmt: skip
            done = asyncio.run(_requests(stack, stream=stream, count=requests))
            subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True,
                           capture_output=True)  # fmt: skip
            if done.errors:
                raise SystemExit(f"{done.errors} requests failed: {done.first_error}")
        deadline = time.monotonic() + 60  # callgrind writes its file as the process exits
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return totals(out) / requests


def render(rows: Sequence[tuple[str, float, float]], *, requests: int) -> str:
    lines = [
        f"| path ({requests} requests, c=1) | base instructions/req | new instructions/req "
        "| new / base |",
        "|---|---:|---:|---:|",
    ]
    for mode, base, new in rows:
        lines.append(f"| {mode} | {base:,.0f} | {new:,.0f} | {new / base:.3f}x |")
    return "\n".join(lines)


TIMED_PHASES = ((False, 1), (True, 1), (False, 16), (True, 16))


def run_timed(base: Path, new: Path, *, rounds: int, requests: int, tokenizers: Path) -> str:
    """`rounds` alternations of base and new per phase; the medians and their ratio."""
    figures: dict[tuple[bool, int, str], list[tuple[float, float]]] = {}
    for n in range(rounds):
        for stream, concurrency in TIMED_PHASES:
            for name, functions in (("base", base), ("new", new)):
                cpu, ttft = timed(
                    functions,
                    stream=stream,
                    concurrency=concurrency,
                    requests=requests,
                    tokenizers=tokenizers,
                )
                figures.setdefault((stream, concurrency, name), []).append((cpu, ttft))
                say(f"round {n + 1}, stream={stream} c={concurrency}: {name} {cpu:.2f} ms/req")
    lines = [
        f"| phase ({requests} requests, median of {rounds}) | base CPU ms/req | new CPU ms/req "
        "| new / base | base TTFT p50 ms | new TTFT p50 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for stream, concurrency in TIMED_PHASES:
        b_cpu, b_ttft = (
            statistics.median(v) for v in zip(*figures[stream, concurrency, "base"], strict=True)
        )
        n_cpu, n_ttft = (
            statistics.median(v) for v in zip(*figures[stream, concurrency, "new"], strict=True)
        )
        phase = f"{'stream' if stream else 'non-stream'} c={concurrency}"
        ttfts = f"{b_ttft:.2f} | {n_ttft:.2f}" if stream else "— | —"
        lines.append(f"| {phase} | {b_cpu:.2f} | {n_cpu:.2f} | {n_cpu / b_cpu:.2f}x | {ttfts} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.bench.instructions", description=__doc__
    )
    parser.add_argument("--base", type=Path, required=True, help="the base's functions/ dir")
    parser.add_argument("--new", type=Path, default=FUNCTIONS, help="default: this checkout's")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--tokenizers-dir", type=Path, default=BenchConfig().tokenizers_dir)
    parser.add_argument(
        "--timed",
        type=int,
        metavar="ROUNDS",
        help="no callgrind: CPU-seconds and TTFT, base and new alternated ROUNDS times at "
        "c=1 and c=16 (--requests each; for a quiet machine)",
    )
    args = parser.parse_args(argv)
    tokenizers = args.tokenizers_dir.resolve()
    if args.timed:
        table = run_timed(
            args.base.resolve(),
            args.new.resolve(),
            rounds=args.timed,
            requests=args.requests,
            tokenizers=tokenizers,
        )
        sys.stdout.write(table + "\n")
        return 0
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install valgrind)")
    rows = []
    for stream in (False, True):
        mode = "stream (50 chunks)" if stream else "non-stream"
        figures = []
        for name, functions in (("base", args.base), ("new", args.new)):
            say(f"{mode}: {name} ({functions}) under callgrind")
            figures.append(
                measure(
                    functions.resolve(),
                    stream=stream,
                    requests=args.requests,
                    tokenizers=args.tokenizers_dir.resolve(),
                )
            )
        rows.append((mode, figures[0], figures[1]))
    sys.stdout.write(render(rows, requests=args.requests) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
