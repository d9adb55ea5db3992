"""`make bench-routing` (python -m devstack.cachebench [--scale S] [--seed N] [--balance C]
[--out FILE]).

Three gpusim replicas (fresh ones for each policy, so every policy starts with empty
caches), the same workload under round-robin, the gateway's weighted P2C and its prefix
affinity, then affinity again with one replica's decode twice as slow. The table:
prefix-cache hit rate (cached / prompt tokens, from each answer's usage), TTFT p50 and p99
(to the first streamed chunk), GPU prefill seconds (uncached prompt tokens x the
replicas' prefill time per token) and each replica's share of requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.backends.affinity import BALANCE

from devstack.cachebench.drive import POLICIES, Driver, Run
from devstack.cachebench.replicas import GpuShape, replicas
from devstack.cachebench.report import render
from devstack.cachebench.workload import Workload, conversations

DEFAULT_TOKENIZERS = Path(__file__).resolve().parents[3].parent / "shared" / "tokenizers"


async def drive(
    policy: str,
    urls: list[str],
    tokenizers_dir: Path,
    workload: Workload,
    *,
    balance: float = BALANCE,
) -> Run:
    driver = Driver(policy, urls, tokenizers_dir, balance=balance)
    started = time.monotonic() + 0.5
    try:
        await asyncio.gather(
            *(
                driver.conversation(talk, started=started, think=workload.think)
                for talk in conversations(workload)
            )
        )
    finally:
        await driver.close()
    return driver.run


def run_all(
    tokenizers_dir: Path,
    workload: Workload,
    shape: GpuShape,
    *,
    slowed: bool = True,
    balance: float = BALANCE,
) -> list[Run]:
    """Each policy on fresh replicas; then affinity with replica r2 slowed to 2x decode."""
    cases = [(policy, (1.0, 1.0, 1.0)) for policy in POLICIES]
    if slowed:
        cases.append(("affinity", (1.0, 1.0, 2.0)))
    runs = []
    for policy, slow in cases:
        with replicas(tokenizers_dir, shape, slow=slow) as urls:
            run = asyncio.run(drive(policy, urls, tokenizers_dir, workload, balance=balance))
        if slow != (1.0, 1.0, 1.0):
            run.policy += ", r2 2x decode"
        runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.cachebench")
    parser.add_argument("--scale", type=float, default=1.0, help="x the conversations")
    parser.add_argument("--seed", type=int, default=Workload.seed, help="the workload's seed")
    parser.add_argument(
        "--balance", type=float, default=BALANCE, help="the router's bounded-load factor c"
    )
    parser.add_argument("--tokenizers-dir", type=Path, default=DEFAULT_TOKENIZERS)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    workload = Workload(seed=args.seed).scaled(args.scale)
    shape = GpuShape()
    runs = run_all(args.tokenizers_dir, workload, shape, balance=args.balance)
    table = render(runs, workload=workload, shape=shape, balance=args.balance)
    sys.stdout.write(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
