"""The completions surface through the pipeline over fakes: the text_completion body and stream, one record on the
"completions" route, the upstream body (max_tokens 16 by default, usage always asked for
on streams), prompts counted with special tokens, and the context check naming `prompt`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from gateway.backends.wire import WireRoute
from gateway.completions.protocol import CompletionRequest
from gateway.completions.service import (
    DEFAULT_MAX_TOKENS,
    CompletionSurface,
    prompt_counts,
)
from gateway.errors import InvalidRequestError
from gateway.generation import check_context_length
from gateway.pipeline.sse import DONE_FRAME

from tests.unit.fakes import (
    FakeBackend,
    FakeTokenizers,
    RecordingSink,
    Served,
    api_key,
    model,
    pipeline,
)

pytestmark = pytest.mark.anyio

UPSTREAM = {
    "id": "cmpl-upstream",
    "object": "text_completion",
    "model": "served/name",
    "choices": [
        {"index": 0, "text": "hello there", "finish_reason": "length", "stop_reason": None}
    ],
    "usage": {"prompt_tokens": 4, "completion_tokens": 2},
}


def service(
    backend: FakeBackend, sink: RecordingSink, routes: list[WireRoute] | None = None, **cfg: Any
) -> Served:
    surface = CompletionSurface(default_max_tokens=100)
    return Served(pipeline(model(**cfg), sink, backend, routes=routes), surface)


def body(**fields: Any) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return orjson.dumps({"model": "m", "prompt": "say hi", **fields})

    return read


def request(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "say hi", **fields})


async def test_create_returns_a_text_completion_and_one_record() -> None:
    backend, sink = FakeBackend(body=UPSTREAM), RecordingSink()
    routes: list[WireRoute] = []
    # UPSTREAM's choice is cut by max_tokens at its 2 tokens, as vLLM cuts it
    served = service(backend, sink, routes)
    result = await served.create(body(max_tokens=2), key=api_key(), request_id="r")
    assert result.body == {
        "id": "cmpl-r",
        "object": "text_completion",
        "created": result.body["created"],  # type: ignore[index]
        "model": "m",
        "choices": [
            {"index": 0, "text": "hello there", "logprobs": None, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }
    [record] = sink.records
    assert (record.route, record.status, record.stream) == ("completions", "completed", False)
    assert (record.gateway_prompt_tokens, record.gateway_completion_tokens) == (3, 2)  # BOS
    assert [r.name for r in routes] == ["completions"]
    [sent] = backend.sent
    assert (sent["prompt"], sent["max_tokens"], "stream_options" in sent) == ("say hi", 2, False)


async def test_a_stream_with_include_usage_ends_with_a_text_completion_usage_chunk() -> None:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "text": "hello", "finish_reason": None}]},
        {"choices": [{"index": 0, "text": " there", "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
    ]
    backend, sink = FakeBackend(chunks=chunks), RecordingSink()
    result = await service(backend, sink).create(
        body(stream=True, stream_options={"include_usage": True}), key=api_key(), request_id="r"
    )
    assert result.stream is not None and result.body is None
    events = [e for e in b"".join([w async for w in result.stream]).split(b"\n\n") if e]
    assert events[-1] + b"\n\n" == DONE_FRAME
    texts = [orjson.loads(e[6:]) for e in events[:-2]]
    assert [t["choices"][0]["text"] for t in texts] == ["hello", " there"]
    for text in texts:
        assert (text["id"], text["object"], text["model"]) == ("cmpl-r", "text_completion", "m")
        assert "usage" not in text  # as vLLM's text_completion chunks: no `usage: null`
    usage = orjson.loads(events[-2][6:])
    assert (usage["object"], usage["choices"], usage["id"]) == ("text_completion", [], "cmpl-r")
    assert usage["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    [record] = sink.records
    assert (record.route, record.stream, record.status) == ("completions", True, "completed")
    assert record.finish_reason == "stop" and backend.closed == 1
    assert backend.sent[0]["stream_options"] == {"include_usage": True}


async def test_a_stream_without_include_usage_sends_no_usage_chunk_but_asks_upstream() -> None:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}},
    ]
    backend, sink = FakeBackend(chunks=chunks), RecordingSink()
    result = await service(backend, sink).create(body(stream=True), key=api_key(), request_id="r")
    assert result.stream is not None
    events = [e for e in b"".join([w async for w in result.stream]).split(b"\n\n") if e]
    assert len(events) == 2 and events[1] + b"\n\n" == DONE_FRAME
    assert orjson.loads(events[0][6:])["choices"][0]["text"] == "hi"
    assert backend.sent[0]["stream_options"] == {"include_usage": True}
    [record] = sink.records
    assert (record.prompt_tokens, record.upstream_completion_tokens) == (4, 1)


async def test_a_prompt_over_the_context_is_refused_before_forwarding() -> None:
    backend, sink = FakeBackend(body=UPSTREAM), RecordingSink()
    with pytest.raises(InvalidRequestError) as raised:
        await service(backend, sink, max_model_len=8).create(
            body(prompt="one two three four five", max_tokens=5), key=api_key(), request_id="r"
        )
    assert (raised.value.param, raised.value.code) == ("prompt", "context_length_exceeded")
    assert backend.sent == [] and [r.status for r in sink.records] == ["rejected"]


def test_upstream_body_defaults_max_tokens_to_16_capped_by_the_model() -> None:
    svc = service(FakeBackend(), RecordingSink())
    plain = svc.upstream_body(request(), model(), longest_prompt=3)
    assert plain["max_tokens"] == DEFAULT_MAX_TOKENS == 16
    assert plain["model"] == "m" and plain["prompt"] == "say hi"
    assert svc.upstream_body(request(), model(max_tokens=10), longest_prompt=3)["max_tokens"] == 10
    # never past the context length
    near = svc.upstream_body(request(), model(max_model_len=20), longest_prompt=15)
    assert near["max_tokens"] == 5
    # the request's own max_tokens, capped by the model's (else the service's default cap)
    asked = request(max_tokens=500)
    assert svc.upstream_body(asked, model(max_tokens=50), longest_prompt=3)["max_tokens"] == 50
    assert svc.upstream_body(asked, model(), longest_prompt=3)["max_tokens"] == 100
    assert svc.upstream_body(request(max_tokens=7), model(), longest_prompt=3)["max_tokens"] == 7


def test_upstream_body_forces_include_usage_on_streams_only() -> None:
    svc = service(FakeBackend(), RecordingSink())
    streamed = request(stream=True, stream_options={"include_usage": False, "extra": 1})
    sent = svc.upstream_body(streamed, model(), longest_prompt=3)
    assert sent["stream_options"] == {"include_usage": True, "extra": 1}
    assert svc.upstream_body(request(stream=True), model(), longest_prompt=3)["stream_options"] == {
        "include_usage": True
    }
    assert "stream_options" not in svc.upstream_body(request(), model(), longest_prompt=3)
    # unknown fields (vLLM's sampling extras) go through; unset ones are not invented
    extra = svc.upstream_body(request(min_p=0.1), model(), longest_prompt=3)
    assert extra["min_p"] == 0.1 and "temperature" not in extra


@pytest.mark.parametrize(
    ("prompt", "counts"),
    [
        ("x y z", [4]),  # words + BOS
        (["a b", "c"], [3, 2]),
        ([5, 6, 7], [3]),  # token ids: their length, no BOS added
        ([[1, 2, 3], [4]], [3, 1]),
    ],
)
async def test_prompt_counts_texts_with_special_tokens_and_token_ids_by_length(
    prompt: Any, counts: list[int]
) -> None:
    tokenizer: Any = FakeTokenizers().tokenizer
    assert await prompt_counts(tokenizer, request(prompt=prompt)) == counts


async def test_several_prompts_bill_their_sum() -> None:
    backend, sink = FakeBackend(body={"choices": [{"text": "a"}, {"text": "b"}]}), RecordingSink()
    await service(backend, sink).create(body(prompt=["a b", "c"]), key=api_key(), request_id="r")
    [record] = sink.records
    assert record.prompt_tokens == 3 + 2 and record.completion_tokens == 2


def test_the_context_check_names_the_prompt() -> None:
    check_context_length(
        model(max_model_len=10), prompt_tokens=5, body={"max_tokens": 5}, param="prompt"
    )
    check_context_length(
        model(), prompt_tokens=10**6, body={"max_tokens": 5}, param="prompt"
    )  # no limit known
    with pytest.raises(InvalidRequestError) as raised:
        check_context_length(
            model(max_model_len=10), prompt_tokens=6, body={"max_tokens": 5}, param="prompt"
        )
    error = raised.value
    assert (error.status_code, error.param, error.code) == (
        400,
        "prompt",
        "context_length_exceeded",
    )
    assert "maximum context length is 10 tokens" in error.message
    with pytest.raises(InvalidRequestError):  # the prompt alone fills the context
        check_context_length(model(max_model_len=10), prompt_tokens=10, body={}, param="prompt")
