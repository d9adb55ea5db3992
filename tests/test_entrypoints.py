"""The two Lambda entry points: run.sh (Lambda Web Adapter + uvicorn) and the Mangum handler."""

from __future__ import annotations

import ast
import importlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
RUN_SH = FUNCTIONS / "run.sh"
LAMBDA_HANDLER = FUNCTIONS / "gateway" / "lambda_handler.py"


def test_run_sh_is_an_executable_bash_script() -> None:
    assert os.access(RUN_SH, os.X_OK), "run.sh must be executable (it is the handler)"
    assert RUN_SH.read_bytes().startswith(b"#!/bin/bash\n")
    assert b"\r\n" not in RUN_SH.read_bytes()
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True)
    text = RUN_SH.read_text()
    assert "exec python -m uvicorn --factory gateway.app:create_app" in text
    assert "AWS_LWA_PORT" in text


def test_run_sh_serves_the_app_where_the_adapter_looks(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        # the venv's python stands in for /var/lang/bin/python
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LAMBDA_TASK_ROOT": str(FUNCTIONS),
        "LAMBDA_RUNTIME_DIR": str(tmp_path),
        "AWS_LWA_PORT": str(port),
        "AWS_DEFAULT_REGION": "us-east-1",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [str(RUN_SH)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[0].decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "uvicorn did not answer /health in 30 s"
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_sh_environment(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run run.sh with a `python` that prints the environment instead of starting uvicorn."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    fake_python = fake_bin / "python"
    fake_python.write_text(
        "#!/bin/bash\n"
        'if [[ "$1" == "-m" && "$2" == "uvicorn" ]]; then env; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    fake_python.chmod(0o755)
    full_env = {
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": str(FUNCTIONS),
        "LAMBDA_RUNTIME_DIR": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **env,
    }
    return subprocess.run(
        [str(RUN_SH)], env=full_env, capture_output=True, text=True, timeout=60, check=False
    )


def test_run_sh_exports_upstream_credentials_from_the_secret(tmp_path: Path) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "secretsmanager",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        good = client.create_secret(
            Name="upstream", SecretString='{"UPSTREAM_API_KEY": "sk-it\'s $(secret)"}'
        )["ARN"]
        bad = client.create_secret(Name="bad", SecretString='{"PATH": "/evil"}')["ARN"]
        plain = client.create_secret(Name="plain", SecretString="sk-not-json")["ARN"]

        result = _run_sh_environment(
            tmp_path, UPSTREAM_SECRET_ARN=good, AWS_ENDPOINT_URL_SECRETS_MANAGER=endpoint
        )
        assert result.returncode == 0, result.stderr
        assert "UPSTREAM_API_KEY=sk-it's $(secret)\n" in result.stdout
        assert f"PYTHONPATH={FUNCTIONS}:/opt/python:{tmp_path}\n" in result.stdout

        for arn in (bad, plain):
            result = _run_sh_environment(
                tmp_path, UPSTREAM_SECRET_ARN=arn, AWS_ENDPOINT_URL_SECRETS_MANAGER=endpoint
            )
            assert result.returncode != 0
            assert "run.sh:" in result.stderr
            assert "UPSTREAM_API_KEY" not in result.stdout
    finally:
        server.stop()

    without = _run_sh_environment(tmp_path)
    assert without.returncode == 0, without.stderr
    assert "UPSTREAM_API_KEY" not in without.stdout


def test_lambda_handler_module_does_only_imports_and_the_handler() -> None:
    tree = ast.parse(LAMBDA_HANDLER.read_text())
    body = [node for node in tree.body if not isinstance(node, ast.Import | ast.ImportFrom)]
    docstring, assignment = body
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    assert isinstance(assignment, ast.Assign)
    assert [t.id for t in assignment.targets if isinstance(t, ast.Name)] == ["handler"]
    assert ast.unparse(assignment.value) == "Mangum(create_app(), lifespan='off')"


def _rest_api_event(method: str, path: str) -> dict[str, Any]:
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "request-1",
            "identity": {"sourceIp": "192.0.2.1"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


class _Context:
    aws_request_id = "request-1"
    function_name = "ApiFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def test_mangum_handler_answers_a_rest_api_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delitem(sys.modules, "gateway.lambda_handler", raising=False)
    module = importlib.import_module("gateway.lambda_handler")
    response = module.handler(_rest_api_event("GET", "/health"), _Context())
    assert response["statusCode"] == 200, response
