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
reports, at c=1 and c=16. Both checkouts' stacks run at once, and each phase sends them
`--requests` requests in turn, ROUNDS times (who goes first alternates), so that the
host's drift, which moved whole runs by 2x here, falls on both alike; CPU is summed over
the rounds, TTFT is the median of every request's.
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
TIMED_WARMUP = 200


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


def _stack(
    functions: Path,
    tokenizers: Path,
    logs: Path,
    *,
    prefix: Sequence[str] = (),
    start_seconds: float = 60,
) -> Stack:
    """The bench's stack with the gateway imported from `functions`, serving the chat model
    alone (under `prefix`, e.g. callgrind, which may take `start_seconds` to start)."""
    return Stack(
        _config(tokenizers, logs),
        progress=lambda _: None,
        gateway_functions=functions,
        gateway_prefix=prefix,
        start_seconds=start_seconds,
        models=chat_model_only,
    )


async def _interleaved(
    stacks: dict[str, Stack],
    *,
    stream: bool,
    concurrency: int,
    rounds: int,
    requests: int,
    warmup: int,
) -> dict[str, Measurement]:
    """`rounds` turns of `requests` requests to each stack, who goes first alternating;
    one measurement per stack over all its turns (after `warmup` requests each)."""
    timeout = aiohttp.ClientTimeout(total=300)
    out = {name: Measurement() for name in stacks}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        targets = {name: stack.target("gateway") for name, stack in stacks.items()}
        for target in targets.values():
            warm = Measurement()
            await load(session, target, stream=stream, concurrency=concurrency,
                       requests=warmup, out=warm)  # fmt: skip
        names = list(stacks)
        for n in range(rounds):
            for name in names if n % 2 == 0 else names[::-1]:
                await load(session, targets[name], stream=stream, concurrency=concurrency,
                           requests=requests, out=out[name])  # fmt: skip
    return out


def run_timed(
    base: Path,
    new: Path,
    *,
    rounds: int,
    requests: int,
    tokenizers: Path,
    warmup: int = TIMED_WARMUP,
) -> str:
    """Base and new side by side (module docstring, `--timed`): the table."""
    lines = [
        f"| phase ({rounds} x {requests} requests each, interleaved) | base CPU ms/req "
        "| new CPU ms/req | new / base | base TTFT p50 ms | new TTFT p50 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="gw-timed-") as tmp:
        say("starting the base's and the new checkout's stacks")
        with (
            _stack(base, tokenizers, Path(tmp) / "base") as b,
            _stack(new, tokenizers, Path(tmp) / "new") as n,
        ):
            for stream, concurrency in TIMED_PHASES:
                phase = f"{'stream' if stream else 'non-stream'} c={concurrency}"
                say(f"{phase}: {rounds} rounds of {requests} requests to each")
                out = asyncio.run(
                    _interleaved({"base": b, "new": n}, stream=stream,
                                 concurrency=concurrency, rounds=rounds, requests=requests,
                                 warmup=warmup)
                )  # fmt: skip
                for name, done in out.items():
                    if done.errors:
                        raise SystemExit(f"{name}: {done.errors} failed: {done.first_error}")
                b_cpu, n_cpu = (1000 * out[k].cpu / out[k].ok for k in ("base", "new"))
                b_ttft, n_ttft = (
                    statistics.median(out[k].ttfts) * 1000 if stream else 0.0
                    for k in ("base", "new")
                )
                ttfts = f"{b_ttft:.2f} | {n_ttft:.2f}" if stream else "— | —"
                ratio = f"{n_cpu / b_cpu:.2f}x" if b_cpu else "—"  # 10 ms ticks: may read 0
                lines.append(f"| {phase} | {b_cpu:.2f} | {n_cpu:.2f} | {ratio} | {ttfts} |")
    return "\n".join(lines)


def measure(functions: Path, *, stream: bool, requests: int, tokenizers: Path) -> float:
    """Instructions per request of the gateway imported from `functions`."""
    with tempfile.TemporaryDirectory(prefix="gw-instructions-") as tmp:
        out = Path(tmp) / "callgrind.out"
        prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                  f"--callgrind-out-file={out}"]  # fmt: skip
        stack = _stack(functions, tokenizers, Path(tmp) / "logs", prefix=prefix, start_seconds=600)
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
        help="no callgrind: CPU-seconds and TTFT at c=1 and c=16, both checkouts running at "
        "once and sent --requests in turn, ROUNDS times",
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
