"""Request bodies bounded before any work."""

from __future__ import annotations

import pytest
from gateway.errors import InvalidRequestError
from gateway.inputs import MAX_DEPTH, invalid_request, parse_body, validate
from pydantic import BaseModel, Field


@pytest.mark.parametrize(
    ("raw", "says", "param"),
    [
        (b"{", "could not parse", None),
        (b"[1]", "JSON object", None),
        (b'{"a":"\\ud800"}', "surrogate", None),
        (b'{"x":' + b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2) + b"}", "nested", "x.0"),
        (b'{"seed": 9223372036854775808}', "64-bit", "seed"),
        (b'{"a": [1, {"b": 18446744073709551615}]}', "64-bit", "a.1.b"),
    ],
)
def test_parse_body_refuses_with_a_400(raw: bytes, says: str, param: str | None) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_body(raw)
    assert says in raised.value.message
    if param is not None:
        assert str(raised.value.param).startswith(param)


def test_parse_body_keeps_valid_bodies() -> None:
    assert parse_body(b'{"n": 9223372036854775807, "ok": [true, 1.5]}') == {
        "n": 2**63 - 1,
        "ok": [True, 1.5],
    }


class _Body(BaseModel):
    name: str
    temperature: float = Field(default=1, le=2)


def test_validate_maps_pydantic_errors_to_openai_400s() -> None:
    with pytest.raises(InvalidRequestError) as missing:
        validate(_Body, {})
    assert missing.value.message == "Missing required parameter: 'name'."
    with pytest.raises(InvalidRequestError) as bad:
        validate(_Body, {"name": "x", "temperature": 3})
    assert bad.value.param == "temperature"
    assert invalid_request([]).message == "Invalid request body."
    assert invalid_request([{"type": "json_invalid", "loc": ("body",)}]).param is None
