"""Every error class: status, OpenAI's envelope, and the one usage record each leaves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, models_config, running_gateway
from tests.support.schemas import validate
from tests.support.servers import free_port
from tests.support.sse import events

HI = [{"role": "user", "content": "hi"}]


def post(gateway: Gateway, body: object, key: str | None, **headers: str) -> httpx.Response:
    if key is not None:
        headers.setdefault("Authorization", f"Bearer {key}")
    return httpx.post(
        gateway.base_url + "/chat/completions", json=body, headers=headers, timeout=30
    )


def assert_error(
    response: httpx.Response, status: int, schemas: Path, *, code: str | None = None
) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    validate(schemas, "ErrorResponse", body)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert response.headers["x-request-id"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def assert_rejected(gateway: Gateway, key: str, *statuses: int) -> None:
    """An authenticated request refused before any upstream: one record each, 0 tokens."""
    records = sorted(gateway.records(key), key=lambda r: r.created_at)
    assert [(r.status, r.http_status) for r in records] == [("rejected", s) for s in statuses]
    assert all(r.total_tokens == 0 and r.error for r in records)


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"model": "qwen3", "messages": []}, "messages", "Messages must be a non-empty array."),
        ({"model": "qwen3"}, "messages", "Missing required parameter: 'messages'."),
        ({"messages": HI}, "model", None),
        ({"model": "qwen3", "messages": HI, "temperature": 2.5}, "temperature", None),
        ({"model": "qwen3", "messages": HI, "max_tokens": 0}, "max_tokens", None),
        ({"model": "qwen3", "messages": [{"role": "robot", "content": "x"}]}, None, None),
        ({"model": "qwen3", "messages": HI, "stop": 5}, None, None),
        (
            {
                "model": "qwen3",
                "messages": HI,
                "temperature": 0.2,
                "model_params": {"temperature": 0.9},
            },
            "model_params",
            None,
        ),
        (
            {"model": "qwen3", "messages": HI, "model_params": {"temperature": 7}},
            "temperature",
            None,
        ),
        ([1, 2], None, None),
    ],
)
def test_invalid_input_is_400(
    gateway: Gateway,
    conformance_schemas: Path,
    body: object,
    param: str | None,
    message: str | None,
) -> None:
    key = gateway.new_key()
    error = assert_error(post(gateway, body, key), 400, conformance_schemas)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert str(error["param"]).startswith(param)
    if message is not None:
        assert error["message"] == message
    assert_rejected(gateway, key, 400)


def test_malformed_json_is_400(gateway: Gateway, conformance_schemas: Path) -> None:
    key = gateway.new_key()
    response = httpx.post(
        gateway.base_url + "/chat/completions",
        content=b'{"model": "qwen3", "messages": [',
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert_error(response, 400, conformance_schemas)


def test_template_refusal_is_400(gateway: Gateway, conformance_schemas: Path) -> None:
    key = gateway.new_key()
    body = {"model": "mistral", "messages": [{"role": "system", "content": "x"}, *HI]}
    error = assert_error(post(gateway, body, key), 400, conformance_schemas)
    assert "alternate" in str(error["message"])
    assert_rejected(gateway, key, 400)


def test_missing_unknown_revoked_expired_keys_are_401(
    gateway: Gateway, conformance_schemas: Path
) -> None:
    body = {"model": "qwen3", "messages": HI}
    assert_error(post(gateway, body, None), 401, conformance_schemas, code="missing_api_key")
    assert_error(
        post(gateway, body, "sk-gw-nope"), 401, conformance_schemas, code="invalid_api_key"
    )
    bad_scheme = post(gateway, body, None, Authorization="Basic abc")
    assert_error(bad_scheme, 401, conformance_schemas, code="missing_api_key")

    revoked = gateway.new_key()
    gateway.resources.keys.revoke(key_id=gateway.key_id(revoked))
    assert_error(post(gateway, body, revoked), 401, conformance_schemas, code="revoked_api_key")

    expired = gateway.new_key(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert_error(post(gateway, body, expired), 401, conformance_schemas, code="expired_api_key")
    for key in (revoked, expired):
        assert gateway.records(key) == []


def test_bearer_scheme_forms(gateway: Gateway) -> None:
    key = gateway.new_key()
    body = {"model": "qwen3", "messages": HI, "max_tokens": 1}
    for header in (f"Bearer {key}", f"bearer {key}", f"BEARER  {key}", f"bearer{key}"):
        assert post(gateway, body, None, Authorization=header).status_code == 200, header


def test_model_not_allowed_is_403_and_unknown_is_404(
    gateway: Gateway, conformance_schemas: Path
) -> None:
    key = gateway.new_key(models=("llama3",))
    error = assert_error(
        post(gateway, {"model": "qwen3", "messages": HI}, key), 403, conformance_schemas
    )
    assert error["param"] == "model"
    error = assert_error(
        post(gateway, {"model": "gpt-9", "messages": HI}, key),
        404,
        conformance_schemas,
        code="model_not_found",
    )
    assert "gpt-9" in str(error["message"])
    assert_rejected(gateway, key, 403, 404)


def test_oversized_body_is_413(gateway: Gateway, conformance_schemas: Path) -> None:
    key = gateway.new_key()
    limit = gateway.resources.settings.max_request_bytes
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "x" * (limit + 10)}]}
    assert_error(post(gateway, body, key), 413, conformance_schemas, code="request_too_large")

    def chunked() -> object:  # no Content-Length: the limit holds while reading
        yield b'{"model": "qwen3", "messages": [{"role": "user", "content": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}]}'

    response = httpx.post(
        gateway.base_url + "/chat/completions",
        content=chunked(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert_error(response, 413, conformance_schemas, code="request_too_large")
    # The first was refused on its Content-Length before authentication; the second was
    # authenticated before its body ran over the limit.
    assert_rejected(gateway, key, 413)


def test_unknown_route_is_404_envelope(gateway: Gateway, conformance_schemas: Path) -> None:
    assert_error(httpx.get(gateway.url + "/v1/nothing"), 404, conformance_schemas)


def test_upstream_http_error_is_502_and_recorded(
    gateway: Gateway, conformance_schemas: Path
) -> None:
    key = gateway.new_key()
    for stream in (False, True):
        body = {"model": "qwen3", "messages": HI, "stream": stream, "sim": {"fail_status": 500}}
        response = post(gateway, body, key)
        assert_error(response, 502, conformance_schemas)
    records = gateway.records(key)
    assert [r.status for r in records] == ["upstream_error", "upstream_error"]
    assert all(r.total_tokens == 0 and r.http_status == 502 for r in records)


def test_upstream_rejection_is_400(gateway: Gateway, conformance_schemas: Path) -> None:
    key = gateway.new_key()
    body = {"model": "qwen3", "messages": HI, "sim": {"fail_status": 400}}
    assert_error(post(gateway, body, key), 400, conformance_schemas)


def test_failure_mid_stream_is_one_error_event(gateway: Gateway, conformance_schemas: Path) -> None:
    key = gateway.new_key()
    body = {"model": "qwen3", "messages": HI, "stream": True, "sim": {"fail_after_tokens": 3}}
    with gateway.stream_chat(key, body) as response:
        assert response.status_code == 200
        received = [data for _, data in events(response)]
    assert "[DONE]" not in received
    last = received[-1]
    validate(conformance_schemas, "ErrorResponse", last)
    assert last["error"]["type"] == "upstream_error"
    assert all("error" not in c for c in received[:-1])
    [record] = gateway.records(key)
    assert record.status == "upstream_error" and record.stream
    assert record.completion_tokens == 3  # what the GPU generated is billed


def test_unreachable_upstream_is_502(
    dynamodb: str, tokenizers_dir: Path, conformance_schemas: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with running_gateway(tokenizers_dir, closed, models_config=models_config(closed)) as gw:
        key = gw.new_key()
        assert_error(post(gw, {"model": "qwen3", "messages": HI}, key), 502, conformance_schemas)
        [record] = gw.records(key)
        assert record.status == "upstream_error"


def test_upstream_timeout_is_504(
    dynamodb: str, tokenizers_dir: Path, sim_url: str, conformance_schemas: Path
) -> None:
    with running_gateway(tokenizers_dir, sim_url, upstream_read_timeout=0.5) as gw:
        key = gw.new_key()
        for stream in (False, True):
            body = {"model": "qwen3", "messages": HI, "stream": stream, "sim": {"hang": True}}
            assert_error(post(gw, body, key), 504, conformance_schemas, code="upstream_timeout")
        assert [r.status for r in gw.records(key)] == ["upstream_timeout"] * 2
