"""The relay's envelope rewrite (byte splice where exact, JSON otherwise: the same JSON
either way) and its batching of the chunks one upstream read delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from gateway.backends.chunks import Chunks
from gateway.backends.wire import parse_chunk
from gateway.chat import stream as stream_module
from gateway.chat.stream import CHAT_STREAM, Restamp, relay
from gateway.completions.service import TEXT_COMPLETION
from gateway.metering import Meter

from tests.unit.fakes import NullTelemetry, RecordingSink, api_key

pytestmark = pytest.mark.anyio

HEAD = b'{"id":"chatcmpl-up1","object":"chat.completion.chunk","created":1700000000,"model":"Qwen/Qwen3-8B",'
CHUNKS = [
    HEAD + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
    b'"finish_reason":null}]}',
    HEAD
    + b'"choices":[{"index":0,"delta":{"content":"caf\xc3\xa9 \\"usage\\": \\"stop_reason\\""},'
    b'"logprobs":null,"finish_reason":null}]}',
    HEAD + b'"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":'
    b'{"arguments":"{\\"a\\": 1}"}}]},"logprobs":null,"finish_reason":null}]}',
    HEAD + b'"choices":[{"index":0,"delta":{"content":"x"},"logprobs":{"content":[{"token":"x",'
    b'"logprob":-0.1,"bytes":[120],"top_logprobs":[]}]},"finish_reason":null}]}',
    HEAD + b'"choices":[{"index":0,"delta":{"content":""},"logprobs":null,'
    b'"finish_reason":"stop","stop_reason":null}]}',
    # a head that differs (another model name): the slow path
    b'{"id":"chatcmpl-up1","object":"chat.completion.chunk","created":1700000000,"model":"x",'
    b'"choices":[{"index":0,"delta":{"content":"y"},"finish_reason":null}]}',
    # spaces: the head does not match byte for byte
    b'{"id": "chatcmpl-up1", "choices": [{"index": 0, "delta": {"content": "z"}}]}',
]


def meter() -> Meter:
    return Meter(
        request_id="r1",
        key=api_key(),
        sink=RecordingSink(),
        telemetry=NullTelemetry(),
        model_id="qwen3",
    )


def slow(m: Meter, raw: bytes, include_usage: bool) -> bytes:
    return Restamp(m, include_usage=include_usage, kind=CHAT_STREAM).frame(parse_chunk(raw), None)


@pytest.mark.parametrize("include_usage", [False, True])
async def test_splice_gives_the_same_json_as_the_round_trip(
    include_usage: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = meter()
    references = [slow(m, raw, include_usage) for raw in CHUNKS]
    round_trips: list[bytes] = []
    original = stream_module._stamp

    def counted(*args: Any) -> Any:
        round_trips.append(b"")
        return original(*args)

    monkeypatch.setattr(stream_module, "_stamp", counted)
    restamp = Restamp(m, include_usage=include_usage, kind=CHAT_STREAM)
    for raw, reference in zip(CHUNKS, references, strict=True):
        fast = restamp.frame(parse_chunk(raw), raw)
        assert fast.startswith(b"data: ") and fast.endswith(b"\n\n")
        assert orjson.loads(fast[6:]) == orjson.loads(reference[6:])
    # spliced: the role chunk, the tricky strings, the tool call; the round trip: the
    # logprobs, the stop_reason, the other head and the spaced chunk
    assert len(round_trips) == 4
    first = orjson.loads(restamp.frame(parse_chunk(CHUNKS[1]), CHUNKS[1])[6:])
    assert (first["id"], first["model"], first["object"]) == (
        "chatcmpl-r1",
        "qwen3",
        "chat.completion.chunk",
    )
    assert ("usage" in first) is include_usage


async def test_text_completion_chunks_always_take_the_json_path() -> None:
    kind = TEXT_COMPLETION
    raw = b'{"id":"u","object":"text_completion","created":1,"model":"m","choices":[{"index":0}]}'
    out = Restamp(meter(), include_usage=False, kind=kind).frame(
        parse_chunk(raw, body_key=None), raw
    )
    assert orjson.loads(out[6:])["choices"][0] == {
        "index": 0,
        "text": "",
        "logprobs": None,
        "finish_reason": None,
    }


async def reads(batches: list[list[bytes]]) -> AsyncIterator[list[bytes]]:
    for batch in batches:
        yield batch


async def test_chunks_of_one_read_go_out_in_one_write() -> None:
    one = CHUNKS[1]
    stop = CHUNKS[4]
    chunks = Chunks(reads([[CHUNKS[0], one, one], [one], [stop]]), parse_chunk)
    writes = [w async for w in relay(meter(), chunks, include_usage=False)]
    events = [len([e for e in w.split(b"\n\n") if e]) for w in writes]
    # read 1: three events, one write; read 2: one; read 3: the last chunk, then [DONE]
    assert events[:2] == [3, 1]
    assert b"".join(writes).endswith(b"data: [DONE]\n\n")


async def test_a_malformed_chunk_after_good_ones_in_one_read_sends_them_then_the_error() -> None:
    m = meter()
    chunks = Chunks(reads([[CHUNKS[1], b"{not json"]]), parse_chunk)
    body = b"".join([w async for w in relay(m, chunks, include_usage=False)])
    events = [orjson.loads(e[6:]) for e in body.split(b"\n\n") if e]
    assert events[0]["choices"][0]["delta"]["content"].startswith("caf")
    assert "error" in events[-1]
    assert m.record is not None and m.record.status == "upstream_error"
