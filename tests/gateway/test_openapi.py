"""The OpenAPI description is honest: it validates as OpenAPI 3.1, no route lists the 422
the gateway never sends, every route and field is described, the Bearer scheme is there,
and every status that a real request below gets is listed for its route."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate as validate_spec

from tests.conformance import validate_anthropic_error
from tests.conftest import Gateway, running_gateway

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def spec(gateway: Gateway) -> dict[str, Any]:
    response = httpx.get(gateway.url + "/openapi.json", timeout=10)
    assert response.status_code == 200
    return dict(response.json())


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_the_document_validates_as_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate_spec(spec)


def test_no_route_lists_422_and_errors_use_the_openai_envelope(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for method, path, operation in operations(spec):
        assert "422" not in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                content = response["content"]["application/json"]
                assert response["description"]
                if path.startswith("/v1/messages"):  # Anthropic's error shape
                    example = content["example"]
                    if status == "413":  # in Anthropic's errors docs, not the SDK's types
                        assert example["error"]["type"] == "request_too_large"
                    else:
                        validate_anthropic_error(example)
                    continue
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
                example = content["example"]["error"]
                assert set(example) == {"message", "type", "param", "code"}


def test_routes_and_fields_are_described(spec: dict[str, Any]) -> None:
    for method, path, operation in operations(spec):
        assert operation.get("summary") and operation.get("description"), (method, path)
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (method, path, parameter["name"])
    for name, schema in spec["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"


def test_bearer_scheme_on_every_route_that_takes_a_key(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    secured = {(m, p) for m, p, op in operations(spec) if op.get("security")}
    assert secured == {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model_id}"),
        ("GET", "/v1/usage"),
        ("POST", "/v1/responses"),
        ("GET", "/v1/responses/{response_id}"),
        ("DELETE", "/v1/responses/{response_id}"),
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
    }
    api_key = spec["components"]["securitySchemes"]["apiKeyAuth"]
    assert (api_key["type"], api_key["in"], api_key["name"]) == ("apiKey", "header", "x-api-key")
    for method, path, operation in operations(spec):
        if (method, path) in secured:
            anthropic = path.startswith("/v1/messages")
            expected = (
                [{"apiKeyAuth": []}, {"bearerAuth": []}] if anthropic else [{"bearerAuth": []}]
            )
            assert operation["security"] == expected
            assert "401" in operation["responses"]


def test_real_responses_are_documented_for_their_route(
    gateway: Gateway, spec: dict[str, Any], tokenizers_dir: Path, sim_url: str
) -> None:
    """Each status below is what the gateway really answered; each must be in the spec."""
    key = gateway.new_key()
    auth = {"Authorization": f"Bearer {key}"}
    chat = gateway.base_url + "/chat/completions"

    def post(body: dict[str, Any], headers: dict[str, str] | None = None, **kw: Any) -> int:
        response = httpx.post(
            chat, json=body, headers=auth if headers is None else headers, timeout=30, **kw
        )
        return response.status_code

    body = {"model": "qwen3", "messages": HI, "max_tokens": 4}
    seen: dict[tuple[str, str], set[int]] = {}

    def saw(method: str, path: str, status: int) -> None:
        seen.setdefault((method, path), set()).add(status)

    route = ("POST", "/v1/chat/completions")
    saw(*route, post(body))
    saw(*route, post({"model": "qwen3"}))  # no messages
    saw(*route, post(body, headers={}))  # no key
    only_other = {"Authorization": f"Bearer {gateway.new_key(models=('llama3',))}"}
    saw(*route, post(body, headers=only_other))
    saw(*route, post({**body, "model": "no-such-model"}))
    tiny = {"Authorization": f"Bearer {gateway.new_key(tpm=50)}"}
    saw(*route, post({"model": "qwen3", "messages": HI}, headers=tiny))  # never fits: 429
    saw(*route, post({**body, "sim": {"fail_status": 500}}))  # upstream failed: 502
    limits = {"upstream_read_timeout": 0.5, "max_request_bytes": 10_000}
    with running_gateway(tokenizers_dir, sim_url, **limits) as strict:
        strict_auth = {"Authorization": f"Bearer {strict.new_key()}"}
        for sent in ({**body, "sim": {"hang": True}}, {**body, "user": "x" * 20_000}):
            answer = httpx.post(
                strict.base_url + "/chat/completions", json=sent, headers=strict_auth, timeout=30
            )
            saw(*route, answer.status_code)  # 504, then 413

    models = gateway.base_url + "/models"
    saw("GET", "/v1/models", httpx.get(models, headers=auth).status_code)
    saw("GET", "/v1/models", httpx.get(models).status_code)
    usage = gateway.base_url + "/usage"
    saw("GET", "/v1/usage", httpx.get(usage, headers=auth).status_code)
    saw("GET", "/v1/usage", httpx.get(usage, params={"group_by": "x"}, headers=auth).status_code)
    saw("GET", "/v1/usage", httpx.get(usage).status_code)
    saw("GET", "/health", httpx.get(gateway.url + "/health").status_code)

    assert seen[route] == {200, 400, 401, 403, 404, 413, 429, 502, 504}
    assert seen[("GET", "/v1/usage")] == {200, 400, 401}
    for (method, path), statuses in seen.items():
        documented = set(map(int, spec["paths"][path][method.lower()]["responses"]))
        assert statuses <= documented, (method, path, statuses - documented)


def test_rate_limit_headers_are_documented(spec: dict[str, Any]) -> None:
    refused = spec["paths"]["/v1/chat/completions"]["post"]["responses"]["429"]
    assert {"Retry-After", "x-ratelimit-remaining-tokens"} <= set(refused["headers"])
    assert json.dumps(refused).count("insufficient_quota") == 1


def test_docs_behind_the_lambda_web_adapter_follow_the_stage(gateway: Gateway) -> None:
    """The Web Adapter (StreamFunction) passes API Gateway's request context as the
    `x-amzn-request-context` header: the same prefix applies there."""
    context = {"path": "/prod/docs", "stage": "prod", "domainName": "abc.execute-api"}
    page = httpx.get(gateway.url + "/docs", headers={"x-amzn-request-context": json.dumps(context)})
    assert page.status_code == 200
    assert "url: '/prod/openapi.json'" in page.text
    plain = httpx.get(gateway.url + "/docs")
    assert "url: '/openapi.json'" in plain.text
    garbage = httpx.get(gateway.url + "/docs", headers={"x-amzn-request-context": "{nope"})
    assert "url: '/openapi.json'" in garbage.text


def test_docs_serve_swagger_ui_from_the_gateway_not_a_cdn(gateway: Gateway) -> None:
    """/docs works offline: every script, stylesheet and icon it names is the gateway's."""
    page = httpx.get(gateway.url + "/docs", timeout=10)
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert {a.rpartition("/")[2] for a in assets} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    }
    for asset in assets:
        assert asset.startswith("/docs/assets/"), asset
        response = httpx.get(gateway.url + asset, timeout=10)
        assert response.status_code == 200 and len(response.content) > 500, asset
    assert "javascript" in httpx.get(gateway.url + assets[-1]).headers["content-type"]
    missing = httpx.get(gateway.url + "/docs/assets/../../settings.py", timeout=10)
    assert missing.status_code == 404
    unknown = httpx.get(gateway.url + "/docs/assets/index.html", timeout=10)
    assert unknown.status_code == 404 and set(unknown.json()["error"]) >= {"message", "type"}
    staged = {"path": "/prod/docs", "stage": "prod"}
    behind = httpx.get(
        gateway.url + "/docs", headers={"x-amzn-request-context": json.dumps(staged)}
    )
    assert "/prod/docs/assets/swagger-ui-bundle.js" in behind.text


def test_every_post_example_executes_against_make_runs_models(
    dynamodb: str, tokenizers_dir: Path, sim_url: str
) -> None:
    """Swagger UI's "Try it out" then "Execute" sends the prefilled example as it is: each
    POST operation's example succeeds against the models `make run` serves."""
    from devstack.tokenizers import from_folder

    config = from_folder(tokenizers_dir).models_config(sim_url)
    with running_gateway(tokenizers_dir, sim_url, models_config=config) as gw:
        spec = httpx.get(gw.url + "/openapi.json", timeout=10).json()
        key = gw.new_key()
        posts = [(p, o) for m, p, o in operations(spec) if m == "POST"]
        assert posts
        for path, operation in posts:
            example = operation["requestBody"]["content"]["application/json"]["example"]
            response = httpx.post(
                gw.url + path,
                json=example,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert response.status_code == 200, (path, response.text)
