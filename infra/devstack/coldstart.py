"""`make bench-coldstart`: what a Lambda cold start costs the gateway before its first request.

Each run is a fresh `python` process, configured as the functions are in Lambda (code on
PYTHONPATH as /var/task is, env credentials, the models config and tokenizer directory,
tracing on when LAMBDA_TASK_ROOT is set), that measures its own init in one of two ways:

- "handler": `import gateway.lambda_handler`, which is ApiFunction's whole init (imports,
  `create_app()` from the environment, the Mangum handler), PRELOAD_TOKENIZERS as set;
- "breakdown": the same steps one at a time: imports only (`mangum`, `gateway.app`), the app
  build without tokenizers (`create_app`: settings, AWS clients, services, routes, and the
  X-Ray patching when tracing is on), then loading the configured tokenizers.

and reports its peak RSS (getrusage ru_maxrss). Scenarios: without tokenizers, tracing off
and on (on is what Lambda runs), and with two real tokenizers preloaded (StreamFunction's
default). Runs alternate between scenarios and modes so machine noise spreads over all of
them; the table gives medians and minimums. A `python -X importtime` pass then names the
packages the import time goes to. Nothing here is timed by the tests
(tests/infra/test_coldstart.py only runs it with tiny counts).

    python -m devstack.coldstart [--runs 7] [--tokenizers-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
DEFAULT_TOKENIZERS = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared")) / (
    "tokenizers"
)
DEFAULT_OUT = ROOT / "bench-results" / "coldstart.md"
# Public model id -> tokenizer folder: two real tokenizers of different families.
DEFAULT_MODELS = {"qwen3": "qwen3", "llama3": "llama-3-8b-instruct"}
# DESIGN.md section 7: Lambda init (imports, app, clients) at most 300 ms before tokenizers.
BUDGET_MS = 300.0

Progress = Callable[[str], None]

# The measuring child. argv[1]: "handler" or "breakdown". Prints one JSON line.
CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
out = {}
if sys.argv[1] == "handler":
    import gateway.lambda_handler
    out["init"] = time.perf_counter() - t0
else:
    import mangum
    from gateway.app import create_app
    from gateway.settings import Settings
    t1 = time.perf_counter()
    settings = Settings()
    app = create_app(settings.model_copy(update={"preload_tokenizers": False}))
    handler = mangum.Mangum(app, lifespan="off")
    t2 = time.perf_counter()
    if settings.preload_tokenizers:
        app.state.services.preload_tokenizers()
    t3 = time.perf_counter()
    out.update(imports=t1 - t0, build=t2 - t1, tokenizers=t3 - t2, init=t3 - t0)
    out["tracing"] = app.state.services.tracing.enabled
out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    tracing: bool
    preload: bool


SCENARIOS = (
    Scenario("no tokenizers, tracing off", tracing=False, preload=False),
    Scenario("no tokenizers, tracing on (as in Lambda)", tracing=True, preload=False),
    Scenario("2 tokenizers preloaded, tracing on", tracing=True, preload=True),
)


@dataclass
class Config:
    runs: int = 7
    tokenizers_dir: Path = DEFAULT_TOKENIZERS
    models: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    importtime: bool = True
    # one unmeasured pass first, so that every scenario finds bytecode and page caches warm
    warmup: bool = True
    python: str = sys.executable


@dataclass
class Samples:
    """Seconds per run (and peak RSS in KiB) for one scenario."""

    init: list[float] = field(default_factory=list)  # handler mode
    imports: list[float] = field(default_factory=list)
    build: list[float] = field(default_factory=list)
    tokenizers: list[float] = field(default_factory=list)
    breakdown_init: list[float] = field(default_factory=list)
    maxrss_kb: list[int] = field(default_factory=list)  # handler mode
    process_wall: list[float] = field(default_factory=list)  # spawn to exit, handler mode


@dataclass
class Result:
    config: Config
    samples: dict[str, Samples]
    python_startup: list[float]
    offenders: list[tuple[str, float, str]]
    importtime_total_ms: float
    started_at: datetime
    seconds: float


def models_config(models: dict[str, str]) -> str:
    """Upstreams are never contacted during init."""
    entries = [
        {
            "id": public,
            "tokenizer": folder,
            "upstream": {"type": "openai", "base_url": "http://127.0.0.1:9", "model": folder},
        }
        for public, folder in models.items()
    ]
    return json.dumps({"models": entries})


_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def child_env(config: Config, scenario: Scenario) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k in _INHERITED}
    env = {
        **base,
        # Lambda puts /var/task on the path; the credentials are environment variables.
        "PYTHONPATH": str(FUNCTIONS),
        "AWS_ACCESS_KEY_ID": "coldstart",
        "AWS_SECRET_ACCESS_KEY": "coldstart",
        "AWS_SESSION_TOKEN": "coldstart",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "MODELS_CONFIG": models_config(config.models),
        "TOKENIZERS_DIR": str(config.tokenizers_dir),
        "PRELOAD_TOKENIZERS": "true" if scenario.preload else "false",
        "LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "gateway",
    }
    if scenario.tracing:
        env["LAMBDA_TASK_ROOT"] = str(FUNCTIONS)
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def run_child(config: Config, env: dict[str, str], *args: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    result = subprocess.run(
        [config.python, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed:\n{result.stderr[-4000:]}")
    lines = result.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else {}), wall


def python_startup(config: Config, runs: int) -> list[float]:
    env = child_env(config, SCENARIOS[0])
    return [run_child(config, env, "-c", "pass")[1] for _ in range(runs)]


def measure(config: Config, progress: Progress) -> dict[str, Samples]:
    samples = {s.name: Samples() for s in SCENARIOS}
    if config.warmup:
        for scenario in SCENARIOS:
            run_child(config, child_env(config, scenario), "-c", CHILD, "handler")
    for run in range(config.runs):
        progress(f"run {run + 1}/{config.runs}")
        for scenario in SCENARIOS:
            env = child_env(config, scenario)
            s = samples[scenario.name]
            out, wall = run_child(config, env, "-c", CHILD, "handler")
            s.init.append(out["init"])
            s.maxrss_kb.append(out["maxrss_kb"])
            s.process_wall.append(wall)
            out, _ = run_child(config, env, "-c", CHILD, "breakdown")
            if out["tracing"] is not scenario.tracing:
                raise RuntimeError(f"{scenario.name}: tracing is {out['tracing']}")
            s.imports.append(out["imports"])
            s.build.append(out["build"])
            s.tokenizers.append(out["tokenizers"])
            s.breakdown_init.append(out["init"])
    return samples


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def import_offenders(text: str, top: int = 12) -> tuple[list[tuple[str, float, str]], float]:
    """Self time per top-level package from `-X importtime` output (microseconds per module,
    children printed before their importer, nesting by indentation), with the module that
    first imported the package from outside it. The handler module's own line is the app
    build (create_app runs while it is imported)."""
    rows = []
    for line in text.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            rows.append((int(m.group(1)), len(m.group(3)), m.group(4)))

    def package(name: str) -> str:
        if name == "gateway.lambda_handler":
            return "gateway.lambda_handler (app build)"
        return name.split(".")[0]

    def importer(index: int) -> int | None:
        depth = rows[index][1]
        for j in range(index + 1, len(rows)):
            if rows[j][1] < depth:
                return j
        return None

    self_us: dict[str, int] = defaultdict(int)
    first_importer: dict[str, str] = {}
    for index, (micros, _, name) in enumerate(rows):
        pkg = package(name)
        self_us[pkg] += micros
        if pkg not in first_importer:
            j = importer(index)
            while j is not None and package(rows[j][2]) == pkg:
                j = importer(j)
            first_importer[pkg] = rows[j][2] if j is not None else "-"
    total_ms = sum(self_us.values()) / 1000
    ranked = sorted(self_us.items(), key=lambda item: -item[1])[:top]
    return [(pkg, us / 1000, first_importer[pkg]) for pkg, us in ranked], total_ms


def importtime(config: Config) -> tuple[list[tuple[str, float, str]], float]:
    env = child_env(config, SCENARIOS[1])
    result = subprocess.run(
        [config.python, "-X", "importtime", "-c", "import gateway.lambda_handler"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return import_offenders(result.stderr)


def run_coldstart(config: Config, progress: Progress) -> Result:
    for folder in config.models.values():
        if not (config.tokenizers_dir / folder / "tokenizer.json").is_file():
            raise SystemExit(f"no {folder}/tokenizer.json in {config.tokenizers_dir}")
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
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
    )


# --- report --------------------------------------------------------------------------


def _ms(values: Sequence[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} / {min(values) * 1000:.0f}"


def render_markdown(result: Result) -> str:
    config = result.config
    lines = [
        "# Cold start",
        "",
        f"{result.started_at:%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{config.runs} fresh processes per scenario and mode; "
        f"tokenizers: {', '.join(config.models.values())}; took {result.seconds:.0f} s.",
        "",
        "Milliseconds as median / min. *init* is `import gateway.lambda_handler` (ApiFunction's "
        "whole init, measured in the process); *imports*, *app build* and *tokenizers* are the "
        "same steps timed one by one in other runs. Peak RSS is the handler run's ru_maxrss.",
        "",
        "| scenario | init | imports | app build | tokenizers | imports + build | "
        f"≤ {BUDGET_MS:.0f} ms? | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for scenario in SCENARIOS:
        s = result.samples[scenario.name]
        before = [i + b for i, b in zip(s.imports, s.build, strict=True)]
        verdict = "yes" if statistics.median(before) * 1000 <= BUDGET_MS else "**no**"
        rss = statistics.median(s.maxrss_kb) / 1024
        tokenizers = _ms(s.tokenizers) if scenario.preload else "-"
        lines.append(
            f"| {scenario.name} | {_ms(s.init)} | {_ms(s.imports)} | {_ms(s.build)} | "
            f"{tokenizers} | {_ms(before)} | {verdict} | {rss:.0f} |"
        )
    startup = _ms(result.python_startup)
    wall = _ms(result.samples[SCENARIOS[1].name].process_wall)
    lines += [
        "",
        f"Interpreter start-up alone (`python -c pass`, spawn to exit): {startup} ms; a whole "
        f"handler run of the Lambda-like scenario, spawn to exit: {wall} ms. Lambda's own "
        "runtime start-up comes on top of *init* and is not ours to spend.",
    ]
    if result.offenders:
        lines += [
            "",
            "## Where the import time goes",
            "",
            "`python -X importtime -c 'import gateway.lambda_handler'` (no tokenizers, tracing "
            f"on): self time summed per top-level package, {result.importtime_total_ms:.0f} ms "
            "in all (importtime's own overhead inflates it).",
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


# --- command line --------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.coldstart",
        description="Time the gateway's Lambda init (imports, app build, tokenizers) in "
        "fresh processes.",
    )
    parser.add_argument("--runs", type=int, default=7, help="runs per scenario and mode")
    parser.add_argument("--tokenizers-dir", type=Path, default=DEFAULT_TOKENIZERS)
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS.values()),
        help="tokenizer folders to preload (comma-separated)",
    )
    parser.add_argument("--no-importtime", action="store_true", help="skip -X importtime")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folders = [f.strip() for f in args.models.split(",") if f.strip()]
    config = Config(
        runs=args.runs,
        tokenizers_dir=args.tokenizers_dir.resolve(),
        models={folder: folder for folder in folders},
        importtime=not args.no_importtime,
    )

    def progress(message: str) -> None:
        sys.stdout.write(f">> {message}\n")
        sys.stdout.flush()

    result = run_coldstart(config, progress)
    markdown = render_markdown(result)
    sys.stdout.write("\n" + markdown)
    path = write_results(markdown, args.out)
    progress(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
