"""The bench's table, and the targets issue 24 sets against P2C."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.backends.affinity import BALANCE

from devstack.cachebench.drive import Run
from devstack.cachebench.replicas import GpuShape
from devstack.cachebench.workload import Workload

REPLICAS = ("r0", "r1", "r2")


@dataclass(frozen=True)
class Summary:
    policy: str
    requests: int
    failed: int
    hit_rate: float
    ttft_p50: float
    ttft_p99: float
    prefill_seconds: float
    shares: dict[str, float]
    key_ms: float  # mean time to compute a request's prefix key
    spilled: float | None  # share of keyed requests served off their ring home

    @property
    def max_share_ratio(self) -> float:
        """The busiest replica's share over the mean share."""
        return max(self.shares.values()) * len(self.shares)


def summarize(run: Run, shape: GpuShape) -> Summary:
    served = run.served
    prompt = sum(s.prompt_tokens for s in served) or 1
    cached = sum(s.cached_tokens for s in served)
    ttfts = sorted(s.ttft for s in served) or [0.0]
    counts = Counter(s.endpoint for s in served)
    total = len(served) or 1
    return Summary(
        policy=run.policy,
        requests=len(served),
        failed=run.failed,
        hit_rate=cached / prompt,
        ttft_p50=statistics.median(ttfts),
        ttft_p99=ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
        prefill_seconds=(prompt - cached) * shape.prefill_ms_per_token / 1000,
        shares={name: counts.get(name, 0) / total for name in REPLICAS},
        key_ms=run.key_seconds / total * 1000,
        spilled=run.spilled / run.keyed if run.keyed else None,
    )


def targets(new: Summary, p2c: Summary) -> list[tuple[str, bool]]:
    """Issue 24's targets for the new router against P2C."""
    return [
        (f"hit rate >= 2x P2C's ({new.hit_rate / max(p2c.hit_rate, 1e-9):.2f}x)",
         new.hit_rate >= 2 * p2c.hit_rate),
        (f"TTFT p50 <= 0.6x P2C's ({new.ttft_p50 / max(p2c.ttft_p50, 1e-9):.2f}x)",
         new.ttft_p50 <= 0.6 * p2c.ttft_p50),
        (f"prefill seconds <= 0.6x P2C's "
         f"({new.prefill_seconds / max(p2c.prefill_seconds, 1e-9):.2f}x)",
         new.prefill_seconds <= 0.6 * p2c.prefill_seconds),
        (f"no replica above 1.3x the mean share ({new.max_share_ratio:.2f}x)",
         new.max_share_ratio <= 1.3),
    ]  # fmt: skip


def render(
    runs: Sequence[Run], *, workload: Workload, shape: GpuShape, balance: float = BALANCE
) -> str:
    rows = [summarize(run, shape) for run in runs]
    lines = [
        f"{workload.conversations} conversations x {workload.turns} turns, "
        f"{workload.rate:g}/s, {workload.system_prompts} system prompts, seed "
        f"{workload.seed}; 3 replicas of "
        f"{shape.num_gpu_blocks} KV blocks, max_num_seqs {shape.max_num_seqs}, "
        f"prefill {shape.prefill_ms_per_token:g} ms/token; affinity's bound {balance:g}x\n",
        "| policy | requests | failed | hit rate (tokens) | TTFT p50 | TTFT p99 "
        "| prefill s | r0 | r1 | r2 | prefix key | spilled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        share = " | ".join(f"{s.shares[name]:.0%}" for name in REPLICAS)
        lines.append(
            f"| {s.policy} | {s.requests} | {s.failed} | {s.hit_rate:.1%} "
            f"| {s.ttft_p50 * 1000:.0f} ms | {s.ttft_p99 * 1000:.0f} ms "
            f"| {s.prefill_seconds:.1f} | {share} | {s.key_ms:.1f} ms "
            f"| {'-' if s.spilled is None else f'{s.spilled:.0%}'} |"
        )
    by_policy = {s.policy: s for s in rows}
    if "p2c" in by_policy and "affinity" in by_policy:
        lines.append("")
        for text, met in targets(by_policy["affinity"], by_policy["p2c"]):
            lines.append(f"- {'met' if met else 'NOT met'}: {text}")
    return "\n".join(lines) + "\n"
