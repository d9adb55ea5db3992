"""The developer role, response_format, logprobs, image parts, upstream Retry-After and the
context-length check, through the official `openai` client, against OpenAI's schemas."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Gateway
from tests.gateway.chat import tools_support as ts
from tests.support.schemas import validate

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
# gpusim's prompt tokens per image part of a multimodal model (its processor's expansion).
SIM_IMAGE_TOKENS = 256


def _post(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _sim_requests(sim_url: str) -> int:
    return int(httpx.get(sim_url + "/sim/stats").json()["requests"])


def test_developer_role_is_rendered_and_forwarded_as_system(
    gw: Gateway, tokenizers_dir: Path
) -> None:
    key = gw.new_key()
    completion = ts.client(gw, key).chat.completions.create(
        model="qwen3",
        messages=[
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": "Colour of the sky?"},
        ],
        max_tokens=3,
    )
    as_system = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Colour of the sky?"},
    ]
    expected = ts.reference_prompt_tokens(tokenizers_dir / "qwen3", as_system, None)
    assert completion.usage is not None and completion.usage.prompt_tokens == expected
    [record] = gw.records(key)
    # The upstream rendered the same system turn (a `developer` role would render nothing
    # in Qwen's template, and count fewer tokens).
    assert record.upstream_prompt_tokens == record.gateway_prompt_tokens == expected


@pytest.mark.parametrize("stream", [False, True])
def test_response_format_json_object(gw: Gateway, conformance_schemas: Path, stream: bool) -> None:
    key = gw.new_key()
    body: dict[str, Any] = {
        "model": "llama3",
        "messages": [{"role": "user", "content": "Give me JSON."}],
        "response_format": {"type": "json_object"},
    }
    if stream:
        chunks, _ = ts.stream(gw, key, body, conformance_schemas)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    else:
        response = _post(gw, key, body)
        validate(conformance_schemas, "CreateChatCompletionResponse", response.json())
        text = response.json()["choices"][0]["message"]["content"]
    assert isinstance(json.loads(text), dict)


def test_response_format_json_schema_is_forwarded(gw: Gateway) -> None:
    key = gw.new_key()
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}}
    completion = ts.client(gw, key).chat.completions.create(
        model="qwen3",
        messages=[{"role": "user", "content": "Colour?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )
    assert set(json.loads(completion.choices[0].message.content or "")) == {"colour"}


def test_logprobs(gw: Gateway, conformance_schemas: Path) -> None:
    key = gw.new_key()
    body = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "logprobs": True,
        "top_logprobs": 3,
    }
    response = _post(gw, key, body)
    data = response.json()
    validate(conformance_schemas, "CreateChatCompletionResponse", data)
    entries = data["choices"][0]["logprobs"]["content"]
    assert len(entries) == 5 and all(len(e["top_logprobs"]) == 3 for e in entries)
    assert "".join(e["token"] for e in entries) == data["choices"][0]["message"]["content"]
    parsed = ts.client(gw, key).chat.completions.create(**body)  # type: ignore[arg-type]
    assert parsed.choices[0].logprobs and len(parsed.choices[0].logprobs.content or []) == 5

    chunks, _ = ts.stream(gw, key, body, conformance_schemas)
    streamed = [
        e
        for c in chunks
        for ch in c["choices"]
        for e in (ch["logprobs"] or {}).get("content") or []
    ]
    assert len(streamed) == 5


def test_image_part_to_a_multimodal_model(gw: Gateway, tokenizers_dir: Path) -> None:
    key = gw.new_key()
    c = ts.client(gw, key)
    text = "What is in this picture?"
    messages: Any = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                IMAGE,
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        }
    ]
    completion = c.chat.completions.create(model="qwen3", messages=messages, max_tokens=4)
    text_only = ts.reference_prompt_tokens(
        tokenizers_dir / "qwen3", [{"role": "user", "content": text}], None
    )
    upstream_prompt = text_only + 2 * SIM_IMAGE_TOKENS
    assert completion.usage is not None and completion.usage.prompt_tokens == upstream_prompt
    [record] = gw.records(key)
    assert record.prompt_tokens == record.upstream_prompt_tokens == upstream_prompt
    assert record.gateway_prompt_tokens == text_only  # the gateway counts text only
    assert record.media_parts == 2 and record.prompt_estimated is False

    # No usage from the upstream: billed at the gateway's text count plus the documented
    # per-image estimate, and flagged.
    from gateway.metering.media import MEDIA_TOKEN_ESTIMATE

    key2 = gw.new_key()
    ts.client(gw, key2).chat.completions.create(
        model="qwen3", messages=messages, max_tokens=4, extra_body={"sim": {"omit_usage": True}}
    )
    [estimated] = gw.records(key2)
    assert estimated.upstream_prompt_tokens is None
    assert estimated.prompt_tokens == text_only + 2 * MEDIA_TOKEN_ESTIMATE["image"]
    assert estimated.media_parts == 2 and estimated.prompt_estimated is True


@pytest.mark.parametrize("part", [IMAGE, AUDIO], ids=["image_url", "input_audio"])
def test_media_part_to_a_text_only_model_is_400(
    gw: Gateway, conformance_schemas: Path, mm_sim_url: str, part: dict[str, Any]
) -> None:
    key = gw.new_key()
    before = _sim_requests(mm_sim_url)
    with pytest.raises(openai.BadRequestError) as raised:
        ts.client(gw, key).chat.completions.create(
            model="llama3",
            messages=[{"role": "user", "content": [{"type": "text", "text": "see"}, part]}],  # type: ignore[list-item]
        )
    body = raised.value.response.json()
    validate(conformance_schemas, "ErrorResponse", body)
    message = body["error"]["message"]
    assert "`llama3`" in message and part["type"] in message
    assert "messages[0].content[1]" in message
    assert _sim_requests(mm_sim_url) == before
    # refused before the upstream: one `rejected` record, nothing billed
    assert [(r.status, r.total_tokens) for r in gw.records(key)] == [("rejected", 0)]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "tool", "content": "x"}]},  # no tool_call_id
        {"messages": [{"role": "assistant"}]},  # neither content nor tool_calls
        {"tool_choice": "required"},  # tool_choice without tools
        {"tools": ts.TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                }
            ]
        },
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
        {"response_format": {"type": "xml"}},
        {"top_logprobs": 3},  # without logprobs
        {"tools": ts.TOOLS, "functions": [ts.CLOCK["function"]]},
    ],
)
def test_invalid_tool_and_content_shapes_are_400(
    gw: Gateway, conformance_schemas: Path, body: dict[str, Any]
) -> None:
    key = gw.new_key()
    full = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], **body}
    response = _post(gw, key, full)
    assert response.status_code == 400, response.text
    validate(conformance_schemas, "ErrorResponse", response.json())
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [429, 503])
def test_upstream_retry_after_reaches_the_client(
    gw: Gateway, conformance_schemas: Path, status: int, stream: bool
) -> None:
    key = gw.new_key()
    body = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
        "sim": {"fail_status": status, "retry_after": 7},
    }
    response = _post(gw, key, body)
    assert response.status_code == status, response.text
    assert response.headers["retry-after"] == "7"
    validate(conformance_schemas, "ErrorResponse", response.json())
    [record] = gw.records(key)
    assert record.http_status == status and record.status == "upstream_error"


def test_upstream_503_without_retry_after_is_still_502(gw: Gateway) -> None:
    key = gw.new_key()
    body = {
        "model": "qwen3",
        "messages": [{"role": "user", "content": "hi"}],
        "sim": {"fail_status": 503},
    }
    assert _post(gw, key, body).status_code == 502


def test_openai_client_sees_retry_after(gw: Gateway) -> None:
    key = gw.new_key()
    with pytest.raises(openai.RateLimitError) as raised:
        ts.client(gw, key).chat.completions.create(
            model="qwen3",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"sim": {"fail_status": 429, "retry_after": 7}},
        )
    assert raised.value.response.headers["retry-after"] == "7"


def test_context_overflow_is_400_and_never_reaches_the_upstream(
    gw: Gateway, conformance_schemas: Path, mm_sim_url: str, tokenizers_dir: Path
) -> None:
    key = gw.new_key()
    messages = [{"role": "user", "content": "Tell me about lighthouses."}]
    prompt = ts.reference_prompt_tokens(tokenizers_dir / "qwen3", messages, ts.TOOLS)
    room = ts.SMALL_CONTEXT - prompt
    assert room > 0
    before = _sim_requests(mm_sim_url)
    body = {"model": "qwen3-small", "messages": messages, "tools": ts.TOOLS}
    over = _post(gw, key, {**body, "max_tokens": room + 1})
    assert over.status_code == 400, over.text
    validate(conformance_schemas, "ErrorResponse", over.json())
    error = over.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["message"].startswith(
        f"This model's maximum context length is {ts.SMALL_CONTEXT} tokens. However, you "
        f"requested {room + 1} output tokens and your prompt contains at least {prompt} input "
        "tokens"
    )
    assert _sim_requests(mm_sim_url) == before
    # refused before the upstream: one `rejected` record, nothing billed
    assert [(r.status, r.total_tokens) for r in gw.records(key)] == [("rejected", 0)]
    fits = _post(gw, key, {**body, "max_tokens": room})
    assert fits.status_code == 200, fits.text
    assert _sim_requests(mm_sim_url) == before + 1


def test_openapi_documents_roles_and_tool_fields(gw: Gateway) -> None:
    spec = json.dumps(httpx.get(gw.url + "/openapi.json").json())
    for word in ("developer", "tool_call_id", "tool_calls", "image_url", "input_audio"):
        assert f'"{word}"' in spec
    for field in ("tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs"):
        assert f'"{field}"' in spec
