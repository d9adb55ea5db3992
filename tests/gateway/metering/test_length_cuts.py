"""A choice cut by max_tokens inside a character: vLLM's incremental detokenizer holds back
the bytes of an unfinished UTF-8 character and does not send them when the choice ends
(vllm/v1/engine/detokenizer.py), yet counts their token ids. The gateway's count of such a
choice is the upstream's, to the token, streamed or not, on chat and on completions.

The simulated text has a character of three UTF-8 bytes that each family splits over
several tokens (docs/TOKENS.md, "Completion tokens"). This was the open hardening finding:
a llama3 completions stream with n=66 and logprobs=15 counted 1054 by the gateway, 1056 by
the endpoint; choice 45 of seed 0 ends inside that character at the default 16 tokens.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import TEST_MODELS, TOKENIZERS, Gateway
from tests.support.sse import events

MODELS = [pytest.param(m, marks=TOKENIZERS.marks(TEST_MODELS[m])) for m in sorted(TEST_MODELS)]
PROMPT = [{"role": "user", "content": "Tell me something."}]
# Seed 8's first choice reaches the three-byte character within its first 12 tokens in
# every family (the test checks that one of these cuts ends inside it).
SEED, CUTS = 8, range(1, 13)


def _text(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[str, str]:
    """(request id, the first choice's text), streamed or not."""
    field = "text" if path == "/completions" else "content"
    if not body.get("stream"):
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        choice = response.json()["choices"][0]
        return response.headers["x-request-id"], choice.get("text") or choice["message"][field]
    parts = []
    with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        for _, data in events(response):
            if data == "[DONE]" or not data.get("choices"):
                continue
            choice = data["choices"][0]
            part = choice.get("text") if field == "text" else choice["delta"].get("content")
            parts.append(part or "")
    return response.headers["x-request-id"], "".join(parts)


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "streamed"])
@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
@pytest.mark.parametrize("model", MODELS)
def test_cut_inside_a_character_counts_the_ids_generated(
    gateway: Gateway, model: str, path: str, stream: bool
) -> None:
    key = gateway.new_key()
    base: dict[str, Any] = {"model": model, "seed": SEED, "ignore_eos": True, "stream": stream}
    base.update(
        {"prompt": "Tell me something."} if path == "/completions" else {"messages": PROMPT}
    )
    texts: dict[int, str] = {}
    sent: dict[str, int] = {}
    with httpx.Client(
        base_url=gateway.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        for cut in CUTS:
            request_id, texts[cut] = _text(client, path, {**base, "max_tokens": cut})
            sent[request_id] = cut
    # A token with no text of its own yet: one more token generated, no more text sent.
    assert any(texts[cut] == texts[cut - 1] for cut in CUTS if cut - 1 in texts), texts
    records = {r.request_id: r for r in gateway.records(key)}
    counts = {
        cut: (records[rid].gateway_completion_tokens, records[rid].upstream_completion_tokens)
        for rid, cut in sent.items()
    }
    assert all(upstream == cut for cut, (_, upstream) in counts.items()), counts
    assert all(ours == upstream for ours, upstream in counts.values()), counts


def test_the_hardening_case_n66_logprobs_stream(gateway: Gateway) -> None:
    """The shape schemathesis generated: every choice ends at the default 16 tokens, one
    of them (45) inside the three-byte character."""
    TOKENIZERS.require(TEST_MODELS["llama3"])
    key = gateway.new_key()
    body = {"model": "llama3", "prompt": "Hi", "n": 66, "logprobs": 15, "stream": True}
    with httpx.stream(
        "POST",
        gateway.base_url + "/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        finishes = [
            c["finish_reason"]
            for _, data in events(response)
            if data != "[DONE]"
            for c in data.get("choices", [])
            if c.get("finish_reason")
        ]
    assert finishes == ["length"] * 66
    [record] = gateway.records(key)
    assert record.upstream_completion_tokens == 66 * 16
    assert record.gateway_completion_tokens == record.upstream_completion_tokens
