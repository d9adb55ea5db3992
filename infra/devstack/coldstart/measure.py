"""Fresh processes that time their own init, as each Lambda function's init runs.

Each run is a `python` process configured as the functions are in Lambda (code on
PYTHONPATH as /var/task is, env credentials, the models config and tokenizer directory,
tracing on when LAMBDA_TASK_ROOT is set). It measures, in wall and CPU time (its own
utime + stime, which the machine's other load hardly changes), one of:

- "handler": the function's whole init. ApiFunction: `import gateway.lambdas.api`
  (imports, `create_app()` from the environment, the Mangum handler). StreamFunction:
  what uvicorn does before it listens (run.sh: `uvicorn --factory gateway.app:create_app`):
  import uvicorn, `Config(...).load()` (its protocol modules, the app factory);
- "breakdown": the same steps one at a time: imports only (mangum or uvicorn, and
  gateway.app), the app build without tokenizers, then loading the configured tokenizers.

Each also reports its peak RSS and which of aiohttp, jinja2, tokenizers and boto3 it
imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
FUNCTIONS = ROOT / "functions"
DEFAULT_TOKENIZERS = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared")) / (
    "tokenizers"
)
DEFAULT_OUT = ROOT / "bench-results" / "coldstart.md"
# Public model id -> tokenizer folder: two real tokenizers of different families.
DEFAULT_MODELS = {"qwen3": "qwen3", "llama3": "llama-3-8b-instruct"}
# DESIGN.md section 7: Lambda init (imports, app, clients) at most 300 ms before tokenizers.
BUDGET_MS = 300.0
HEAVY = ("aiohttp", "jinja2", "tokenizers", "boto3")

Progress = Callable[[str], None]

# The measuring child. argv[1]: "handler" or "breakdown"; argv[2]: "api" or "stream".
# Prints one JSON line.
CHILD = r"""
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
mode, function = sys.argv[1], sys.argv[2]
c0, t0 = cpu(), time.perf_counter()
out = {}
if mode == "handler" and function == "api":
    import gateway.lambdas.api
    app = gateway.lambdas.api.handler.app
elif mode == "handler":
    import uvicorn
    config = uvicorn.Config("gateway.app:create_app", factory=True, log_level="warning")
    config.load()
    app = config.loaded_app
else:
    if function == "api":
        import mangum
    else:
        import uvicorn
    from gateway.app import create_app
    from gateway.settings import Settings
    t1, c1 = time.perf_counter(), cpu()
    settings = Settings()
    app = create_app(settings.model_copy(update={"preload_tokenizers": False}))
    if function == "api":
        mangum.Mangum(app, lifespan="off")
    t2, c2 = time.perf_counter(), cpu()
    if settings.preload_tokenizers:
        app.state.resources.preload_tokenizers()
    t3, c3 = time.perf_counter(), cpu()
    out.update(imports=t1 - t0, build=t2 - t1, tokenizers=t3 - t2)
    out.update(imports_cpu=c1 - c0, build_cpu=c2 - c1, tokenizers_cpu=c3 - c2)
out.update(init=time.perf_counter() - t0, init_cpu=cpu() - c0)
while not hasattr(app, "state"):  # the app under uvicorn's or Mangum's wrappers
    app = app.app
out["tracing"] = app.state.resources.tracing.enabled
out["heavy"] = [m for m in ("aiohttp", "jinja2", "tokenizers", "boto3") if m in sys.modules]
out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    function: str  # "api" (ApiFunction) or "stream" (StreamFunction)
    tracing: bool
    preload: bool


SCENARIOS = (
    Scenario("ApiFunction, tracing off", "api", tracing=False, preload=False),
    Scenario("ApiFunction, tracing on (as in Lambda)", "api", tracing=True, preload=False),
    Scenario("StreamFunction, no tokenizers, tracing on", "stream", tracing=True, preload=False),
    Scenario(
        "StreamFunction, 2 tokenizers preloaded, tracing on (as in Lambda)",
        "stream",
        tracing=True,
        preload=True,
    ),
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
    # The functions/ directory to measure (another checkout's, to compare before/after).
    functions: Path = FUNCTIONS


@dataclass
class Samples:
    """Seconds per run (and peak RSS in KiB) for one scenario; *_cpu: CPU seconds."""

    init: list[float] = field(default_factory=list)  # handler mode
    init_cpu: list[float] = field(default_factory=list)
    imports: list[float] = field(default_factory=list)
    imports_cpu: list[float] = field(default_factory=list)
    build: list[float] = field(default_factory=list)
    build_cpu: list[float] = field(default_factory=list)
    tokenizers: list[float] = field(default_factory=list)
    tokenizers_cpu: list[float] = field(default_factory=list)
    maxrss_kb: list[int] = field(default_factory=list)  # handler mode
    process_wall: list[float] = field(default_factory=list)  # spawn to exit, handler mode
    heavy: set[str] = field(default_factory=set)  # of HEAVY, imported in any handler run


@dataclass
class Result:
    config: Config
    samples: dict[str, Samples]
    python_startup: list[float]
    offenders: list[tuple[str, float, str]]
    importtime_total_ms: float
    started_at: datetime
    seconds: float
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


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
        "PYTHONPATH": str(config.functions),
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
        env["LAMBDA_TASK_ROOT"] = str(config.functions)
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
        raise RuntimeError(f"{' '.join(args[2:])} failed:\n{result.stderr[-4000:]}")
    lines = result.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else {}), wall


def python_startup(config: Config, runs: int) -> list[float]:
    env = child_env(config, SCENARIOS[0])
    return [run_child(config, env, "-c", "pass")[1] for _ in range(runs)]


def _record(s: Samples, scenario: Scenario, config: Config, env: dict[str, str]) -> None:
    out, wall = run_child(config, env, "-c", CHILD, "handler", scenario.function)
    s.init.append(out["init"])
    s.init_cpu.append(out["init_cpu"])
    s.maxrss_kb.append(out["maxrss_kb"])
    s.process_wall.append(wall)
    s.heavy.update(out["heavy"])
    out, _ = run_child(config, env, "-c", CHILD, "breakdown", scenario.function)
    if out["tracing"] is not scenario.tracing:
        raise RuntimeError(f"{scenario.name}: tracing is {out['tracing']}")
    for name in ("imports", "build", "tokenizers"):
        getattr(s, name).append(out[name])
        getattr(s, f"{name}_cpu").append(out[f"{name}_cpu"])


def measure(config: Config, progress: Progress) -> dict[str, Samples]:
    samples = {s.name: Samples() for s in SCENARIOS}
    if config.warmup:
        for scenario in SCENARIOS:
            env = child_env(config, scenario)
            run_child(config, env, "-c", CHILD, "handler", scenario.function)
    for run in range(config.runs):
        progress(f"run {run + 1}/{config.runs}")
        # Alternate the order too, so that no scenario always runs right after another.
        for scenario in SCENARIOS if run % 2 == 0 else SCENARIOS[::-1]:
            _record(samples[scenario.name], scenario, config, child_env(config, scenario))
    return samples
