"""The cold-start table (markdown) and the file it is written to."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path

from devstack.coldstart.measure import BUDGET_MS, DEFAULT_OUT, HEAVY, SCENARIOS, Result


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} / {min(values) * 1000:.0f}"


def _header(result: Result) -> list[str]:
    config = result.config
    load = " / ".join(
        ", ".join(f"{x:.2f}" for x in la) for la in (result.load_before, result.load_after)
    )
    return [
        "# Cold start",
        "",
        f"{result.started_at:%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{config.runs} fresh processes per scenario and mode; "
        f"tokenizers: {', '.join(config.models.values())}; code: {config.functions}; "
        f"took {result.seconds:.0f} s; load average before / after: {load}.",
        "",
        "Milliseconds as median / min. *init* is the function's whole init in one process "
        "(ApiFunction: `import gateway.lambdas.api`; StreamFunction: uvicorn's "
        "`Config('gateway.app:create_app', factory=True).load()`), in wall time and in the "
        "process's own CPU time (utime + stime: what a dedicated core would take, I/O "
        "aside; the machine's other load inflates wall time first). *imports*, *app build* "
        "and *tokenizers* are the same steps timed one by one in other runs (CPU time). "
        f"The budget ({BUDGET_MS:.0f} ms) is for init before tokenizers: imports + build. "
        f"*{' / '.join(HEAVY)}*: imported during init (any run).",
        "",
    ]


def render_markdown(result: Result) -> str:
    lines = _header(result)
    lines += [
        "| scenario | init (wall) | init (CPU) | imports (CPU) | app build (CPU) | "
        f"tokenizers (CPU) | imports + build (CPU) | ≤ {BUDGET_MS:.0f} ms? | "
        f"{' / '.join(HEAVY)} | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|---|---:|",
    ]
    for scenario in SCENARIOS:
        s = result.samples[scenario.name]
        before = [i + b for i, b in zip(s.imports_cpu, s.build_cpu, strict=True)]
        verdict = "yes" if statistics.median(before) * 1000 <= BUDGET_MS else "**no**"
        rss = statistics.median(s.maxrss_kb) / 1024
        tokenizers = _ms(s.tokenizers_cpu) if scenario.preload else "-"
        heavy = ", ".join(sorted(s.heavy)) or "none"
        lines.append(
            f"| {scenario.name} | {_ms(s.init)} | {_ms(s.init_cpu)} | {_ms(s.imports_cpu)} | "
            f"{_ms(s.build_cpu)} | {tokenizers} | {_ms(before)} | {verdict} | {heavy} | "
            f"{rss:.0f} |"
        )
    startup = _ms(result.python_startup)
    wall = _ms(result.samples[SCENARIOS[1].name].process_wall)
    lines += [
        "",
        f"Interpreter start-up alone (`python -c pass`, spawn to exit, wall): {startup} ms; "
        f"a whole ApiFunction handler run, spawn to exit: {wall} ms. Lambda's own runtime "
        "start-up comes on top of *init* and is not ours to spend.",
    ]
    if result.offenders:
        lines += [
            "",
            "## Where the import time goes",
            "",
            "`python -X importtime -c 'import gateway.lambdas.api'` (ApiFunction, no "
            "tokenizers, tracing on): self time summed per top-level package, "
            f"{result.importtime_total_ms:.0f} ms in all (importtime's own overhead inflates "
            "it).",
            "",
            "| package | self ms | share | first imported by |",
            "|---|---:|---:|---|",
        ]
        for pkg, ms, by in result.offenders:
            share = ms / result.importtime_total_ms * 100 if result.importtime_total_ms else 0
            lines.append(f"| {pkg} | {ms:.0f} | {share:.0f}% | {by} |")
    return "\n".join(lines) + "\n"


def write_results(markdown: str, out: Path = DEFAULT_OUT) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    return out
