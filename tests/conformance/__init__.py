"""Published schemas the Responses and Messages wire layers are checked against; each
file names its source in `$comment` (build_schemas.py regenerates them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CONFORMANCE_SCHEMAS
from tests.support.schemas import validate

HERE = Path(__file__).parent
OPENAI_RESPONSES = HERE / "openai_responses.schema.json"
ANTHROPIC_MESSAGES = HERE / "anthropic_messages.schema.json"

# Each Responses stream event's schema in OpenAI's OpenAPI description.
RESPONSE_EVENTS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.reasoning_text.delta": "ResponseReasoningTextDeltaEvent",
    "response.reasoning_text.done": "ResponseReasoningTextDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
}


def validate_response(body: Any) -> None:
    validate(OPENAI_RESPONSES, "Response", body)


def validate_response_event(name: str, payload: Any) -> None:
    assert payload["type"] == name
    validate(OPENAI_RESPONSES, RESPONSE_EVENTS[name], payload)


def validate_message(body: Any) -> None:
    validate(ANTHROPIC_MESSAGES, "Message", body)


def validate_message_event(name: str, payload: Any) -> None:
    assert payload["type"] == name
    root = {"error": "ErrorResponse", "ping": "PingEvent"}.get(name, "RawMessageStreamEvent")
    validate(ANTHROPIC_MESSAGES, root, payload)


def validate_anthropic_error(body: Any) -> None:
    validate(ANTHROPIC_MESSAGES, "ErrorResponse", body)


def validate_chat_request(body: Any) -> None:
    """Against OpenAI's chat request schema in ../shared/conformance (skipped without it)."""
    if not CONFORMANCE_SCHEMAS.is_file():
        pytest.skip(f"OpenAI schemas not found at {CONFORMANCE_SCHEMAS} (../shared is absent)")
    validate(CONFORMANCE_SCHEMAS, "CreateChatCompletionRequest", body)
