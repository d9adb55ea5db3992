"""`make bench-coldstart`: what a Lambda cold start costs each function before its first
request, in fresh processes (measure.py), with where the import time goes (importtime.py)
and the table (report.py). Nothing here is timed by the tests
(tests/infra/test_coldstart.py only runs it with tiny counts).

    python -m devstack.coldstart [--runs 7] [--tokenizers-dir DIR] [--functions DIR] [--out FILE]
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from devstack.coldstart.importtime import import_offenders, importtime
from devstack.coldstart.measure import (
    SCENARIOS,
    Config,
    Progress,
    Result,
    Samples,
    Scenario,
    measure,
    python_startup,
)
from devstack.coldstart.report import render_markdown, write_results


def run_coldstart(config: Config, progress: Progress) -> Result:
    for folder in config.models.values():
        if not (config.tokenizers_dir / folder / "tokenizer.json").is_file():
            raise SystemExit(f"no {folder}/tokenizer.json in {config.tokenizers_dir}")
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    startup = python_startup(config, config.runs)
    samples = measure(config, progress)
    offenders: list[tuple[str, float, str]] = []
    total = 0.0
    if config.importtime:
        progress("python -X importtime")
        offenders, total = importtime(config)
    return Result(
        config=config,
        samples=samples,
        python_startup=startup,
        offenders=offenders,
        importtime_total_ms=total,
        started_at=started_at,
        seconds=time.perf_counter() - t0,
        load_before=load_before,
        load_after=os.getloadavg(),
    )


__all__ = [
    "SCENARIOS",
    "Config",
    "Result",
    "Samples",
    "Scenario",
    "import_offenders",
    "render_markdown",
    "run_coldstart",
    "write_results",
]
