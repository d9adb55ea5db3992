"""Validation errors of request bodies with union fields, named as the client wrote them.

pydantic reports a union's every branch: `input` sent as a list also fails the `str`
branch (loc `input.str`), and a discriminated union puts the tag in the loc
(`input.0.function_call.call_id`). The 400 should name the field the client got wrong
(`input.0.call_id`): errors of branches the value's JSON type rules out are dropped, and
loc elements that are a branch's tag (its `type`, or pydantic's `list[...]` labels) are
removed. The first remaining error is reported (gateway.inputs.invalid_request).

Shared by the Responses and Messages protocols (a candidate for gateway/inputs.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.inputs import invalid_request

M = TypeVar("M", bound=BaseModel)

# pydantic's labels of scalar union branches, and the JSON types that select them.
_SCALAR_BRANCHES = {"str": str, "int": int, "float": float, "bool": bool}


def _clean_loc(loc: Sequence[Any], data: Any) -> tuple[tuple[Any, ...], bool]:
    """The loc without branch labels, and whether the error's branch fits the data."""
    out: list[Any] = []
    value = data
    for part in loc:
        if isinstance(part, str) and part in _SCALAR_BRANCHES:
            if not isinstance(value, _SCALAR_BRANCHES[part]):
                return tuple(out), False
            continue
        if isinstance(part, str) and "[" in part:  # list[...], dict[...] branch labels
            continue
        if (
            isinstance(value, dict)
            and isinstance(part, str)
            and part not in value
            and value.get("type") == part  # a discriminated union's tag
        ):
            continue
        out.append(part)
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            value = None
    return tuple(out), True


def clean_errors(errors: Sequence[Any], data: Any) -> list[dict[str, Any]]:
    fitting: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for error in errors:
        loc, fits = _clean_loc(error.get("loc", ()), data)
        (fitting if fits else other).append({**error, "loc": loc})
    return fitting or other


def validate_body(model: type[M], data: dict[str, Any], *, prefix: tuple[Any, ...] = ()) -> M:
    """The validated model, or an InvalidRequestError naming the field (under `prefix`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {**e, "loc": (*prefix, *e["loc"])}
            for e in clean_errors(exc.errors(include_url=False), data)
        ]
        raise invalid_request(errors) from exc
