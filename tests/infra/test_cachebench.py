"""make bench-routing at a tiny scale: every policy serves the workload through real gpusim
replicas and the table reports each (a smoke test, never a timing assertion)."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

from devstack.cachebench.__main__ import drive
from devstack.cachebench.drive import POLICIES
from devstack.cachebench.replicas import MODEL, GpuShape
from devstack.cachebench.report import render, summarize
from devstack.cachebench.workload import Workload, conversations

from tests.support.servers import serve_asgi

TINY = Workload(conversations=4, turns=2, rate=20.0, think=0.0, system_words=20,
                first_words=40, later_words=5)  # fmt: skip


def test_every_policy_serves_the_tiny_workload(tokenizers_dir: Path) -> None:
    from gpusim import SimConfig, create_app

    shape = GpuShape(completion_tokens=4, prefill_ms_per_token=0.0, tpot_ms=0.0)
    config = SimConfig(
        tokenizers_dir=tokenizers_dir,
        models=(MODEL,),
        completion_tokens=shape.completion_tokens,
        num_gpu_blocks=shape.num_gpu_blocks,
        enable_prompt_tokens_details=True,
    )
    runs = []
    for policy in POLICIES:
        with ExitStack() as stack:
            apps = [create_app(config) for _ in range(3)]
            for app in apps:  # one at a time: transformers' lazy import is not thread-safe
                app.state.sim.registry.preload()
            urls = [stack.enter_context(serve_asgi(app)) for app in apps]
            runs.append(asyncio.run(drive(policy, urls, tokenizers_dir, TINY)))
    assert [run.policy for run in runs] == list(POLICIES)
    for run in runs:
        assert run.failed == 0 and len(run.served) == 8
        assert summarize(run, shape).hit_rate > 0  # second turns find their first's blocks
    keyed = {run.policy: (run.keyed, run.spilled) for run in runs}
    assert keyed["affinity"][0] == 8 and 0 <= keyed["affinity"][1] <= 8
    assert keyed["p2c"] == keyed["round-robin"] == (0, 0)  # no key, no ring home
    table = render(runs, workload=TINY, shape=shape)
    assert all(f"| {policy} |" in table for policy in POLICIES)
    assert "hit rate >= 2x" in table
    assert len(conversations(TINY)) == 4
