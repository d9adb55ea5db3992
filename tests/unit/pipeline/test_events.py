"""The named-event relay (pipeline/events.py) and the Responses and Messages surfaces
(responses/service.py, messages/service.py) through Pipeline.run, over fakes: one record
however a stream ends, stored responses written after the record and scoped to the owner."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from gateway.chat.service import ChatSurface
from gateway.conversations import ConversationTooLargeError, previous_response_not_found
from gateway.errors import NotFoundError, UpstreamError
from gateway.messages.service import MessagesSurface
from gateway.pipeline.events import relay_events, with_details
from gateway.pipeline.sse import settle
from gateway.responses.service import ResponsesSurface

from tests.unit.fakes import FakeBackend, FakeClient, RecordingSink, api_key, chunk, model, pipeline

pytestmark = pytest.mark.anyio
CHAT = ChatSurface(default_max_tokens=100)
USAGE = {"prompt_tokens": 6, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}
COMPLETION = {
    "choices": [{"index": 0, "message": {"content": "hello you"}, "finish_reason": "stop"}],
    "usage": USAGE,
}
STREAM = [chunk("hel"), chunk("lo", finish="stop"), {"choices": [], "usage": USAGE}]


class FakeStore:
    """The ConversationStore's calls the surface makes, in memory, per owner."""

    def __init__(self) -> None:
        self.kept: dict[str, dict[str, Any]] = {}

    def expand(self, *, previous_response_id: str, owner: str) -> list[dict[str, Any]]:
        kept = self.kept.get(previous_response_id)
        if kept is None or kept["owner"] != owner:
            raise previous_response_not_found(previous_response_id)
        return [*kept["input_items"], *kept["output_items"]]

    def put(self, **stored: Any) -> None:
        self.kept[stored["response_id"]] = stored


def body(**fields: Any) -> Any:
    async def read() -> bytes:
        return orjson.dumps({"model": "m", **fields})

    return read


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"event: "):
            name, data = block.split(b"\n", 1)
            out.append((name[7:].decode(), orjson.loads(data[6:])))
    return out


async def run(
    surface: Any, backend: FakeBackend, read: Any, *, owner: str = "o", rid: str = "r"
) -> Any:
    sink = RecordingSink()
    gateway = pipeline(model(), sink, backend)
    result = await gateway.run(surface, FakeClient(read), key=api_key(owner=owner), request_id=rid)
    if result.stream is not None:
        return events(b"".join([frame async for frame in result.stream])), sink
    return result.body, sink


async def test_a_response_is_stored_after_its_record_and_continued_by_its_owner_only() -> None:
    store = FakeStore()
    surface = ResponsesSurface(chat=CHAT, store=store)  # type: ignore[arg-type]
    answer, sink = await run(surface, FakeBackend(body=COMPLETION), body(input="hi"), rid="a")
    assert (
        answer["id"] == "resp_a" and answer["usage"]["input_tokens_details"]["cached_tokens"] == 4
    )
    assert [r.route for r in sink.records] == ["responses"]
    assert store.kept["resp_a"]["owner"] == "o"
    assert store.kept["resp_a"]["output_items"] == answer["output"]

    backend = FakeBackend(body=COMPLETION)
    follow = body(input="more", previous_response_id="resp_a")
    await run(surface, backend, follow, rid="b")
    assert [m["role"] for m in backend.sent[0]["messages"]] == ["user", "assistant", "user"]
    with pytest.raises(NotFoundError):
        await run(surface, FakeBackend(body=COMPLETION), follow, owner="someone else")


async def test_a_streamed_response_is_stored_and_ends_with_the_billed_usage() -> None:
    store = FakeStore()
    surface = ResponsesSurface(chat=CHAT, store=store)  # type: ignore[arg-type]
    frames, sink = await run(surface, FakeBackend(chunks=STREAM), body(input="hi", stream=True))
    assert frames[0][0] == "response.created" and frames[-1][0] == "response.completed"
    usage = frames[-1][1]["response"]["usage"]
    assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"]) == (6, 4)
    assert [r.status for r in sink.records] == ["completed"] and "resp_r" in store.kept
    unstored = ResponsesSurface(chat=CHAT, store=FakeStore())  # type: ignore[arg-type]
    await run(unstored, FakeBackend(chunks=STREAM), body(input="hi", stream=True, store=False))
    assert not unstored._store.kept  # type: ignore[attr-defined]


async def test_a_message_stream_that_fails_is_one_error_event_and_one_record() -> None:
    surface = MessagesSurface(chat=CHAT)
    backend = FakeBackend(chunks=STREAM, fail_after=1, fail_with=UpstreamError("gone"))
    read = body(max_tokens=5, messages=[{"role": "user", "content": "hi"}], stream=True)
    frames, sink = await run(surface, backend, read)
    assert frames[0][0] == "message_start" and frames[-1][0] == "error"
    assert frames[-1][1]["error"]["type"] == "api_error"
    assert [(r.route, r.status) for r in sink.records] == [("messages", "upstream_error")]
    assert backend.closed == 1

    answer, _ = await run(
        surface,
        FakeBackend(body=COMPLETION),
        body(max_tokens=5, messages=[{"role": "user", "content": "hi"}]),
    )
    assert answer["usage"] == {
        "input_tokens": 2,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens": 2,
    }


async def test_relay_settle_and_details() -> None:
    assert with_details({"prompt_tokens": 3}, {"cached_tokens": 9}) == {
        "prompt_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    assert with_details({"prompt_tokens": 3}, {"cached_tokens": True}) == {"prompt_tokens": 3}

    # settle: the upstream closed, and the record the way the stream ended.
    sink = RecordingSink()
    backend = FakeBackend(chunks=STREAM)
    ctx = pipeline(model(), sink, backend).begin("responses", key=api_key(), request_id="s")
    chunks = await backend.open_stream({})
    await settle(ctx.meter, chunks, failure=None, ended=False)
    assert [(r.status, r.http_status) for r in sink.records] == [("client_disconnected", 499)]

    class Events:
        def start(self) -> list[bytes]:
            return [b"start;"]

        def feed(self, chunk: Any) -> list[bytes]:
            return [b"feed;"]

        async def finish(self, usage: Any) -> list[bytes]:
            return [f"finish {usage['prompt_tokens_details']['cached_tokens']};".encode()]

        def fail(self, error: Any) -> list[bytes]:
            return [b"fail;"]

    sink = RecordingSink()
    ctx = pipeline(model(), sink, backend).begin("responses", key=api_key(), request_id="t")
    ctx.meter.prompt_tokens = 6
    relayed = relay_events(ctx.meter, await backend.open_stream({}), Events())
    assert b"".join([frame async for frame in relayed]) == b"start;feed;feed;finish 4;"
    assert [r.status for r in sink.records] == ["completed"]


async def test_a_stream_whose_response_cannot_be_stored_fails_in_sequence() -> None:
    class FullStore(FakeStore):
        def put(self, **stored: Any) -> None:
            raise ConversationTooLargeError("too long", param="input")

    surface = ResponsesSurface(chat=CHAT, store=FullStore())  # type: ignore[arg-type]
    frames, sink = await run(surface, FakeBackend(chunks=STREAM), body(input="hi", stream=True))
    assert frames[-1][0] == "response.failed"
    assert [data["sequence_number"] for _, data in frames] == list(range(len(frames)))
    assert [r.status for r in sink.records] == ["completed"]  # generated, so billed
