"""`python -m devstack.bench.signing` smoke test: one round of two checkouts (this one
twice) against the DynamoDB stand-in yields a CPU figure per PutItem for each and a ratio.

No timing assertions: figures on a shared machine are for docs/BENCHMARKS.md."""

from __future__ import annotations

from devstack.bench.signing import FUNCTIONS, render, run


def test_signing_bench_smoke() -> None:
    pairs = run(FUNCTIONS, FUNCTIONS, calls=20, rounds=1)
    [(base, new)] = pairs
    assert base > 0 and new > 0
    table = render(pairs, calls=20)
    assert "| 1 |" in table and "| median |" in table and table.count("x |") == 2
