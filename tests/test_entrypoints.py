"""StreamFunction's entry point, run.sh: the app under uvicorn, as the Lambda Web Adapter
runs it (the Mangum handler is tests/test_lambda_handler.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, models_config
from tests.support.servers import free_port
from tests.support.sse import assert_incremental, events
from tests.support.xray import FakeXRayDaemon, fake_xray_daemon, new_trace

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
RUN_SH = FUNCTIONS / "run.sh"


def test_run_sh_is_an_executable_bash_script() -> None:
    assert os.access(RUN_SH, os.X_OK), "run.sh must be executable (it is the handler)"
    assert RUN_SH.read_bytes().startswith(b"#!/bin/bash\n")
    assert b"\r\n" not in RUN_SH.read_bytes()
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True)
    text = RUN_SH.read_text()
    assert "exec python -m uvicorn --factory gateway.app:create_app" in text
    assert "AWS_LWA_PORT" in text


@contextmanager
def serving_run_sh(tmp_path: Path, **env: str) -> Iterator[str]:
    """Start run.sh the way the Lambda Web Adapter does (its environment, LAMBDA_TASK_ROOT
    = functions/), wait until GET /health answers as the adapter's readiness check does,
    yield the base URL; SIGTERM at the end, as Lambda's shutdown."""
    port = free_port()
    full_env = {
        **os.environ,
        # the venv's python stands in for /var/lang/bin/python
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LAMBDA_TASK_ROOT": str(FUNCTIONS),
        "LAMBDA_RUNTIME_DIR": str(tmp_path),
        # what template.yaml sets on StreamFunction
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_PORT": str(port),
        "AWS_LWA_READINESS_CHECK_PATH": "/health",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    full_env.pop("PYTHONPATH", None)
    full_env.pop("POWERTOOLS_TRACE_DISABLED", None)
    log_path = tmp_path / f"run-sh-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(RUN_SH)], env=full_env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    assert r.status == 200
                    break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, "uvicorn did not answer /health in 60 s"
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_run_sh_serves_the_app_where_the_adapter_looks(tmp_path: Path) -> None:
    with serving_run_sh(tmp_path) as url:
        response = httpx.get(url + "/health")
        assert response.json() == {"status": "ok"}


@dataclass
class StreamFunction:
    url: str
    xray: FakeXRayDaemon


@pytest.fixture(scope="module")
def stream_function(
    dynamodb: str, tokenizers_dir: Path, sim_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StreamFunction]:
    """run.sh serving the app on the test stack, as StreamFunction runs in Lambda: tracing
    is on there (LAMBDA_TASK_ROOT), so X-Ray segments go to a fake daemon."""
    with (
        fake_xray_daemon() as xray,
        serving_run_sh(
            tmp_path_factory.mktemp("stream-function"),
            MODELS_CONFIG=models_config(sim_url),
            TOKENIZERS_DIR=str(tokenizers_dir),
            PRELOAD_TOKENIZERS="true",
            KEY_CACHE_TTL_SECONDS="0",
            AWS_XRAY_DAEMON_ADDRESS=xray.address,
        ) as url,
    ):
        yield StreamFunction(url=url, xray=xray)


def _chat_body(content: str, *, stream: bool, **extra: Any) -> dict[str, Any]:
    return {
        "model": "qwen3",
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        **extra,
    }


def test_run_sh_streams_chunks_as_they_are_generated(
    stream_function: StreamFunction, gateway: Gateway
) -> None:
    key = gateway.new_key()
    tokens, tpot = 20, 50  # the simulated endpoint spends 20 x 50 ms generating
    body = _chat_body(
        "Tell me a story.", stream=True, max_tokens=tokens, sim={"tpot_ms": tpot, "ttft_ms": 0}
    )
    _, _, trace = new_trace()
    started = time.monotonic()
    with httpx.stream(
        "POST",
        stream_function.url + "/v1/chat/completions",
        json=body,
        # the adapter passes each invocation's trace header on
        headers={"Authorization": f"Bearer {key}", "x-amzn-trace-id": trace},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        request_id = response.headers["x-request-id"]
        received = list(events(response))
    assert received[-1][1] == "[DONE]"
    assert_incremental(received, started=started, tokens=tokens, tpot_ms=tpot)

    # usage is written inside the stream, before it ends
    record = gateway.resources.usage.get(request_id=request_id)
    assert record is not None
    assert (record.status.value, record.stream, record.completion_tokens) == (
        "completed",
        True,
        tokens,
    )


def test_run_sh_traces_dynamodb_and_upstream_calls(
    stream_function: StreamFunction, gateway: Gateway
) -> None:
    """Tracing on, as in Lambda: each request's DynamoDB calls and its upstream call are
    subsegments of the invocation named by the adapter's x-amzn-trace-id header, with the
    model, endpoint and status as annotations, and no prompt or completion text."""
    key = gateway.new_key()
    root, parent, trace = new_trace()
    marker = f"prompt-marker-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}", "x-amzn-trace-id": trace}
    url = stream_function.url + "/v1/chat/completions"
    completion = httpx.post(
        url, json=_chat_body(marker, stream=False, max_tokens=5), headers=headers, timeout=30
    )
    assert completion.status_code == 200
    with httpx.stream(
        "POST", url, json=_chat_body(marker, stream=True, max_tokens=5), headers=headers
    ) as response:
        assert response.status_code == 200
        response.read()
    failed = httpx.post(
        url,
        json=_chat_body(marker, stream=False, sim={"fail_status": 500}),
        headers=headers,
        timeout=30,
    )
    assert failed.status_code == 502
    # a client that goes away mid-stream: the upstream call ends there, as 499
    slow = _chat_body(marker, stream=True, max_tokens=200, sim={"tpot_ms": 50})
    with httpx.stream("POST", url, json=slow, headers=headers, timeout=30) as response:
        abandoned = response.headers["x-request-id"]
        next(response.iter_lines())

    def ours(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [d for d in documents if d.get("trace_id") == root]

    documents = ours(
        stream_function.xray.wait_for(
            lambda docs: (
                sum(d.get("aws", {}).get("operation") == "PutItem" for d in ours(docs)) >= 4
            )
        )
    )
    for document in documents:
        assert document["type"] == "subsegment"
        assert document["parent_id"] == parent
        assert document.get("in_progress") is not True
        assert marker not in json.dumps(document)
    dynamodb = [d["aws"] for d in documents if d["name"] == "dynamodb"]
    # per request: the key lookup, then the usage record (nothing else on the way)
    assert sorted(aws["operation"] for aws in dynamodb) == ["GetItem"] * 4 + ["PutItem"] * 4
    assert {aws.get("table_name") for aws in dynamodb} == {"gateway-keys", "gateway-usage"}
    upstream = [d["annotations"] for d in documents if d["name"] == "## upstream"]
    common = {
        "model": "qwen3",
        "endpoint": gateway.resources.registry.get("qwen3").upstream.endpoint,
    }
    assert sorted(upstream, key=lambda a: (a["status"], a["stream"])) == [
        {**common, "stream": False, "status": 200},
        {**common, "stream": True, "status": 200},
        {**common, "stream": True, "status": 499, "error_code": "client_closed_request"},
        {**common, "stream": False, "status": 502, "error_code": "upstream_http_500"},
    ]
    record = gateway.resources.usage.get(request_id=abandoned)
    assert record is not None and record.status.value == "client_disconnected"
    (fault,) = [d for d in documents if d["name"] == "## upstream" and d.get("fault")]
    assert fault["annotations"]["status"] == 502


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
    client = boto3.client(
        "secretsmanager",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
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
        client.close()
        server.stop()

    without = _run_sh_environment(tmp_path)
    assert without.returncode == 0, without.stderr
    assert "UPSTREAM_API_KEY" not in without.stdout
