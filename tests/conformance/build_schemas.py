"""Regenerates the conformance schemas in this folder (not a test; run by hand).

- openai_responses.schema.json: the parts of OpenAI's published OpenAPI description
  (github.com/openai/openai-openapi, openapi.json) that the Responses API answers with:
  the `Response` object and every stream event the gateway sends, with every schema they
  reference, `#/components/schemas/X` rewritten to `#/$defs/X` (OpenAPI 3.1 schemas are
  JSON Schema 2020-12). Descriptions and `x-oaiMeta` examples are dropped to keep it small.
- anthropic_messages.schema.json: Anthropic's published types, as the `anthropic` Python
  SDK (generated from Anthropic's OpenAPI description) declares them: `Message`, every
  stream event (`RawMessageStreamEvent`), `ErrorResponse` and `MessageTokensCount`,
  rendered to JSON Schema by pydantic.

    python tests/conformance/build_schemas.py /path/to/openai-openapi/openapi.json COMMIT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

OPENAI_ROOTS = [
    "Response",
    "ResponseCreatedEvent",
    "ResponseInProgressEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseContentPartAddedEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseContentPartDoneEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseReasoningTextDeltaEvent",
    "ResponseReasoningTextDoneEvent",
    "ResponseCompletedEvent",
    "ResponseIncompleteEvent",
    "ResponseFailedEvent",
    "ResponseErrorEvent",
]


_DROPPED = frozenset({"description", "x-oaiMeta", "example", "examples", "title"})


def _strip(node: Any) -> Any:
    """The schema without its prose; `properties` maps keep every name (a property may
    be called `description` or `title`)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _DROPPED:
                continue
            if key == "$ref" and isinstance(value, str):
                out[key] = value.replace("#/components/schemas/", "#/$defs/")
            elif key in ("properties", "$defs") and isinstance(value, dict):
                out[key] = {name: _strip(sub) for name, sub in value.items()}
            else:
                out[key] = _strip(value)
        return out
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def openai(spec_path: str, commit: str) -> dict[str, Any]:
    spec = json.loads(Path(spec_path).read_text())
    schemas = spec["components"]["schemas"]
    seen: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    name = value.rsplit("/", 1)[-1]
                    if name not in seen:
                        seen.add(name)
                        walk(schemas[name])
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for root in OPENAI_ROOTS:
        seen.add(root)
        walk(schemas[root])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            "Source: OpenAI's OpenAPI description, github.com/openai/openai-openapi "
            f"openapi.json at {commit} (info.version {spec['info']['version']}); "
            "components.schemas reachable from the roots below. Built by build_schemas.py."
        ),
        "roots": OPENAI_ROOTS,
        "$defs": _strip({"$defs": {name: schemas[name] for name in sorted(seen)}})["$defs"],
    }


def anthropic() -> dict[str, Any]:
    import anthropic as sdk
    from anthropic.types import ErrorResponse, Message, MessageTokensCount, RawMessageStreamEvent
    from pydantic import TypeAdapter

    roots = {
        "Message": Message,
        "RawMessageStreamEvent": RawMessageStreamEvent,
        "ErrorResponse": ErrorResponse,
        "MessageTokensCount": MessageTokensCount,
    }
    defs: dict[str, Any] = {}
    for name, kind in roots.items():
        schema = TypeAdapter(kind).json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[name] = schema
    # `ping` is in Anthropic's streaming docs ("event: ping", data {"type": "ping"}) but
    # not in the SDK's event union: the SDK skips it by name (anthropic/_streaming.py).
    defs["PingEvent"] = {
        "type": "object",
        "properties": {"type": {"const": "ping"}},
        "required": ["type"],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Source: Anthropic's published types, the `anthropic` Python SDK {sdk.__version__} "
            "(anthropic/types: message.py, raw_message_stream_event.py, "
            "shared/error_response.py, message_tokens_count.py), rendered by pydantic; "
            "PingEvent from Anthropic's streaming documentation (the SDK skips ping). "
            "Built by build_schemas.py."
        ),
        "roots": [*roots, "PingEvent"],
        "$defs": _strip({"$defs": defs})["$defs"],
    }


def main() -> None:
    spec_path, commit = sys.argv[1], sys.argv[2]
    for name, schema in (
        ("openai_responses.schema.json", openai(spec_path, commit)),
        ("anthropic_messages.schema.json", anthropic()),
    ):
        (HERE / name).write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
