"""`make bench-coldstart` smoke test: the script runs with tiny counts and fills its table.

No timing assertions: cold-start figures are for docs/BENCHMARKS.md, not for tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from devstack.coldstart import (
    SCENARIOS,
    Config,
    import_offenders,
    render_markdown,
    run_coldstart,
    write_results,
)
from devstack.coldstart.__main__ import parse_args

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |     encodings.idna
import time:       300 |        300 |       fastapi.openapi.models
import time:       200 |        500 |     fastapi.routing
import time:        50 |        550 |   fastapi
import time:       400 |        400 |     botocore.client
import time:        10 |        410 |   boto3
import time:      1000 |       2960 | gateway.lambdas.api
"""


def test_import_offenders_sums_self_time_per_package() -> None:
    offenders, total = import_offenders(IMPORTTIME)
    assert total == pytest.approx(2.06)
    assert offenders[0] == ("gateway.lambdas.api (app build)", 1.0, "-")
    assert ("fastapi", 0.55, "gateway.lambdas.api") in offenders
    assert ("botocore", 0.4, "boto3") in offenders
    assert ("encodings", 0.1, "fastapi") in offenders


def test_parse_args_defaults() -> None:
    args = parse_args([])
    assert args.runs >= 3
    assert args.models.split(",") == ["qwen3", "llama-3-8b-instruct"]
    assert args.out.name == "coldstart.md"
    assert (args.functions / "gateway" / "lambdas" / "api.py").is_file()


def test_coldstart_smoke(tokenizers_dir: Path, tmp_path: Path) -> None:
    config = Config(
        runs=1,
        tokenizers_dir=tokenizers_dir,
        models={"qwen3": "qwen3", "llama3": "llama-3-8b-instruct"},
        warmup=False,
    )
    messages: list[str] = []
    result = run_coldstart(config, progress=messages.append)

    assert [s.name for s in SCENARIOS] == list(result.samples)
    for scenario in SCENARIOS:
        samples = result.samples[scenario.name]
        for figures in (samples.init, samples.imports, samples.build, samples.tokenizers):
            assert len(figures) == 1 and figures[0] >= 0
        for figures in (samples.init_cpu, samples.imports_cpu, samples.build_cpu):
            assert len(figures) == 1 and figures[0] > 0
        assert samples.maxrss_kb[0] > 10_000  # KiB: a Python process with the app loaded
        # Issue 16: ApiFunction imports none of aiohttp, jinja2, tokenizers, boto3 at init.
        if scenario.function == "api":
            assert samples.heavy == set(), scenario
    assert {s.function for s in SCENARIOS} == {"api", "stream"}
    assert len(result.python_startup) == 1
    assert result.offenders and result.importtime_total_ms > 0

    markdown = render_markdown(result)
    for scenario in SCENARIOS:
        assert f"| {scenario.name} |" in markdown
    assert "## Where the import time goes" in markdown
    assert "| fastapi |" in markdown

    path = write_results(markdown, tmp_path / "out" / "coldstart.md")
    assert path.read_text() == markdown
