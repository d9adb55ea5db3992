"""`python -m devstack.bench.instructions`: callgrind's count of the gateway's instructions
over a few requests, and the table. No figure is asserted beyond its being counted:
the figures are for docs/BENCHMARKS.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from devstack.bench.instructions import FUNCTIONS, measure, render, run_timed, totals


def test_totals_reads_the_count_of_the_file_not_its_header(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("version: 1\nevents: Ir\nsummary: 0\nfn=(1) main\n5 12\ntotals: 324580561\n")
    assert totals(out) == 324_580_561
    (tmp_path / "empty.out").write_text("events: Ir\nsummary: 0\n")
    with pytest.raises(ValueError, match="no totals"):
        totals(tmp_path / "empty.out")


def test_render_gives_the_ratio_per_path() -> None:
    table = render([("non-stream", 2_000_000.0, 2_100_000.0)], requests=10)
    assert "| non-stream | 2,000,000 | 2,100,000 | 1.050x |" in table


@pytest.mark.skipif(shutil.which("callgrind_control") is None, reason="valgrind is not installed")
def test_a_few_requests_through_the_gateway_under_callgrind_are_counted(
    tokenizers_dir: Path,
) -> None:
    per_request = measure(FUNCTIONS, stream=False, requests=3, tokenizers=tokenizers_dir)
    # a request runs at least the HTTP parsing, the count and the usage write: far more
    # than 100k instructions; the whole process over its life would be billions
    assert 100_000 < per_request < 100_000_000


def test_the_timed_mode_reports_both_checkouts_per_phase(tokenizers_dir: Path) -> None:
    table = run_timed(
        FUNCTIONS, FUNCTIONS, rounds=2, requests=3, tokenizers=tokenizers_dir, warmup=2
    )
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    phases = [row[0].strip() for row in rows]
    assert phases == ["non-stream c=1", "stream c=1", "non-stream c=16", "stream c=16"]
    for row in rows:
        base_cpu, new_cpu = float(row[1]), float(row[2])
        assert base_cpu >= 0 and new_cpu >= 0  # 10 ms ticks: a few requests may read 0
        if row[0].startswith(" stream"):
            assert float(row[4]) > 0 and float(row[5]) > 0  # TTFT p50 of each checkout
