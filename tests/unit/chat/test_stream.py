"""The relay's envelope rewrite (byte splice where exact, JSON otherwise: the same JSON
either way) and its batching of the chunks one upstream read delivered."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from gateway.backends.chunks import Chunks
from gateway.backends.wire import parse_chunk
from gateway.chat.stream import CHAT_STREAM, chat_completion, chat_usage_chunk
from gateway.completions.service import TEXT_COMPLETION
from gateway.metering import Meter
from gateway.pipeline import sse as stream_module
from gateway.pipeline.sse import (
    Restamp,
    billed_usage,
    close_upstream,
    relay,
    usage_frame,
)
from gateway.usage import UsageStatus

from tests.unit.fakes import FakeTokenizer, NullTelemetry, RecordingSink, api_key

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
    # vLLM's chunks when the client asked for usage: "usage":null last (spliced)
    HEAD + b'"choices":[{"index":0,"delta":{"content":"u"},"logprobs":null,'
    b'"finish_reason":null}],"usage":null}',
    # a usage that is not null: the slow path
    HEAD + b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}',
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
    # spliced: the role chunk, the tricky strings, the tool call, the null usage; the round
    # trip: the logprobs, the stop_reason, the other head, the spaced chunk, the usage
    assert len(round_trips) == 5
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
    writes = [w async for w in relay(meter(), chunks, include_usage=False, kind=CHAT_STREAM)]
    events = [len([e for e in w.split(b"\n\n") if e]) for w in writes]
    # read 1: three events, one write; read 2: one; read 3: the last chunk, then [DONE]
    assert events[:2] == [3, 1]
    assert b"".join(writes).endswith(b"data: [DONE]\n\n")


async def test_a_malformed_chunk_after_good_ones_in_one_read_sends_them_then_the_error() -> None:
    m = meter()
    chunks = Chunks(reads([[CHUNKS[1], b"{not json"]]), parse_chunk)
    body = b"".join([w async for w in relay(m, chunks, include_usage=False, kind=CHAT_STREAM)])
    events = [orjson.loads(e[6:]) for e in body.split(b"\n\n") if e]
    assert events[0]["choices"][0]["delta"]["content"].startswith("caf")
    assert "error" in events[-1]
    assert m.record is not None and m.record.status == "upstream_error"


async def billed(prompt: int = 7, completion: int = 3) -> Meter:
    """A meter closed on a completed request the upstream reported `prompt`/`completion`
    for (the gateway's own count of the text seen differs, so the figures tell apart)."""
    m = meter()
    m.forwarded, m.prompt_tokens = True, 99
    m.observe_chunk(
        {
            "choices": [{"index": 0, "delta": {"content": "a b c d e"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    )
    await m.close(UsageStatus.COMPLETED)
    return m


async def test_billed_usage_is_the_records_figures() -> None:
    m = await billed(7, 3)
    assert billed_usage(m) == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert m.record is not None and m.record.gateway_prompt_tokens == 99  # not what is billed


async def test_chat_completion_is_the_gateways_envelope_with_the_billed_usage() -> None:
    m = await billed(5, 2)
    choices: Any = [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]
    body = chat_completion(m, choices, {"id": "up-1", "model": "upstream/name"})
    assert body == {
        "id": "chatcmpl-r1",
        "object": "chat.completion",
        "created": m.created,
        "model": "qwen3",
        "choices": choices,
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    kept = chat_completion(m, choices, {"system_fingerprint": "fp_1"})
    assert kept["system_fingerprint"] == "fp_1"
    dropped = chat_completion(m, choices, {"system_fingerprint": {"not": "a string"}})
    assert "system_fingerprint" not in dropped


async def test_chat_usage_chunk_and_its_frame() -> None:
    m = await billed(4, 6)
    chunk = chat_usage_chunk(m)
    assert chunk == {
        "id": "chatcmpl-r1",
        "object": "chat.completion.chunk",
        "created": m.created,
        "model": "qwen3",
        "choices": [],
        "usage": {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10},
    }
    frame = usage_frame(m, CHAT_STREAM)
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert orjson.loads(frame[6:]) == chunk
    text = orjson.loads(usage_frame(m, TEXT_COMPLETION)[6:])  # the kind decides the shape
    assert (text["id"], text["object"], text["choices"]) == ("cmpl-r1", "text_completion", [])
    assert text["usage"]["total_tokens"] == 10


async def test_close_upstream_closes_once_and_logs_a_failing_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Upstream:
        def __init__(self, error: Exception | None = None) -> None:
            self.error = error
            self.closes = 0

        async def aclose(self) -> None:
            self.closes += 1
            if self.error is not None:
                raise self.error

    fine = Upstream()
    await close_upstream(fine)  # type: ignore[arg-type]
    assert fine.closes == 1
    broken = Upstream(RuntimeError("connection reset"))
    with caplog.at_level(logging.WARNING, logger="gateway.pipeline.sse"):
        await close_upstream(broken)  # type: ignore[arg-type]  # does not raise
    assert broken.closes == 1
    assert [r.message for r in caplog.records] == ["closing the upstream stream failed"]
    assert caplog.records[0].exc_info is not None
    await close_upstream(reads([]))  # an async generator never started: closes quietly
    await close_upstream(object())  # type: ignore[arg-type]  # nothing to close


def test_observed_leaves_chat_chunks_as_they_are() -> None:
    data = {"choices": [{"index": 0, "delta": {"content": "x"}}]}
    assert CHAT_STREAM.observed(data) is data


async def test_observed_reads_text_completion_choices_as_deltas_and_messages() -> None:
    chunk = {
        "choices": [
            {"index": 2, "text": "b c", "finish_reason": None},
            {"text": "a", "finish_reason": "length", "logprobs": None},  # index: its position
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3},
    }
    assert TEXT_COMPLETION.observed(chunk) == {
        "usage": {"prompt_tokens": 2, "completion_tokens": 3},
        "choices": [
            {"index": 2, "delta": {"content": "b c"}, "finish_reason": None},
            {"index": 1, "delta": {"content": "a"}, "finish_reason": "length"},
        ],
    }
    body = TEXT_COMPLETION.observed({"choices": [{"index": 0, "text": "x y"}]}, "message")
    assert body == {
        "usage": None,
        "choices": [{"index": 0, "message": {"content": "x y"}, "finish_reason": None}],
    }
    # what the Meter makes of it: the text is generated output, counted as chat's
    m = meter()
    m.forwarded, m.tokenizer = True, FakeTokenizer()
    m.observe_completion(body)
    assert m.generated_anything
    record = await m.close(UsageStatus.COMPLETED)
    assert record.completion_tokens == 2
