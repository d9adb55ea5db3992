"""The chat surface through the pipeline over fakes: bodies, streams, refusals, faults and cancellation,
each leaving exactly one record."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import orjson
import pytest
from gateway.chat.protocol import ChatCompletionRequest
from gateway.chat.service import ChatSurface, prompt_lower_bound
from gateway.errors import (
    InternalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamError,
)
from gateway.limits import Admission
from gateway.pipeline.sse import DONE_FRAME

from tests.unit.fakes import (
    FakeBackend,
    FakeTokenizer,
    FakeTokenizers,
    RecordingSink,
    Served,
    api_key,
    chunk,
    model,
    pipeline,
)

pytestmark = pytest.mark.anyio
HI = [{"role": "user", "content": "hi there"}]
CHAT = ChatSurface(default_max_tokens=100)


class FakeLimits:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.reserved: list[int] = []

    def plan(self, *, key: Any, reserve_tokens: int, request_id: str) -> Admission:
        return Admission(key_id=key.key_id, reserved_tokens=reserve_tokens)

    async def admit_planned(self, *, key: Any, planned: Admission) -> Admission:
        if self.refuse:
            raise RateLimitError("slow down", headers={"Retry-After": "1"})
        self.reserved.append(planned.reserved_tokens)
        return Admission(
            key_id=key.key_id, reserved_tokens=planned.reserved_tokens, headers={"x": "1"}
        )


def service(
    backend: FakeBackend, sink: RecordingSink, *, limits: FakeLimits | None = None, **cfg: Any
) -> Served:
    return Served(pipeline(model(**cfg), sink, backend, limits=limits), CHAT)


def body(**fields: Any) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return orjson.dumps({"model": "m", "messages": HI, **fields})

    return read


COMPLETION = {
    "choices": [{"index": 0, "message": {"content": "hello you"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 6, "completion_tokens": 3},
}


async def test_create_returns_a_completion_and_one_record() -> None:
    backend, sink = FakeBackend(body=COMPLETION), RecordingSink()
    result = await service(backend, sink).create(body(), key=api_key(), request_id="r")
    assert result.body is not None
    assert result.body["id"] == "chatcmpl-r" and result.body["model"] == "m"
    assert result.body["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}
    [record] = sink.records
    assert (record.status, record.gateway_prompt_tokens) == ("completed", 4)
    assert backend.sent[0]["max_tokens"] == 100  # decided once: the default cap


async def test_stream_relays_frames_then_usage_then_done() -> None:
    chunks = [chunk("a"), chunk("b", finish="stop"), {"choices": [], "usage": COMPLETION["usage"]}]
    backend, sink = FakeBackend(chunks=chunks), RecordingSink()
    result = await service(backend, sink).create(
        body(stream=True, stream_options={"include_usage": True}), key=api_key(), request_id="r"
    )
    assert result.stream is not None
    writes = [frame async for frame in result.stream]
    # One write may carry several events (the usage chunk and [DONE] go together).
    frames = [event + b"\n\n" for event in b"".join(writes).split(b"\n\n") if event]
    assert frames[-1] == DONE_FRAME
    usage = orjson.loads(frames[-2][6:])
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 9
    first = orjson.loads(frames[0][6:])
    assert (first["id"], first["object"], first["usage"]) == (
        "chatcmpl-r",
        "chat.completion.chunk",
        None,
    )
    assert [r.status for r in sink.records] == ["completed"] and backend.closed == 1
    assert backend.sent[0]["stream_options"] == {"include_usage": True}


async def test_a_stream_closed_mid_way_bills_what_was_seen_once() -> None:
    backend, sink = FakeBackend(chunks=[chunk("a b"), chunk("c"), chunk("d")]), RecordingSink()
    result = await service(backend, sink).create(body(stream=True), key=api_key(), request_id="r")
    assert result.stream is not None
    await result.stream.__anext__()
    await result.stream.aclose()  # type: ignore[attr-defined]
    [record] = sink.records
    assert (record.status, record.http_status, record.completion_tokens) == (
        "client_disconnected",
        499,
        2,
    )
    assert backend.closed == 1


async def test_a_stream_closed_before_its_first_frame_still_records_and_closes() -> None:
    backend, sink = FakeBackend(chunks=[chunk("a")]), RecordingSink()
    result = await service(backend, sink).create(body(stream=True), key=api_key(), request_id="r")
    assert result.stream is not None
    await result.stream.aclose()  # type: ignore[attr-defined]
    assert [r.status for r in sink.records] == ["client_disconnected"]


async def test_an_upstream_failure_mid_stream_is_one_error_event_and_record() -> None:
    backend = FakeBackend(
        chunks=[chunk("a"), chunk("b")], fail_after=1, fail_with=UpstreamError("dropped")
    )
    sink = RecordingSink()
    result = await service(backend, sink).create(body(stream=True), key=api_key(), request_id="r")
    assert result.stream is not None
    frames = [frame async for frame in result.stream]
    assert b'"error"' in frames[-1] and DONE_FRAME not in frames
    assert [r.status for r in sink.records] == ["upstream_error"]


@pytest.mark.parametrize(
    ("read", "error"),
    [
        (body(messages=[]), InvalidRequestError),
        (body(model="nope"), NotFoundError),
        (body(messages=[{"role": "user", "content": "raise"}]), InvalidRequestError),
    ],
)
async def test_refusals_raise_and_leave_a_rejected_record(read: Any, error: type) -> None:
    backend, sink = FakeBackend(body=COMPLETION), RecordingSink()
    with pytest.raises(error):
        await service(backend, sink).create(read, key=api_key(), request_id="r")
    assert [(r.status, r.total_tokens) for r in sink.records] == [("rejected", 0)]
    assert backend.sent == []


async def test_a_key_that_may_not_use_the_model_is_403_without_echoing_long_names() -> None:
    sink = RecordingSink()
    svc = service(FakeBackend(body=COMPLETION), sink)
    with pytest.raises(PermissionDeniedError):
        await svc.create(body(), key=api_key(models=("other",)), request_id="r")
    with pytest.raises(NotFoundError) as raised:
        await svc.create(body(model="x" * 200), key=api_key(), request_id="r2")
    assert len(raised.value.message) < 150


async def test_a_bug_is_an_internal_error_with_a_record() -> None:
    backend, sink = FakeBackend(error=RuntimeError("bug")), RecordingSink()
    with pytest.raises(InternalError):
        await service(backend, sink).create(body(), key=api_key(), request_id="r")
    assert [r.status for r in sink.records] == ["internal_error"]


async def test_limits_reserve_the_worst_case_and_refusals_are_recorded() -> None:
    limits, sink = FakeLimits(), RecordingSink()
    svc = service(FakeBackend(body=COMPLETION), sink, limits=limits)
    result = await svc.create(body(max_tokens=7, n=2), key=api_key(rpm=5), request_id="r")
    assert limits.reserved == [4 + 7 * 2] and result.headers == {"x": "1"}
    refused = service(FakeBackend(body=COMPLETION), sink, limits=FakeLimits(refuse=True))
    with pytest.raises(RateLimitError):
        await refused.create(body(), key=api_key(rpm=5), request_id="r2")
    assert [r.status for r in sink.records] == ["completed", "rate_limited"]


async def test_cancellation_while_waiting_for_the_upstream_records_a_disconnect() -> None:
    sink = RecordingSink()

    class Hanging(FakeBackend):
        async def complete(
            self, body: dict[str, Any], *, trace: Any = None, tenant: Any = None, hint: Any = None
        ) -> dict[str, Any]:
            await anyio.sleep_forever()
            raise AssertionError

    svc = service(Hanging(), sink)
    with anyio.move_on_after(0.05):
        await svc.create(body(), key=api_key(), request_id="r")
    assert [(r.status, r.prompt_tokens) for r in sink.records] == [("client_disconnected", 4)]


def test_upstream_body_caps_max_tokens_the_same_way_for_every_request() -> None:
    from gateway.chat.protocol import ChatCompletionRequest

    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": HI, "max_completion_tokens": 500, "model_params": None}
    )
    capped = ChatSurface.upstream_body(
        request, model(max_tokens=50), prompt_tokens=5, default_max_tokens=100
    )
    assert capped["max_tokens"] == 50 and "max_completion_tokens" not in capped
    within = ChatSurface.upstream_body(
        ChatCompletionRequest.model_validate({"model": "m", "messages": HI}),
        model(max_model_len=60),
        prompt_tokens=20,
        default_max_tokens=100,
    )
    assert within["max_tokens"] == 40  # never past the context length


async def test_a_model_that_serves_no_chat_is_refused_on_the_chat_route() -> None:
    backend, sink = FakeBackend(body=COMPLETION), RecordingSink()
    svc = service(backend, sink, routes=["embeddings"])
    with pytest.raises(InvalidRequestError) as raised:
        await svc.create(body(), key=api_key(), request_id="r")
    assert raised.value.code == "model_not_supported" and backend.sent == []
    assert [r.status for r in sink.records] == ["rejected"]


class ColdTokenizers(FakeTokenizers):
    """No tokenizer loaded yet; loading (in a worker thread) waits until `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.ready = False

    def loaded(self, spec: str) -> Any:
        return self.tokenizer if self.ready else None

    def get(self, spec: str) -> Any:
        assert self.release.wait(10)
        self.ready = True
        return self.tokenizer


async def test_a_cold_instance_forwards_before_its_tokenizer_loads_and_reserves_a_bound() -> None:
    backend, sink, limits = FakeBackend(body=COMPLETION), RecordingSink(), FakeLimits()
    tokenizers = ColdTokenizers()
    chat = Served(pipeline(model(), sink, backend, tokenizers=tokenizers, limits=limits), CHAT)
    key = api_key(monthly_tokens=10_000)

    async with anyio.create_task_group() as tg:

        async def release_later() -> None:
            await anyio.sleep(0.05)
            assert backend.sent, "the upstream was called before the tokenizer loaded"
            tokenizers.release.set()

        tg.start_soon(release_later)
        result = await chat.create(body(), key=key, request_id="r")
    assert result.body is not None and result.body["usage"]["prompt_tokens"] == 6
    [record] = sink.records
    # the reservation was the bound (well above the count); the record has the exact count
    assert limits.reserved[0] > 100 + 5
    assert record.gateway_prompt_tokens == 4 and record.prompt_tokens == 6


async def test_a_cold_instance_counts_first_where_the_bound_would_cut_max_tokens() -> None:
    backend, sink = FakeBackend(body=COMPLETION), RecordingSink()
    tokenizers = ColdTokenizers()
    tokenizers.release.set()
    chat = Served(pipeline(model(max_model_len=1100), sink, backend, tokenizers=tokenizers), CHAT)
    await chat.create(body(), key=api_key(), request_id="r")
    # counted exactly (4 tokens) before forwarding: max_tokens is the cap, not cut
    assert backend.sent[0]["max_tokens"] == 100
    assert sink.records[0].gateway_prompt_tokens == 4


@pytest.mark.parametrize("where", ["response_format", "tools"])
async def test_a_strict_flag_must_be_a_boolean(where: str) -> None:
    """Schemathesis found `"strict": 0.0` accepted as False (pydantic's lax mode): a 400."""
    backend, sink = FakeBackend(body=COMPLETION), RecordingSink()
    if where == "response_format":
        extra: dict[str, Any] = {
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": 0.0}}
        }
    else:
        extra = {"tools": [{"type": "function", "function": {"name": "f", "strict": 0.0}}]}
    with pytest.raises(InvalidRequestError):
        await service(backend, sink).create(body(**extra), key=api_key(), request_id="s")
    assert backend.sent == [] and [r.status for r in sink.records] == ["rejected"]


def test_prompt_lower_bound_reads_the_contents_a_template_copies() -> None:
    """Only a large prompt for a model with a context is bounded; assistant turns only where
    the template cuts no content; text parts as the template gets them (joined)."""
    words = "word " * 4000  # 20,000 characters: past what is counted at once
    request = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": words},
                {"role": "user", "content": [{"type": "text", "text": words}] * 2},
                {"role": "assistant", "content": words},
            ],
        }
    )
    tokenizer = FakeTokenizer()  # its bound: half the words
    assert prompt_lower_bound(request, model(), tokenizer) is None  # no max_model_len
    bounded = model(max_model_len=100)
    assert prompt_lower_bound(request, bounded, tokenizer) == 4 * 2000
    tokenizer.copies_contents_whole = False  # Qwen3's: cuts an assistant content
    assert prompt_lower_bound(request, bounded, tokenizer) == 3 * 2000
    small = ChatCompletionRequest.model_validate({"model": "m", "messages": HI})
    assert prompt_lower_bound(small, bounded, tokenizer) is None  # counted at once
