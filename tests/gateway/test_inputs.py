"""Hostile request bodies: each is a 400 naming the field, leaves one `rejected` record
with nothing billed, and reserves nothing. On the code before the Meter each of these was
a 500 with no record, and the first kept its budget reservation for ever."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gateway.http import RequestContextMiddleware

from tests.conftest import Gateway
from tests.support.schemas import validate

HI = [{"role": "user", "content": "hi"}]


def post_raw(gateway: Gateway, key: str, raw: bytes) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


HOSTILE = [
    # (raw body, param named in the error, what the message says)
    (
        b'{"model":"qwen3","messages":[{"role":"user","content":"hi"}],"seed":100000000000000000000}',
        "seed",
        None,
    ),
    (
        b'{"model":"qwen3","messages":[{"role":"user","content":"hi"}],"top_k":9223372036854775808}',
        "top_k",
        "64-bit",
    ),
    (b'{"model":"qwen3","messages":[{"role":"user","content":"a\\ud800b"}]}', None, "surrogate"),
    (
        (
            '{"model":"qwen3","messages":[{"role":"user","content":"hi"}],"x":' + nested(255) + "}"
        ).encode(),
        None,
        "nested",
    ),
    (
        b'{"model":"qwen3","messages":[{"role":"assistant","content":"x","tool_calls":"oops"},{"role":"user","content":"hi"}]}',
        "messages",
        None,
    ),
    (
        b'{"model":"qwen3","messages":[{"role":"user","content":"hi"}],"max_tokens":4,'
        + b'"stop":[""]}',
        None,
        None,
    ),
]


@pytest.mark.parametrize(("raw", "param", "says"), HOSTILE)
def test_hostile_bodies_are_400_with_a_record_and_no_reservation(
    gateway: Gateway, conformance_schemas: Path, raw: bytes, param: str | None, says: str | None
) -> None:
    key = gateway.new_key(monthly_tokens=50_000)
    for _ in range(3):
        response = post_raw(gateway, key, raw)
        assert response.status_code == 400, response.text
        error = response.json()
        validate(conformance_schemas, "ErrorResponse", error)
        if param is not None:
            assert str(error["error"]["param"]).startswith(param)
        if says is not None:
            assert says in error["error"]["message"]
    records = gateway.records(key)
    assert [(r.status, r.total_tokens) for r in records] == [("rejected", 0)] * 3
    key_id = gateway.key_id(key)
    assert gateway.resources.limits.month_tokens(key_id=key_id) == 0
    ok = post_raw(
        gateway,
        key,
        b'{"model":"qwen3","messages":[{"role":"user","content":"hi"}],"max_tokens":4}',
    )
    assert ok.status_code == 200


def test_huge_model_name_is_refused_without_echo(gateway: Gateway) -> None:
    key = gateway.new_key()
    name = "m" * 3_000_000
    raw = b'{"model":"' + name.encode() + b'","messages":[{"role":"user","content":"hi"}]}'
    response = post_raw(gateway, key, raw)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
    assert len(response.content) < 1000
    unknown = post_raw(gateway, key, b'{"model":"' + b"x" * 200 + b'","messages":[]}')
    assert len(unknown.content) < 1000


def test_too_many_messages_are_refused_before_counting(gateway: Gateway) -> None:
    key = gateway.new_key()
    raw = (
        b'{"model":"qwen3","messages":['
        + b",".join([b'{"role":"user","content":""}'] * 100_000)
        + b"]}"
    )
    response = post_raw(gateway, key, raw)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    [record] = gateway.records(key)
    assert record.status == "rejected"


@pytest.mark.anyio
async def test_an_unexpected_error_is_a_500_envelope_that_closes_the_connection() -> None:
    async def broken(scope: object, receive: object, send: object) -> None:
        raise RuntimeError("bug")

    app = RequestContextMiddleware(broken, max_body_bytes=100)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/v1/chat/completions", content=b"{}")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["connection"] == "close"
    assert "bug" not in response.text
