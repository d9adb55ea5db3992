"""The prompt is counted with what the upstream renders it with: the request's
`chat_template_kwargs` (a vLLM extension, forwarded as an extra field) besides its tools.
A request's own `chat_template` is refused, as vLLM refuses it by default.

Found by the hardening suite (tests/hardening, the `tools` kind): the gateway rendered
without the kwargs, so Qwen3 with `enable_thinking: false` was counted 4 tokens short
(132 vs 136); billed whenever the upstream reports no usage, and reserved short always.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Gateway

HI = [{"role": "user", "content": "hi"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look a word up in the dictionary. " * 10,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def post(gateway: Gateway, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json={"messages": HI, "max_tokens": 2, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("qwen3", {"tools": TOOLS}),
        ("qwen3", {"chat_template_kwargs": {"enable_thinking": False}}),
        ("qwen3", {"tools": TOOLS, "chat_template_kwargs": {"enable_thinking": False}}),
    ],
)
def test_gateway_count_matches_upstream_with_tools_and_template_kwargs(
    gateway: Gateway, model: str, extra: dict[str, Any]
) -> None:
    key = gateway.new_key()
    reported = post(gateway, key, model=model, **extra)
    counted = post(gateway, key, model=model, sim={"omit_usage": True}, **extra)
    plain = post(gateway, key, model=model)
    assert reported.status_code == counted.status_code == plain.status_code == 200
    upstream = reported.json()["usage"]["prompt_tokens"]
    # the simulated endpoint renders with transformers' apply_chat_template, as vLLM does
    assert counted.json()["usage"]["prompt_tokens"] == upstream
    assert upstream != plain.json()["usage"]["prompt_tokens"]
    first = gateway.records(key)[0]
    assert first.gateway_prompt_tokens == first.upstream_prompt_tokens == upstream


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"chat_template": "{{ messages }}"}, "chat_template"),
        ({"chat_template_kwargs": {"chat_template": "{{ messages }}"}}, "chat_template"),
        ({"chat_template_kwargs": ["x"]}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"messages": []}}, "messages"),
    ],
)
def test_template_inputs_the_gateway_cannot_count_are_refused(
    gateway: Gateway, extra: dict[str, Any], param: str
) -> None:
    key = gateway.new_key()
    response = post(gateway, key, model="qwen3", **extra)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    [record] = gateway.records(key)
    assert record.status == "rejected" and record.total_tokens == 0
