"""Hypothesis-generated chat bodies, valid-ish and hostile, posted over real HTTP.

Bodies mix what a client might send with what an attacker would: random roles, content as
text, parts, numbers or objects; numbers out of every range (huge, negative, floats,
booleans, NaN and Infinity, which Python's json writes although JSON has no such thing);
lone UTF-16 surrogates escaped in the JSON text; extra fields nested far deeper than the
gateway accepts; random extra fields; `stream` true or false; and the simulated GPU
endpoint's fault knobs (`sim.fail_status`, `sim.fail_after_tokens`, `sim.omit_usage`).
A share of bodies is not a JSON object at all (bytes, arrays, truncated JSON).

Bounded and deterministic: a fixed number of bodies per kind (KINDS), derandomized, no example database.
Every response goes through tests/hardening/audit.py (no 422; 5xx only 502/503/504 and
only for a body that injected an upstream fault; OpenAI's error format, streamed error
events included; no secret in responses or logs), and at the end the key has exactly one
usage record per request and its monthly counter equals the sum of its records' tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_MODELS, Gateway
from tests.hardening.audit import Audit, assert_no_secret_logged

SURROGATES = st.sampled_from(["\ud800", "\udfff", "\udbff\udc00", "a\ud83db"])
TEXT = st.one_of(
    st.text(max_size=24),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=6), SURROGATES, st.text(max_size=6)),
    st.sampled_from(["", "\x00", "\u2028\u2029", "🙂" * 8, "<|im_end|>", "{{ raise }}"]),
)
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**20, 1.5, -0.0, 1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def deep(draw: st.DrawFn, leaf: st.SearchStrategy[Any] = SCALAR, most: int = 300) -> Any:
    """A value nested up to `most` levels (the gateway accepts 32)."""
    value: Any = draw(leaf)
    for as_list in draw(st.lists(st.booleans(), max_size=most)):
        value = [value] if as_list else {"k": value}
    return value


# --- valid-ish: what a real client sends, so cases reach the tokenizer, the budget and
# the upstream (streamed or not, with the simulated endpoint's faults) -----------------
SAFE_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
SAFE_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), SAFE_TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SAFE_TEXT, inner, max_size=3),
    max_leaves=8,
)
TEXT_PARTS = st.lists(st.builds(lambda t: {"type": "text", "text": t}, SAFE_TEXT), max_size=3)
TURN_CONTENT = st.one_of(SAFE_TEXT, SAFE_TEXT, TEXT_PARTS)
CONVERSATION = st.one_of(
    st.builds(lambda u: [{"role": "user", "content": u}], TURN_CONTENT),
    st.builds(
        lambda s, u: [{"role": "system", "content": s}, {"role": "user", "content": u}],
        SAFE_TEXT,
        TURN_CONTENT,
    ),
    st.builds(
        lambda u, a, v: [
            {"role": "user", "content": u},
            {"role": "assistant", "content": a},
            {"role": "user", "content": v},
        ],
        TURN_CONTENT,
        SAFE_TEXT,
        TURN_CONTENT,
    ),
)
SIM = st.fixed_dictionaries(
    {},
    optional={
        "fail_status": st.sampled_from([400, 404, 413, 429, 500, 502, 503, 504]),
        "fail_after_tokens": st.integers(min_value=0, max_value=4),
        "omit_usage": st.booleans(),
        "completion_tokens": st.integers(min_value=1, max_value=12),
    },
)
TOOL = st.builds(
    lambda name, text: {
        "type": "function",
        "function": {
            "name": name or "f",
            "description": text,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    },
    st.text("abcdefgh_", max_size=8),
    SAFE_TEXT,
)
VALIDISH = st.fixed_dictionaries(
    {
        "model": st.sampled_from(sorted(TEST_MODELS)),
        "messages": CONVERSATION,
        "max_tokens": st.integers(min_value=1, max_value=8),
        "stream": st.booleans(),
    },
    optional={
        "n": st.integers(min_value=1, max_value=2),
        "temperature": st.floats(min_value=0, max_value=2),
        "top_p": st.floats(min_value=0, max_value=1),
        "seed": st.integers(-(2**63), 2**63 - 1),
        "stop": st.one_of(st.text(min_size=1, max_size=3), st.lists(st.just("."), max_size=2)),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "sim": SIM,
        "min_p": st.floats(min_value=0, max_value=1),
        # vLLM extensions that change the rendered prompt
        "tools": st.lists(TOOL, max_size=2),
        "chat_template_kwargs": st.fixed_dictionaries(
            {}, optional={"enable_thinking": st.booleans()}
        ),
        # extra fields are forwarded: nested within the limit, and arbitrary
        "x_deep": deep(SAFE_JSON, most=30),
        "x_extra": SAFE_JSON,
    },
)
# Streams the simulated endpoint breaks: an error status before the stream, or an error
# event after a few tokens (which must end the client's stream with OpenAI's error event).
FAULTY_STREAM = st.builds(
    lambda body, fault: {**body, "stream": True, "sim": {**body.get("sim", {}), **fault}},
    VALIDISH,
    st.one_of(
        st.fixed_dictionaries({"fail_after_tokens": st.integers(min_value=0, max_value=4)}),
        st.fixed_dictionaries({"fail_status": st.sampled_from([400, 429, 500, 503, 504])}),
    ),
)

# vLLM extensions that change the prompt the upstream renders (Qwen3's template renders
# tools and `enable_thinking`): the gateway's count must still be the upstream's.
WITH_TOOLS = st.builds(
    lambda body, tools, thinking: {
        **body,
        "model": "qwen3",
        "tools": tools,
        "chat_template_kwargs": {"enable_thinking": thinking},
    },
    VALIDISH,
    st.lists(TOOL, min_size=1, max_size=2),
    st.booleans(),
)

# --- hostile: every field may be of any type or out of any range ------------------------
ROLE = st.one_of(
    st.sampled_from(["user", "user", "assistant", "system", "tool", "developer", "USER", ""]),
    SCALAR,
)
PART = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "text", "image_url", "input_audio", ""])},
    optional={"text": st.one_of(TEXT, NUMBER), "image_url": JSON},
)
CONTENT = st.one_of(TEXT, TEXT, st.none(), st.lists(PART, max_size=3), NUMBER, JSON)
MESSAGE = st.fixed_dictionaries(
    {"role": ROLE},
    optional={
        "content": CONTENT,
        "name": st.one_of(TEXT, NUMBER),
        "tool_calls": JSON,
        "tool_call_id": JSON,
        "x_extra": JSON,
    },
)
HOSTILE = st.fixed_dictionaries(
    {
        "model": st.one_of(st.sampled_from(sorted(TEST_MODELS)), TEXT, NUMBER),
        "messages": st.one_of(CONVERSATION, st.lists(MESSAGE, max_size=4), JSON),
    },
    optional={
        "max_tokens": st.one_of(st.integers(min_value=1, max_value=8), NUMBER),
        "n": st.one_of(st.integers(min_value=1, max_value=3), NUMBER),
        "temperature": NUMBER,
        "top_p": NUMBER,
        "seed": NUMBER,
        "stop": st.one_of(TEXT, st.lists(TEXT, max_size=3), NUMBER),
        "stream": st.one_of(st.booleans(), st.booleans(), JSON),
        "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": JSON}), JSON),
        "model_params": JSON,
        "logit_bias": JSON,
        "tools": JSON,
        "chat_template": JSON,
        "chat_template_kwargs": JSON,
        "sim": SIM,
        "x_deep": deep(),
        "x_extra": JSON,
    },
)
# Raw bodies that are not a JSON object, or not even JSON.
RAW = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"[]", b"null", b"1e999", b'{"model":', b'{"a":1}{', b"\xff\xfe{}"]),
    st.builds(lambda v: json.dumps(v).encode(), JSON),
)


def _encoded(body: dict[str, Any]) -> bytes:
    # ensure_ascii writes lone surrogates as \\udXXX escapes, as a hostile client would.
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


def _injects_upstream_fault(body: Any) -> bool:
    sim = body.get("sim") if isinstance(body, dict) else None
    return isinstance(sim, dict) and ("fail_status" in sim or "fail_after_tokens" in sim)


# Bodies per kind: the valid-ish reach the upstream (and its faults), the hostile and raw
# ones must be refused cleanly. "tight" sends valid-ish bodies on a key whose budget and
# per-minute tokens run out part-way, so refusals (429, 0 tokens) mix with settlements.
KINDS: dict[str, tuple[st.SearchStrategy[Any], int, dict[str, int]]] = {
    "validish": (VALIDISH, 150, {}),
    "hostile": (HOSTILE, 120, {}),
    "raw": (RAW, 40, {}),
    "tight": (VALIDISH, 60, {"monthly_tokens": 1_200, "tpm": 600}),
    "faulty_stream": (FAULTY_STREAM, 40, {}),
    "tools": (WITH_TOOLS, 30, {}),
}


# The gateway under test serves from a thread of this process and draws from the `random`
# module (weighted P2C, the usage audit rate) while hypothesis draws a body: hypothesis sees
# the global state move during the draw and blames the strategy, which uses no `random`.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hypothesis_chat_bodies(
    kind: str,
    gateway: Gateway,
    conformance_schemas: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG", logger="gateway")
    strategy, examples, limits = KINDS[kind]
    audit = Audit.fresh(gateway, conformance_schemas, **limits)
    url = gateway.base_url + "/chat/completions"
    headers = {**audit.headers, "Content-Type": "application/json"}

    with httpx.Client(timeout=60) as http:

        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(body=strategy)
        def run(body: dict[str, Any] | bytes) -> None:
            raw = body if isinstance(body, bytes) else _encoded(body)
            response = http.post(url, content=raw, headers=headers)
            audit.check(
                status=response.status_code,
                body=response.content,
                content_type=response.headers.get("content-type", ""),
                request_id=response.headers.get("x-request-id"),
                chat=True,
                fault=_injects_upstream_fault(body),
                stop_strings=isinstance(body, dict) and bool(body.get("stop")),
                what=repr(raw[:400]),
            )

        run()

    figures = audit.settle()
    captured = capsys.readouterr()
    assert_no_secret_logged(audit.secret, caplog.records, captured.out, captured.err)
    with capsys.disabled():
        print(f"\n[hardening] hypothesis {kind} bodies: {figures}")


# --- Authorization headers: a near-miss of a real key is refused, and costs it nothing ---
def _near_misses(secret: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([secret[:-1], secret + "x", secret.upper(), secret[1:], secret * 2]),
        st.builds(lambda i, c: secret[:i] + c + secret[i + 1 :], st.integers(0, 40), TEXT),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=80),
    )


def test_hostile_authorization_headers(
    gateway: Gateway,
    conformance_schemas: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG", logger="gateway")
    audit = Audit.fresh(gateway, conformance_schemas)
    url = gateway.base_url + "/chat/completions"
    body = _encoded({"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]})
    scheme = st.sampled_from(["Bearer ", "bearer ", "Bearer", "Basic ", "", "Bearer  "])

    with httpx.Client(timeout=60) as http:

        @settings(
            max_examples=60,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(prefix=scheme, token=_near_misses(audit.secret))
        def run(prefix: str, token: str) -> None:
            value = (prefix + token).encode("utf-8", "surrogatepass").strip()
            if not value or any(byte < 0x20 or byte == 0x7F for byte in value):
                return  # not a valid HTTP header: the HTTP server refuses it, not the app
            headers = [(b"authorization", value), (b"content-type", b"application/json")]
            response = http.post(url, content=body, headers=headers)
            exact = token.strip() == audit.secret
            if not exact:
                assert response.status_code == 401, (value, response.text)
            audit.check(
                status=response.status_code,
                body=response.content,
                content_type=response.headers.get("content-type", ""),
                request_id=response.headers.get("x-request-id"),
                chat=response.status_code != 401,
                what=repr(value),
            )

        run()

    figures = audit.settle()
    captured = capsys.readouterr()
    assert_no_secret_logged(audit.secret, caplog.records, captured.out, captured.err)
    with capsys.disabled():
        print(f"\n[hardening] authorization headers: {figures}")
