"""The shapes the OpenAPI description names by `$ref` (request bodies the routes read raw,
answers, stream chunks): helpers for the routes' declarations, and `component`, which
install_openapi (openapi.py) calls when the description is first asked for."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

# The shapes below are named by `$ref` in the routes' declarations, and their schemas are
# built only when the description is first asked for (install_openapi): building them at
# import time (as FastAPI's `response_model` would) cost a cold start ~0.4 s.


def ref(shape: Any) -> dict[str, str]:
    """A `$ref` to a pydantic model's or TypedDict's schema in the components."""
    return {"$ref": f"#/components/schemas/{shape.__name__}"}


def component(shape: Any) -> dict[str, Any]:
    """A shape's schema as components: it, and what it refers to."""
    schema = TypeAdapter(shape).json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), shape.__name__: schema}


def raw_body(model: type[BaseModel]) -> dict[str, Any]:
    """The `openapi_extra` of a route that reads its body raw (so that every request is
    metered) but documents it as `model` (which install_openapi must be given)."""
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(model)}}}
    }


def json_body(shape: Any) -> dict[str, Any]:
    """An answer's `application/json` content: `shape`, a TypedDict the code builds."""
    return {"application/json": {"schema": ref(shape)}}


def event_stream(chunk: Any, example: str) -> dict[str, Any]:
    """A streamed answer's `text/event-stream` content: its schema is the one `data:`
    event's (as OpenAI's own description has it)."""
    return {"text/event-stream": {"schema": ref(chunk), "example": example}}
