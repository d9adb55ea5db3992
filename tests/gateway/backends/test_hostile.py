"""Upstream replies are untrusted input: each malformed or abusive reply a model server
can send ends in OpenAI's error format and exactly one usage record, never a 500, a
silent end of stream, a negative bill, or the upstream's own words reaching the client.

Each scenario is a reproduction from the hardening issue; on the code before the Meter
they cut streams silently, left no record, billed negative usage or leaked text."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Gateway, running_gateway
from tests.support.hostile import LEAK, HostileUpstream
from tests.support.schemas import validate
from tests.support.servers import serve_asgi
from tests.support.sse import events
from tests.support.stall import longest_stall

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[str, HostileUpstream]]:
    app = HostileUpstream()
    with serve_asgi(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def gw(
    dynamodb: str, tokenizers_dir: Path, hostile: tuple[str, HostileUpstream]
) -> Iterator[Gateway]:
    url, _ = hostile
    config = {
        "models": [
            {"id": "hostile", "tokenizer": "qwen3", "upstream": {"type": "openai", "base_url": url}}
        ]
    }
    with running_gateway(tokenizers_dir, url, models_config=json.dumps(config)) as gateway:
        yield gateway


def _post(gw: Gateway, key: str, scenario: str, *, stream: bool) -> httpx.Response:
    body = {"model": "hostile", "messages": HI, "stream": stream, "hostile": scenario}
    return httpx.post(
        gw.base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


@pytest.mark.parametrize(
    "scenario",
    [
        "list_event",
        "string_choice",
        "string_delta",
        "list_index",
        "int_content",
        "huge_event",
        "not_json",
        "usage_only",
    ],
)
def test_malformed_stream_ends_with_error_event_and_one_record(
    gw: Gateway, conformance_schemas: Path, scenario: str
) -> None:
    key = gw.new_key()
    with gw.stream_chat(
        key, {"model": "hostile", "messages": HI, "stream": True, "hostile": scenario}
    ) as response:
        assert response.status_code == 200
        received = [data for _, data in events(response)]
    assert "[DONE]" not in received
    last = received[-1]
    validate(conformance_schemas, "ErrorResponse", last)
    assert last["error"]["type"] == "upstream_error"
    [record] = gw.records(key)
    assert record.status == "upstream_error" and record.http_status == 502
    if scenario != "usage_only":  # the good chunks before the bad one are billed
        assert record.completion_tokens == record.gateway_completion_tokens > 0
        assert record.prompt_tokens == record.gateway_prompt_tokens > 0


def test_json_body_where_a_stream_was_asked_is_an_error(gw: Gateway) -> None:
    key = gw.new_key()
    with gw.stream_chat(
        key, {"model": "hostile", "messages": HI, "stream": True, "hostile": "json_for_stream"}
    ) as response:
        received = [data for _, data in events(response)]
    assert received == []  # refused before the response started: a 502, not a 200
    assert response.status_code == 502
    [record] = gw.records(key)
    assert (record.status, record.total_tokens) == ("upstream_error", 0)


@pytest.mark.parametrize("scenario", ["string_choice", "int_content", "gzip_bomb"])
def test_malformed_body_is_502_with_one_record(
    gw: Gateway, conformance_schemas: Path, scenario: str
) -> None:
    key = gw.new_key()
    response = _post(gw, key, scenario, stream=False)
    assert response.status_code == 502, response.text
    validate(conformance_schemas, "ErrorResponse", response.json())
    [record] = gw.records(key)
    assert (record.status, record.total_tokens) == ("upstream_error", 0)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("scenario", ["negative_usage", "bool_usage"])
def test_insane_upstream_usage_is_ignored_and_flagged(
    gw: Gateway, scenario: str, stream: bool
) -> None:
    key = gw.new_key()
    if stream:
        with gw.stream_chat(
            key, {"model": "hostile", "messages": HI, "stream": True, "hostile": scenario}
        ) as response:
            received = [data for _, data in events(response)]
        assert received[-1] == "[DONE]"
    else:
        response = _post(gw, key, scenario, stream=False)
        assert response.status_code == 200
        usage = response.json()["usage"]
        assert usage["prompt_tokens"] > 0
    [record] = gw.records(key)
    assert record.status == "completed"
    assert record.upstream_prompt_tokens is None  # ignored: the gateway's count is billed
    assert record.prompt_tokens == record.gateway_prompt_tokens > 0
    assert record.completion_tokens == record.gateway_completion_tokens > 0
    assert record.flags == "upstream_usage_invalid"


@pytest.mark.parametrize(("scenario", "status"), [("leaky_error", 502), ("leaky_400", 400)])
def test_upstream_error_text_never_reaches_the_client(
    gw: Gateway,
    conformance_schemas: Path,
    scenario: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = gw.new_key()
    for stream in (False, True):
        response = _post(gw, key, scenario, stream=stream)
        assert response.status_code == status
        validate(conformance_schemas, "ErrorResponse", response.json())
        assert "LEAKED" not in response.text and "secret-path" not in response.text
    assert LEAK not in caplog.text  # logged at DEBUG only, which is off by default
    records = gw.records(key)
    assert len(records) == 2 and all(LEAK not in (r.error or "") for r in records)


def test_redirects_are_not_followed(gw: Gateway, hostile: tuple[str, HostileUpstream]) -> None:
    _, app = hostile
    key = gw.new_key()
    before = app.landed
    response = _post(gw, key, "redirect", stream=False)
    assert response.status_code == 502
    assert app.landed == before  # the body (and any upstream key) was not re-sent
    [record] = gw.records(key)
    assert record.status == "upstream_error"


@pytest.mark.parametrize("case", ["huge_completion", "huge_prompt"])
def test_huge_bodies_are_counted_without_stalling_other_requests(gw: Gateway, case: str) -> None:
    """A 10 MB completion and a 3.8 MB prompt are tokenized without stalling the event
    loop: /health never waits more than a small part of the big request.

    Measured here (/health's longest wait, of the request's time): 0.5 s of 15 s and
    0.02 s of 3.3 s. With the count in a worker thread but through `Tokenizer.encode`,
    which holds the GIL: 21 s of 22 s and 4.8 s of 5.2 s. With the count on the loop
    itself: 13 s of 14.5 s and 3.2 s of 3.3 s."""
    key = gw.new_key()
    prompt = "hi" if case == "huge_completion" else " ".join(f"p{i}" for i in range(450_000))
    scenario = "huge_completion" if case == "huge_completion" else "small"
    body = {
        "model": "hostile",
        "messages": [{"role": "user", "content": prompt}],
        "hostile": scenario,
    }

    def send() -> httpx.Response:
        return httpx.post(
            gw.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=120,
        )

    # The gateway runs in this process (serve_asgi): a count that holds the GIL stalls
    # this poller, and one that blocks the event loop holds back the /health in flight.
    with httpx.Client(base_url=gw.url, timeout=120) as client:
        client.get("/health")  # connected before the clock starts

        def health() -> None:
            assert client.get("/health").status_code == 200
            time.sleep(0.002)

        response, in_flight, longest = longest_stall(send, health)
    assert response.status_code == 200
    assert longest < in_flight / 4, f"/health waited {longest:.2f} s of {in_flight:.2f} s"
    [record] = gw.records(key)
    counted = (
        record.gateway_completion_tokens
        if case == "huge_completion"
        else record.gateway_prompt_tokens
    )
    assert counted is not None and counted > 500_000
