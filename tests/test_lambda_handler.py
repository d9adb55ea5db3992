"""ApiFunction's entry point: gateway.lambdas.api (the app through Mangum), called the way
the Lambda runtime calls it, with the API Gateway REST API (v1) proxy events that the
`/{proxy+}` ANY integration sends, on the test stack (moto's DynamoDB and the simulated
GPU endpoint).

The module is the real one: it builds its app from the environment at import, so the
fixture sets the environment, then imports it afresh.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from openapi_spec_validator import validate as validate_spec

from tests.conftest import TEST_MODELS, models_config
from tests.support.apigw import LambdaContext, chat_event, rest_api_event
from tests.support.xray import TRACE_HEADER, TRACE_PARENT, TRACE_ROOT, fake_xray_daemon

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
LAMBDA_HANDLER = FUNCTIONS / "gateway" / "lambdas" / "api.py"


def test_lambda_handler_module_does_only_imports_and_the_handler() -> None:
    tree = ast.parse(LAMBDA_HANDLER.read_text())
    body = [node for node in tree.body if not isinstance(node, ast.Import | ast.ImportFrom)]
    docstring, assignment = body
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    assert isinstance(assignment, ast.Assign)
    assert [t.id for t in assignment.targets if isinstance(t, ast.Name)] == ["handler"]
    assert ast.unparse(assignment.value) == "Mangum(create_app(), lifespan='off')"


# Run in a fresh interpreter, configured as ApiFunction is in Lambda (tracing on): every
# botocore API call and client creation is recorded from before the handler's import.
_COLD_IMPORT = """
import json, sys
import botocore.client

calls = []
make_api_call = botocore.client.BaseClient._make_api_call
create_client = botocore.client.ClientCreator.create_client

def recording_call(self, operation, params):
    calls.append(operation)
    return make_api_call(self, operation, params)

def recording_create(self, service_name, *args, **kwargs):
    calls.append("create_client:" + service_name)
    return create_client(self, service_name, *args, **kwargs)

botocore.client.BaseClient._make_api_call = recording_call
botocore.client.ClientCreator.create_client = recording_create

import gateway.lambdas.api as module

resources = module.handler.app.state.resources
heavy = sorted(
    m for m in sys.modules if m.split(".")[0] in ("aiohttp", "jinja2", "tokenizers", "boto3")
)
print(json.dumps({"heavy": heavy, "calls": calls, "tracing": resources.tracing.enabled}))
"""


def test_api_function_init_imports_no_backend_template_or_tokenizer_and_calls_no_aws(
    tmp_path: Path, tokenizers_dir: Path
) -> None:
    """Issue 16: ApiFunction's init neither forwards, counts nor renders a chat template,
    so its cold start loads none of aiohttp, jinja2, tokenizers (nor boto3: botocore
    suffices until a client is built); AWS clients are built on first use, so building the
    app creates none and calls nothing."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": f"{FUNCTIONS}",
        "LAMBDA_TASK_ROOT": str(FUNCTIONS),  # tracing on, as in Lambda
        "AWS_ACCESS_KEY_ID": "cold",
        "AWS_SECRET_ACCESS_KEY": "cold",
        "AWS_REGION": "us-east-1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",  # UDP, never answered
        "MODELS_CONFIG": models_config("http://127.0.0.1:9"),
        "TOKENIZERS_DIR": str(tokenizers_dir),
        "PRELOAD_TOKENIZERS": "false",
        "LOG_LEVEL": "WARNING",
    }
    result = subprocess.run(
        [sys.executable, "-c", _COLD_IMPORT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["tracing"] is True
    assert out["heavy"] == []
    assert out["calls"] == []


def test_first_use_builds_the_clients_and_the_upstream_pool(
    lambda_module: ModuleType, resources: Any, secret: str
) -> None:
    """After a request the lazily built pieces exist: the DynamoDB client (key lookup,
    usage write) and the aiohttp pool (the upstream call)."""
    assert_completion(invoke(lambda_module, chat_event(secret)), resources, secret)
    assert "dynamodb" in resources.aws.__dict__
    assert resources.backends.http.sessions  # one per endpoint used


@pytest.fixture(scope="module")
def lambda_module(dynamodb: str, tokenizers_dir: Path, sim_url: str) -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        # What template.yaml sets (table names are the defaults' local twins).
        mp.setenv("MODELS_CONFIG", models_config(sim_url))
        mp.setenv("TOKENIZERS_DIR", str(tokenizers_dir))
        mp.setenv("KEY_CACHE_TTL_SECONDS", "0")
        mp.setenv("PRELOAD_TOKENIZERS", "false")
        mp.setenv("LOG_LEVEL", "WARNING")
        mp.delitem(sys.modules, "gateway.lambdas.api", raising=False)
        module = importlib.import_module("gateway.lambdas.api")
        try:
            yield module
        finally:
            resources = module.handler.app.state.resources
            # Mangum made this thread's event loop (Lambda keeps it for the process): the
            # app's sessions and the loop itself are closed here, not left to gc.
            loop = asyncio.get_event_loop()
            loop.run_until_complete(resources.close())  # upstream and usage-writer sessions
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            asyncio.set_event_loop(None)
            sys.modules.pop("gateway.lambdas.api", None)


@pytest.fixture(scope="module")
def resources(lambda_module: ModuleType) -> Any:
    return lambda_module.handler.app.state.resources


@pytest.fixture(scope="module")
def secret(resources: Any) -> str:
    _, key = resources.keys.create(name="lambda-handler", owner="tests")
    return str(key)


def invoke(module: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = module.handler(event, LambdaContext())
    # What API Gateway needs from a proxy integration's result.
    assert isinstance(response["statusCode"], int)
    assert isinstance(response["headers"], dict)
    assert isinstance(response["body"], str)
    assert response["isBase64Encoded"] is False, "JSON must go back as text"
    return response


def header(response: dict[str, Any], name: str) -> str:
    headers = {k.lower(): v for k, v in response["headers"].items()}
    return str(headers[name])


def assert_completion(response: dict[str, Any], resources: Any, secret: str) -> str:
    assert response["statusCode"] == 200, response
    assert header(response, "content-type") == "application/json"
    completion = json.loads(response["body"])
    request_id = header(response, "x-request-id")
    assert completion["object"] == "chat.completion"
    assert completion["id"] == f"chatcmpl-{request_id}"
    assert completion["model"] == "qwen3"
    assert completion["choices"][0]["message"]["content"]
    usage = completion["usage"]
    assert usage["completion_tokens"] == 8

    # The usage record is written before the response (nothing runs after it in Lambda).
    record = resources.usage.get(request_id=request_id)
    assert record is not None
    assert record.key_id == resources.keys.lookup(secret=secret).key_id
    assert (record.model, record.status.value, record.http_status) == ("qwen3", "completed", 200)
    assert record.stream is False
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    return request_id


def test_chat_completion_is_answered_and_recorded(
    lambda_module: ModuleType, resources: Any, secret: str
) -> None:
    assert_completion(invoke(lambda_module, chat_event(secret)), resources, secret)


def test_consecutive_invocations_reuse_the_loop_and_the_upstream_session(
    lambda_module: ModuleType, resources: Any, secret: str
) -> None:
    first = assert_completion(invoke(lambda_module, chat_event(secret)), resources, secret)
    [session] = resources.backends.http.sessions  # the one endpoint's
    loop = resources.backends.http._loop
    assert not session.closed
    second = assert_completion(invoke(lambda_module, chat_event(secret)), resources, secret)
    third = invoke(lambda_module, rest_api_event("GET", "/health"))
    assert third["statusCode"] == 200
    assert first != second
    # Mangum runs every invocation on the same event loop, so the pooled aiohttp
    # session (and its keep-alive connections) outlives each invocation.
    assert resources.backends.http.sessions == [session] and resources.backends.http._loop is loop


def test_base64_encoded_body(lambda_module: ModuleType, resources: Any, secret: str) -> None:
    event = chat_event(secret, content="Ünïcödé ✓ and base64, please.", base64_body=True)
    assert event["isBase64Encoded"] is True
    assert "Ünïcödé" not in event["body"]
    assert_completion(invoke(lambda_module, event), resources, secret)


def test_models_under_the_stage_prefixed_path(lambda_module: ModuleType, secret: str) -> None:
    # The client called https://<api>/prod/v1/models?limit=10: API Gateway strips the
    # stage from `path` (requestContext.path keeps it), and Mangum routes on `path` with
    # its default api_gateway_base_path "/", so the app sees /v1/models.
    event = rest_api_event(
        "GET",
        "/v1/models",
        headers={"Authorization": f"Bearer {secret}"},
        query={"limit": ["10"]},
    )
    assert event["requestContext"]["path"] == "/prod/v1/models"
    response = invoke(lambda_module, event)
    assert response["statusCode"] == 200, response
    models = json.loads(response["body"])
    assert models["object"] == "list"
    assert sorted(m["id"] for m in models["data"]) == sorted(TEST_MODELS)
    assert all(m["object"] == "model" for m in models["data"])


def test_health(lambda_module: ModuleType) -> None:
    response = invoke(lambda_module, rest_api_event("GET", "/health", stage="v2"))
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"status": "ok"}


def assert_error_envelope(response: dict[str, Any], status: int, type_: str) -> dict[str, Any]:
    assert response["statusCode"] == status, response
    assert header(response, "content-type") == "application/json"
    body = json.loads(response["body"])
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def test_errors_come_back_in_openai_envelope(lambda_module: ModuleType, secret: str) -> None:
    no_key = chat_event(secret)
    del no_key["headers"]["Authorization"], no_key["multiValueHeaders"]["Authorization"]
    assert_error_envelope(invoke(lambda_module, no_key), 401, "authentication_error")

    wrong_key = rest_api_event("GET", "/v1/models", headers={"Authorization": "Bearer sk-nope"})
    assert_error_envelope(invoke(lambda_module, wrong_key), 401, "authentication_error")

    not_json = rest_api_event(
        "POST",
        "/v1/chat/completions",
        body=b'{"model": "qwen3", "messages": [',
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert_error_envelope(invoke(lambda_module, not_json), 400, "invalid_request_error")

    no_messages = rest_api_event(
        "POST",
        "/v1/chat/completions",
        body=json.dumps({"model": "qwen3"}).encode(),
        headers={"Authorization": f"Bearer {secret}"},
    )
    error = assert_error_envelope(invoke(lambda_module, no_messages), 400, "invalid_request_error")
    assert error["param"] == "messages"

    unknown = rest_api_event("GET", "/v1/nothing-here")
    assert_error_envelope(invoke(lambda_module, unknown), 404, "not_found_error")


_TRACED_INVOCATION = """
import json, sys
from tests.support.apigw import LambdaContext, chat_event, rest_api_event
import gateway.lambdas.api as module

resources = module.handler.app.state.resources
assert resources.tracing.enabled
_, secret = resources.keys.create(name="traced", owner="tests")
models = rest_api_event("GET", "/v1/models", headers={"Authorization": f"Bearer {secret}"})
chat = chat_event(secret, content=sys.argv[1])
statuses = [module.handler(event, LambdaContext())["statusCode"] for event in (models, chat)]
print(json.dumps(statuses))
"""


def test_traced_in_lambda_under_the_runtime_trace_header(
    dynamodb: str, tokenizers_dir: Path, sim_url: str
) -> None:
    """Inside Lambda (LAMBDA_TASK_ROOT set) tracing is on: DynamoDB calls and the upstream
    call are subsegments of the invocation the runtime names in _X_AMZN_TRACE_ID, not of
    the API Gateway trace header that the event carries; the prompt is never sent."""
    prompt = f"prompt-marker-{uuid.uuid4().hex}"
    with fake_xray_daemon() as daemon:
        env = {
            **os.environ,
            "LAMBDA_TASK_ROOT": str(FUNCTIONS),
            "_X_AMZN_TRACE_ID": TRACE_HEADER,
            "AWS_XRAY_DAEMON_ADDRESS": daemon.address,
            "MODELS_CONFIG": models_config(sim_url),
            "TOKENIZERS_DIR": str(tokenizers_dir),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": f"{FUNCTIONS}{os.pathsep}{ROOT}",
        }
        env.pop("POWERTOOLS_TRACE_DISABLED", None)
        result = subprocess.run(
            [sys.executable, "-c", _TRACED_INVOCATION, prompt],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.splitlines()[-1]) == [200, 200]
        documents = daemon.wait_for(
            lambda docs: any(d.get("aws", {}).get("operation") == "PutItem" for d in docs)
        )

    assert documents
    for document in documents:
        assert document["type"] == "subsegment"
        assert document["trace_id"] == TRACE_ROOT
        assert document["parent_id"] == TRACE_PARENT  # the invocation's Lambda segment
        assert "in_progress" not in document or document["in_progress"] is False
    assert all(prompt not in json.dumps(d) for d in documents)
    operations = [d["aws"]["operation"] for d in documents if d["name"] == "dynamodb"]
    assert {"GetItem", "PutItem"} <= set(operations)
    (upstream,) = [d for d in documents if d["name"] == "## upstream"]
    assert upstream["annotations"] == {
        "model": "qwen3",
        "endpoint": sim_url,
        "stream": False,
        "status": 200,
    }


def _spec_url(html: str) -> str:
    """The URL Swagger UI's page loads the OpenAPI document from."""
    match = re.search(r"url: '([^']+)'", html)
    assert match, html
    return match.group(1)


@pytest.mark.parametrize("stage", ["prod", "v2"])
def test_docs_under_a_stage_load_the_spec_through_the_stage(
    lambda_module: ModuleType, stage: str
) -> None:
    """The browser asked for https://<api>/<stage>/docs: the page must load the spec from
    /<stage>/openapi.json (API Gateway routes nothing outside the stage), and the spec's
    `servers` must make "Try it out" call /<stage>/v1/...."""
    page = invoke(lambda_module, rest_api_event("GET", "/docs", stage=stage))
    assert page["statusCode"] == 200, page
    assert header(page, "content-type").startswith("text/html")
    url = _spec_url(page["body"])
    assert url == f"/{stage}/openapi.json"

    # Follow the URL as API Gateway would route it: stage off `path`, kept in the context.
    event = rest_api_event("GET", url.removeprefix(f"/{stage}"), stage=stage)
    assert event["requestContext"]["path"] == url
    response = invoke(lambda_module, event)
    assert response["statusCode"] == 200, response
    spec = json.loads(response["body"])
    assert spec["servers"] == [{"url": f"/{stage}"}]
    validate_spec(spec)
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    assert "/v1/chat/completions" in spec["paths"]


def test_docs_on_a_custom_domain_without_a_base_path(lambda_module: ModuleType) -> None:
    """On a custom domain mapped at its root, requestContext.path has no stage: the spec
    is at /openapi.json, whatever the stage is called."""
    event = rest_api_event("GET", "/docs", stage="prod")
    event["requestContext"]["path"] = "/docs"
    event["requestContext"]["domainName"] = "llm.example.com"
    event["headers"]["Host"] = event["multiValueHeaders"]["Host"][0] = "llm.example.com"
    page = invoke(lambda_module, event)
    assert page["statusCode"] == 200, page
    assert _spec_url(page["body"]) == "/openapi.json"
    spec_event = rest_api_event("GET", "/openapi.json", stage="prod")
    spec_event["requestContext"]["path"] = "/openapi.json"
    spec = json.loads(invoke(lambda_module, spec_event)["body"])
    assert "servers" not in spec


def test_stage_prefix_does_not_change_routing(lambda_module: ModuleType, secret: str) -> None:
    event = rest_api_event("GET", "/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert invoke(lambda_module, event)["statusCode"] == 200
    missing = invoke(lambda_module, rest_api_event("GET", "/prod/v1/models"))
    assert missing["statusCode"] == 404  # the stage is never part of the route
