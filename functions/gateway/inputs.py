"""Request bodies as untrusted input: parsed, bounded and validated before any work.

A body is JSON (orjson: valid UTF-8, no lone surrogates, no NaN), an object, nested at
most MAX_DEPTH deep, and every integer in it fits the 64-bit range that JSON encoders and
model servers carry. Each failure is a 400 naming the field; nothing is forwarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequestError

MAX_DEPTH = 32
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

# Our own messages for pydantic error types whose default text reads poorly to API users.
CUSTOM_ERROR_TYPES = {"empty_messages", "model_params", "model_params_conflict", "stop"}

M = TypeVar("M", bound=BaseModel)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or a 400."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "surrogate" in reason:
            raise InvalidRequestError(
                "The request body contains a lone UTF-16 surrogate; text must be valid Unicode."
            ) from exc
        if "depth" in reason or "recursion" in reason:
            raise InvalidRequestError(
                f"The request body is nested deeper than {MAX_DEPTH} levels."
            ) from exc
        raise InvalidRequestError("We could not parse the JSON body of your request.") from exc
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    _check(data, (), 0)
    return data


def _path(path: Sequence[str | int]) -> str | None:
    return ".".join(str(p) for p in path) or None


def _check(value: Any, path: tuple[str | int, ...], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidRequestError(
            f"The request body is nested deeper than {MAX_DEPTH} levels.", param=_path(path)
        )
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, dict | list | int) and not isinstance(item, bool):
                _check(item, (*path, name), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list | int) and not isinstance(item, bool):
                _check(item, (*path, index), depth + 1)
    elif isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        param = _path(path)
        raise InvalidRequestError(
            f"Invalid value for '{param}': integers must be within the 64-bit signed range.",
            param=param,
        )


def validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc.errors(include_url=False)) from exc


def invalid_request(errors: Sequence[Any]) -> InvalidRequestError:
    """OpenAI's 400 for pydantic's (or FastAPI's) validation errors: the first one."""
    if not errors:
        return InvalidRequestError("Invalid request body.")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    message = str(first.get("msg", "Invalid value."))
    if kind == "json_invalid":
        return InvalidRequestError("We could not parse the JSON body of your request.")
    if kind == "missing":
        return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param)
    if kind in CUSTOM_ERROR_TYPES:
        return InvalidRequestError(message, param=param or "model_params")
    if param is None:
        return InvalidRequestError(f"Invalid request body: {message}")
    return InvalidRequestError(f"Invalid value for '{param}': {message}", param=param)
