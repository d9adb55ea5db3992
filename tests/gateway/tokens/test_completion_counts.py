"""Completion tokens: the gateway's own count of a finished completion equals the number of
token ids the simulated endpoint generated (its reported `completion_tokens`, EOS included
on a natural stop), for every family, streamed and not, and cut by max_tokens, by a stop
string or by a client disconnect."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_MODELS, TOKENIZERS, Gateway
from tests.support.sse import events, is_content

# Each model's tests skip, with the reason, where its tokenizer family is absent.
MODELS = [pytest.param(m, marks=TOKENIZERS.marks(TEST_MODELS[m])) for m in sorted(TEST_MODELS)]
PROMPT = [{"role": "user", "content": "Tell me something."}]
CUTS = (1, 2, 3, 4, 5, 7, 9, 12, 17, 23, 31, 40)


def _send(client: httpx.Client, body: dict[str, Any]) -> tuple[str, str]:
    """POST a chat request; return (request id, generated text)."""
    if not body.get("stream"):
        response = client.post("/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response.headers["x-request-id"], response.json()["choices"][0]["message"]["content"]
    with client.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        text = "".join(
            data["choices"][0]["delta"]["content"]
            for _, data in events(response)
            if is_content(data)
        )
        return response.headers["x-request-id"], text


def _bodies(model: str, stop_word: str) -> list[dict[str, Any]]:
    base = {"model": model, "messages": PROMPT}
    bodies: list[dict[str, Any]] = []
    for stream in (False, True):
        mode = {**base, "stream": stream}
        bodies.append({**mode, "seed": 3})  # natural stop: EOS counted
        bodies.append({**mode, "seed": 5, "sim": {"completion_tokens": 9}})
        bodies.append({**mode, "stop": [stop_word]})  # cut by a stop string
        bodies += [{**mode, "seed": 7, "max_tokens": n, "ignore_eos": True} for n in CUTS]
    return bodies


@pytest.mark.parametrize("model", MODELS)
def test_completion_counts_equal_generated_ids(gateway: Gateway, model: str) -> None:
    key = gateway.new_key()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as client:
        _, text = _send(client, {"model": model, "messages": PROMPT})
        stop_word = " " + text.split()[6]
        sent = {}
        for body in _bodies(model, stop_word):
            request_id, text = _send(client, body)
            sent[request_id] = body
    records = {r.request_id: r for r in gateway.records(key)}
    wrong = []
    for request_id, body in sent.items():
        record = records[request_id]
        if record.gateway_completion_tokens != record.upstream_completion_tokens:
            wrong.append(
                (body, record.gateway_completion_tokens, record.upstream_completion_tokens)
            )
        if "max_tokens" in body:
            assert record.upstream_completion_tokens == body["max_tokens"]
            assert record.finish_reason == "length"
    assert wrong == []
    assert any(r.finish_reason == "stop" for r in records.values())


@pytest.mark.parametrize("model", MODELS)
def test_disconnect_bills_the_ids_generated_before_it(
    gateway: Gateway, sim_url: str, model: str
) -> None:
    """A client leaves mid-stream: the record bills the gateway's count of what the endpoint
    had sent, and a non-streamed request for that many tokens of the same completion is
    that text: the endpoint generated exactly that many ids for it."""
    key = gateway.new_key()
    body = {
        "model": model,
        "messages": PROMPT,
        "stream": True,
        "seed": 11,
        "max_tokens": 200,
        "ignore_eos": True,
        "sim": {"tpot_ms": 15},
    }
    received = ""
    with gateway.stream_chat(key, body) as response:
        for _, data in events(response):
            if is_content(data):
                received += data["choices"][0]["delta"]["content"]
            if len(received) > 20:
                break
    deadline = time.monotonic() + 5
    while not gateway.records(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = gateway.records(key)
    assert record.status == "client_disconnected"
    billed = record.gateway_completion_tokens
    assert record.completion_tokens == billed and 0 < billed < 200

    same = {k: v for k, v in body.items() if k not in ("stream", "sim")}
    upstream = httpx.post(
        sim_url + "/v1/chat/completions",
        json={**same, "model": TEST_MODELS[model], "max_tokens": billed},
        timeout=30,
    ).json()
    assert upstream["usage"]["completion_tokens"] == billed
    assert upstream["choices"][0]["message"]["content"].startswith(received)
    # and the gateway counts that text as exactly `billed` tokens
    check = gateway.new_key()
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        client.post(
            "/chat/completions",
            json={**same, "max_tokens": billed},
            headers={"Authorization": f"Bearer {check}"},
        )
    [again] = gateway.records(check)
    assert again.gateway_completion_tokens == again.upstream_completion_tokens == billed
