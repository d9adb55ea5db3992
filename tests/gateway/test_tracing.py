"""X-Ray tracing is on inside Lambda only, and costs nothing when off.

With tracing on, the subsegments themselves are checked end to end, on both entry points:
tests/test_entrypoints.py (run.sh, the adapter's trace header) and
tests/test_lambda_handler.py (Mangum, the runtime's _X_AMZN_TRACE_ID).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gateway.backends import OpenAIBackend
from gateway.backends.routing import RoutedBackend
from gateway.backends.wire import CHAT
from gateway.observability import Tracing, tracing_wanted
from gateway.settings import Settings

from tests.conftest import Gateway

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),  # outside Lambda: local stack, tests
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_CHALICE_CLI_MODE": "1"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "On"}, False),
    ],
)
def test_tracing_is_wanted_inside_lambda_only(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], wanted: bool
) -> None:
    for name in (
        "LAMBDA_TASK_ROOT",
        "POWERTOOLS_TRACE_DISABLED",
        "AWS_SAM_LOCAL",
        "AWS_CHALICE_CLI_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing_wanted(Settings()) is wanted


def test_off_means_no_wrapper_and_no_middleware(gateway: Gateway) -> None:
    resources = gateway.resources
    assert resources.tracing.enabled is False
    model = resources.registry.get("qwen3")
    routed = resources.backends.for_model(model, CHAT)
    assert isinstance(routed, RoutedBackend)  # each endpoint's backend is not wrapped
    assert [type(t.backend) for t in routed.targets] == [OpenAIBackend]
    off = Tracing()
    backend = object()
    assert off.traced(backend, model="m", endpoint="e") is backend  # type: ignore[arg-type]


_PROBE = """
import json, sys
import botocore.client
import gateway.lambdas.api as module

app = module.handler.app
patcher = sys.modules.get("aws_xray_sdk.core.patcher")
print(json.dumps({
    "patched": sorted(patcher._PATCHED_MODULES) if patcher else [],
    "enabled": app.state.resources.tracing.enabled,
    "xray_imported": any(name.startswith("aws_xray_sdk") for name in sys.modules),
    "botocore_patched": hasattr(botocore.client, "_xray_enabled"),
    "middleware": [m.cls.__name__ for m in app.user_middleware],
}))
"""


def _probe(**env: str) -> dict[str, object]:
    full_env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODELS_CONFIG": '{"models": []}',
        "PYTHONPATH": str(FUNCTIONS),
        **env,
    }
    for name in ("LAMBDA_TASK_ROOT", "POWERTOOLS_TRACE_DISABLED", "_X_AMZN_TRACE_ID"):
        if name not in env:
            full_env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probe: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return probe


def test_building_the_app_outside_lambda_neither_imports_nor_patches_xray() -> None:
    probe = _probe()
    assert probe == {
        "patched": [],
        "enabled": False,
        "xray_imported": False,
        "botocore_patched": False,
        "middleware": ["RequestContextMiddleware"],
    }
    disabled = _probe(LAMBDA_TASK_ROOT=str(FUNCTIONS), POWERTOOLS_TRACE_DISABLED="true")
    assert disabled == probe


def test_building_the_app_inside_lambda_patches_botocore_only() -> None:
    probe = _probe(LAMBDA_TASK_ROOT=str(FUNCTIONS))
    assert probe == {
        "patched": ["botocore"],
        "enabled": True,
        "xray_imported": True,
        "botocore_patched": True,
        "middleware": ["TraceHeaderMiddleware", "RequestContextMiddleware"],
    }
