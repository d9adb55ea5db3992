"""`make chaos` (python -m devstack.chaos): the mixed-fault run of issue 27.

Starts a stack on free ports, sends the plan's requests at the given concurrency while
DynamoDB is paused twice and a replica is stopped once, waits for the aggregator to drain,
checks the invariants (devstack.chaos.audit), prints the summary and exits 1 on any
violation. The stack is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.chaos.audit import Findings, audit
from devstack.chaos.client import Outcome, Progress, run_clients
from devstack.chaos.faults import Timeline, default_faults, inject
from devstack.chaos.plan import default_keys, make_plan
from devstack.chaos.report import render
from devstack.chaos.stack import Stack, running_stack

# The gateway's deadlines (key lookup, admission, usage write), scaled to moto's speed on a
# shared 2-core machine as `make soak` does (production: 1-1.5 s).
DEADLINE_SECONDS = "4"
EMBEDDING_MODEL = "qwen3-embedding"  # devstack.tokenizers' embedding model


@dataclass(frozen=True)
class Options:
    requests: int = 3000
    concurrency: int = 48
    dynamodb_pause: float = 8.0
    replica_pause: float = 10.0
    leave_seconds: float = 1.0
    leave_ttft_ms: float = 20_000
    slack: float = 3.0
    # How long a client waits for each read before it gives up and leaves (a hang upstream
    # of a model with one endpoint is otherwise held for UPSTREAM_READ_TIMEOUT, 300 s).
    client_timeout: float = 60.0
    log_path: Path | None = None  # where the gateway's log lines go (for digging)
    seed: int = 27


@dataclass
class Result:
    findings: Findings
    summary: str


async def _load(
    stack: Stack, options: Options, timeline: Timeline
) -> tuple[list[Outcome], dict[str, str], dict[str, str], set[str]]:
    keys = default_keys(options.requests)
    key_ids, secrets = {}, {}
    for spec in keys:
        key_ids[spec.name], secrets[spec.name] = stack.new_key(
            f"chaos-{spec.name}", **spec.limits()
        )
    # The first model is served by both replicas (failover); another by replica-1 alone.
    others = [m for m in stack.models[1:] if m != EMBEDDING_MODEL]
    chat_models = [stack.models[0], "qwen3" if "qwen3" in others else others[0]]
    plan = make_plan(
        requests=options.requests, keys=keys, chat_models=chat_models,
        embedding_model=EMBEDDING_MODEL, leave_seconds=options.leave_seconds,
        leave_ttft_ms=options.leave_ttft_ms, seed=options.seed,
    )  # fmt: skip
    progress = Progress()
    faults = default_faults(
        dynamodb_seconds=options.dynamodb_pause, replica_seconds=options.replica_pause
    )
    timeline.note("load started")
    injector = asyncio.create_task(
        inject(stack, faults, total=len(plan), progress=progress, timeline=timeline)
    )
    outcomes = await run_clients(
        stack.gateway_url, plan, secrets, concurrency=options.concurrency, progress=progress,
        read_timeout=options.client_timeout,
    )  # fmt: skip
    timeline.note("load finished")
    await injector
    budgeted = {k.name for k in keys if k.monthly_tokens is not None}
    return outcomes, key_ids, secrets, budgeted


def run(options: Options) -> Result:
    env = {
        f"{n}_DEADLINE_SECONDS": DEADLINE_SECONDS
        for n in ("KEY_LOOKUP", "ADMISSION", "USAGE_WRITE")
    }
    with running_stack(gateway_env=env) as stack:
        timeline = Timeline()
        started = time.monotonic()
        outcomes, key_ids, secrets, budgeted = asyncio.run(_load(stack, options, timeline))
        elapsed = time.monotonic() - started
        time.sleep(2.0)  # departed clients' records, written as their requests end
        stack.drain()
        timeline.note("aggregator drained")
        if options.log_path is not None:
            options.log_path.write_text("".join(stack.log_lines))
        findings, records = audit(
            stack, outcomes, key_ids=key_ids, secrets=secrets, budgeted=budgeted,
            slack=options.slack,
        )  # fmt: skip
    summary = render(
        outcomes=outcomes, records=records, findings=findings, timeline=timeline,
        elapsed=elapsed, concurrency=options.concurrency,
    )  # fmt: skip
    return Result(findings, summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = Options()
    parser.add_argument("--requests", type=int, default=defaults.requests)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--dynamodb-pause", type=float, default=defaults.dynamodb_pause,
                        help="seconds of each of the two DynamoDB pauses")  # fmt: skip
    parser.add_argument("--replica-pause", type=float, default=defaults.replica_pause,
                        help="seconds the second replica stays stopped (SIGSTOP)")  # fmt: skip
    parser.add_argument("--client-timeout", type=float, default=defaults.client_timeout,
                        help="seconds a client waits for a read before it leaves")  # fmt: skip
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--gateway-log", type=Path, help="write the gateway's log lines here")
    args = parser.parse_args(argv)
    options = Options(
        requests=args.requests, concurrency=args.concurrency,
        dynamodb_pause=args.dynamodb_pause, replica_pause=args.replica_pause, seed=args.seed,
        client_timeout=args.client_timeout, log_path=args.gateway_log,
    )  # fmt: skip
    # SIGTERM as Ctrl-C: the stack's processes are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    result = run(options)
    sys.stdout.write(result.summary + "\n")
    return 0 if result.findings.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
