"""Schemathesis against the gateway's own `/openapi.json`, over real HTTP.

Every operation the schema documents is fuzzed with bodies and parameters that fit the
schema (positive) and, where it takes any, with ones that do not (negative), each with a valid API key and,
for chat bodies that name a model, one of the models the gateway serves (so cases get past
the 404 and reach the tokenizer, the budget and the simulated GPU endpoint). Each
(operation, mode) pair runs on a fresh key with a monthly budget.

Bounded and deterministic: a fixed number of examples per pair (EXAMPLES), derandomized,
no example database. Deterministic for one set of loaded modules only: Hypothesis mixes
into its draws the literal constants of every local module imported (functions/, infra/,
tests/), so this file alone draws other cases than a full run, and any edit that adds a
literal changes them. A full run's cases come back with the whole suite collected and
one pair selected: `pytest tests -m "not soak" -k "test_schemathesis and completions and
positive and not chat"`. Besides schemathesis's own response checks (no server error, status
and content type as documented, bodies matching the documented schemas, negative data
refused), every response goes through tests/hardening/audit.py: no 422, no 5xx, OpenAI's
error format, no secret, one usage record per chat request, reservations settled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_MODELS, Gateway
from tests.hardening.audit import Audit, assert_no_secret_logged

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CHAT = "POST /v1/chat/completions"
COMPLETIONS = "POST /v1/completions"
EMBEDDINGS = "POST /v1/embeddings"
RESPONSES = "POST /v1/responses"
MESSAGES = "POST /v1/messages"
COUNT_TOKENS = "POST /v1/messages/count_tokens"
GET_RESPONSE = "GET /v1/responses/{response_id}"
DELETE_RESPONSE = "DELETE /v1/responses/{response_id}"
# The metered routes: every authenticated request leaves exactly one usage record.
METERED = (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MESSAGES)
# Routes that name a model (count_tokens is authenticated and rate limited, not metered).
NAMES_MODEL = (*METERED, COUNT_TOKENS)
# Routes whose errors are in Anthropic's shape.
ANTHROPIC = (MESSAGES, COUNT_TOKENS)
# Examples per (operation, mode). The chat route is where the work is.
EXAMPLES = {
    CHAT: 60,
    COMPLETIONS: 30,
    EMBEDDINGS: 15,
    RESPONSES: 30,
    MESSAGES: 30,
    COUNT_TOKENS: 15,
    GET_RESPONSE: 5,
    DELETE_RESPONSE: 5,
    "GET /v1/models": 10,
    "GET /v1/models/{model_id}": 5,
    "GET /v1/usage": 20,
    "GET /health": 3,
}
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE


# Operations without parameters or a body have no negative cases.
def _pair_id(pair: Any) -> str:
    label, mode = pair.values if hasattr(pair, "values") else pair
    return f"{label} {mode}"


PAIRS = [
    (CHAT, POSITIVE),
    (CHAT, NEGATIVE),
    (COMPLETIONS, POSITIVE),
    (COMPLETIONS, NEGATIVE),
    (EMBEDDINGS, POSITIVE),
    (EMBEDDINGS, NEGATIVE),
    (RESPONSES, POSITIVE),
    (RESPONSES, NEGATIVE),
    (MESSAGES, POSITIVE),
    (MESSAGES, NEGATIVE),
    (COUNT_TOKENS, POSITIVE),
    (COUNT_TOKENS, NEGATIVE),
    (GET_RESPONSE, POSITIVE),
    (DELETE_RESPONSE, POSITIVE),
    ("GET /v1/models/{model_id}", POSITIVE),
    ("GET /v1/usage", POSITIVE),
    ("GET /v1/usage", NEGATIVE),
    ("GET /v1/models", POSITIVE),
    ("GET /health", POSITIVE),
]
CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(gateway: Gateway) -> Any:
    return schemathesis.openapi.from_url(gateway.url + "/openapi.json")


def test_every_documented_operation_is_fuzzed(api_schema: Any) -> None:
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(EXAMPLES)


def _with_served_model(case: Any, model: str) -> None:
    """Name a served model, unless the case is about the model field being wrong."""
    body = case.body
    name = body.get("model") if isinstance(body, dict) else None
    if isinstance(name, str) and 1 <= len(name) <= 256:
        body["model"] = model


@pytest.mark.parametrize(("label", "mode"), PAIRS, ids=[_pair_id(pair) for pair in PAIRS])
def test_schemathesis(
    label: str,
    mode: GenerationMode,
    api_schema: Any,
    gateway: Gateway,
    conformance_schemas: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG", logger="gateway")
    audit = Audit.fresh(gateway, conformance_schemas)
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]
    checks = [*CHECKS, negative_data_rejection] if mode.is_negative else CHECKS

    @settings(
        max_examples=EXAMPLES[label],
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=mode, headers=audit.headers),
        model=st.sampled_from(sorted(TEST_MODELS)),
    )
    def run(case: Any, model: str) -> None:
        if label in NAMES_MODEL:
            _with_served_model(case, model)
        response = case.call(base_url=gateway.url, timeout=60)
        audit.check(
            status=response.status_code,
            body=response.content,
            content_type=_header(response, "content-type") or "",
            request_id=_header(response, "x-request-id"),
            chat=label in METERED and _authenticated(response.status_code),
            stop_strings=_may_call_tools(case.body),
            anthropic=label in ANTHROPIC,
            what=f"{label} {mode}: {case.body!r:.300}",
        )
        sse = (_header(response, "content-type") or "").startswith("text/event-stream")
        # schemathesis 4 validates each SSE event against the media type's `schema`, while
        # OpenAPI 3.1 has no per-event schema (3.2's itemSchema); the audit above checks
        # the stream's error events against OpenAI's schema instead.
        case.validate_response(
            response, checks=[c for c in checks if not (sse and c is response_schema_conformance)]
        )

    run()
    figures = audit.settle()
    captured = capsys.readouterr()
    assert_no_secret_logged(audit.secret, caplog.records, captured.out, captured.err)
    with capsys.disabled():
        print(f"\n[hardening] schemathesis {label} {mode}: {figures}")


def _header(response: Any, name: str) -> str | None:
    """A header of schemathesis's Response (whose values are lists)."""
    for key, values in response.headers.items():
        if key.lower() == name:
            return str(values[0]) if isinstance(values, list) else str(values)
    return None


def _may_call_tools(body: Any) -> bool:
    """A body offering tools may get tool calls back (the simulated model calls the tool a
    message asks for): their completion tokens are the upstream's, and the gateway's own
    estimate is approximate (README, "Token counting"), as with stop strings."""
    return isinstance(body, dict) and bool(body.get("tools")) and body.get("tool_choice") != "none"


def _authenticated(status: int) -> bool:
    # The key is valid, so only a body refused by the size check before authentication
    # (413 on Content-Length) leaves no record.
    return status not in (401, 413)
