"""`python -m devstack.bench.instructions`: callgrind's count of the gateway's instructions
over a few requests, and the table. No figure is asserted beyond its being counted:
the figures are for docs/BENCHMARKS.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from devstack.bench.instructions import FUNCTIONS, measure, render, timed, totals


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


def test_the_timed_mode_reports_cpu_and_ttft_of_a_stream(tokenizers_dir: Path) -> None:
    cpu_ms, ttft_ms = timed(
        FUNCTIONS, stream=True, concurrency=2, requests=10, tokenizers=tokenizers_dir
    )
    assert cpu_ms > 0 and ttft_ms > 0
