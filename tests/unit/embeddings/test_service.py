"""The embeddings surface through the pipeline over fakes: one record on the "embeddings" route, inputs checked
against the model's limit before forwarding, batches split, sent and reassembled in
input order, upstream usage summed, vectors as floats or OpenAI's base64."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio.lowlevel
import orjson
import pytest
from gateway.backends.attempts import RouteTrace
from gateway.backends.wire import MAX_USAGE_TOKENS, MalformedUpstream, WireRoute
from gateway.embeddings.service import (
    EmbeddingSurface,
    check_input_limit,
    embed_batches,
    encoded,
    reassemble,
    upstream_usage,
)
from gateway.errors import InvalidRequestError, UpstreamError

from tests.unit.fakes import (
    RecordingSink,
    Served,
    api_key,
    model,
    pipeline,
)

pytestmark = pytest.mark.anyio


def vector(item: Any) -> list[float]:
    """The fake model's embedding of one input: its length and its first character/id."""
    first = item[0]
    return [float(len(item)), float(ord(first) if isinstance(first, str) else first)]


class EmbeddingBackend:
    """Answers each request with one vector per input (newest batches answer first), as
    TEI/vLLM do, reporting the words of its texts as prompt tokens; or fails."""

    def __init__(
        self, *, usage: bool = True, fail_on: str | None = None, error: Exception | None = None
    ) -> None:
        self.sent: list[dict[str, Any]] = []
        self.usage = usage
        self.fail_on = fail_on
        self.error = error or UpstreamError("batch failed")

    async def complete(
        self, body: dict[str, Any], *, trace: Any = None, tenant: Any = None
    ) -> dict[str, Any]:
        self.sent.append(body)
        inputs = body["input"]
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if inputs and isinstance(inputs[0], int):
            inputs = [inputs]
        # the later a batch was sent, the sooner it answers: order is the gateway's job
        for _ in range(max(0, 8 - len(self.sent))):
            await anyio.lowlevel.checkpoint()
        if self.fail_on is not None and self.fail_on in inputs:
            raise self.error
        data = [
            {"object": "embedding", "index": i, "embedding": vector(item)}
            for i, item in reversed(list(enumerate(inputs)))  # any order, by index
        ]
        reply: dict[str, Any] = {"object": "list", "data": data}
        if self.usage:
            words = sum(len(i.split()) if isinstance(i, str) else len(i) for i in inputs)
            reply["usage"] = {"prompt_tokens": words, "total_tokens": words}
        return reply

    async def open_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise AssertionError("embeddings are never streamed")


def service(
    backend: EmbeddingBackend,
    sink: RecordingSink,
    routes: list[WireRoute] | None = None,
    **cfg: Any,
) -> Served:
    config = model("e", routes=["embeddings"], **cfg)
    return Served(pipeline(config, sink, backend, routes=routes), EmbeddingSurface())


def body(**fields: Any) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return orjson.dumps({"model": "e", "input": ["a b", "c"], **fields})

    return read


async def test_create_returns_one_vector_per_input_and_one_record() -> None:
    backend, sink = EmbeddingBackend(), RecordingSink()
    routes: list[WireRoute] = []
    result = await service(backend, sink, routes).create(body(), key=api_key(), request_id="r")
    assert result.body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [3.0, 97.0]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 99.0]},
        ],
        "model": "e",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},  # the upstream's figure
    }
    [record] = sink.records
    assert (record.route, record.status, record.completion_tokens) == ("embeddings", "completed", 0)
    assert record.gateway_prompt_tokens == 3 + 2  # each text with its BOS
    assert [r.name for r in routes] == ["embeddings"]
    assert backend.sent == [{"model": "e", "input": ["a b", "c"]}]


async def test_create_without_upstream_usage_bills_the_gateways_count_in_base64() -> None:
    backend, sink = EmbeddingBackend(usage=False), RecordingSink()
    result = await service(backend, sink).create(
        body(input=[[7, 8, 9]], encoding_format="base64"), key=api_key(), request_id="r"
    )
    assert result.body is not None
    [item] = result.body["data"]
    assert struct.unpack("<2f", base64.b64decode(item["embedding"])) == (3.0, 7.0)
    assert result.body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}  # ids: their count
    assert backend.sent[0]["encoding_format"] == "base64"


async def test_create_splits_by_max_batch_size_and_keeps_the_input_order() -> None:
    backend, sink = EmbeddingBackend(), RecordingSink()
    texts = ["a", "b b", "c c c", "d", "e e"]
    result = await service(backend, sink, max_batch_size=2).create(
        body(input=texts), key=api_key(), request_id="r"
    )
    assert sorted(len(sent["input"]) for sent in backend.sent) == [1, 2, 2]
    assert result.body is not None
    data = result.body["data"]
    assert [d["index"] for d in data] == [0, 1, 2, 3, 4]
    assert [d["embedding"] for d in data] == [vector(t) for t in texts]
    assert result.body["usage"]["prompt_tokens"] == 1 + 2 + 3 + 1 + 2  # summed over batches


async def test_an_input_over_the_limit_is_refused_before_forwarding() -> None:
    backend, sink = EmbeddingBackend(), RecordingSink()
    with pytest.raises(InvalidRequestError) as raised:
        await service(backend, sink, max_input_tokens=2).create(
            body(input=["a", "b c d"]), key=api_key(), request_id="r"
        )
    assert (raised.value.param, raised.value.code) == ("input", "context_length_exceeded")
    assert backend.sent == [] and [r.status for r in sink.records] == ["rejected"]


async def test_a_failing_batch_fails_the_request_with_its_error_and_one_record() -> None:
    backend, sink = EmbeddingBackend(fail_on="c"), RecordingSink()
    with pytest.raises(UpstreamError):
        await service(backend, sink, max_batch_size=1).create(
            body(input=["a", "b", "c", "d"]), key=api_key(), request_id="r"
        )
    [record] = sink.records
    assert (record.status, record.route) == ("upstream_error", "embeddings")


def test_check_input_limit_uses_max_input_tokens_else_max_model_len() -> None:
    check_input_limit(model(), [10**6])  # no limit known
    check_input_limit(model(max_input_tokens=4), [1, 4])
    with pytest.raises(InvalidRequestError) as raised:
        check_input_limit(model(max_input_tokens=4), [1, 5, 2])
    assert raised.value.status_code == 400 and raised.value.param == "input"
    assert "maximum context length is 4 tokens" in raised.value.message
    assert "requested 5 tokens" in raised.value.message  # the longest input
    with pytest.raises(InvalidRequestError):
        check_input_limit(model(max_model_len=4), [5])
    check_input_limit(model(max_model_len=4, max_input_tokens=8), [5])


async def test_embed_batches_sends_one_request_when_the_inputs_fit() -> None:
    backend = EmbeddingBackend()
    sent = {"model": "e", "input": "just one"}
    for size in (None, 1):
        [(start, count, reply)] = await embed_batches(
            backend, sent, ["just one"], batch_size=size, trace=RouteTrace()
        )
        assert (start, count, len(reply["data"])) == (0, 1, 1)
    assert backend.sent == [sent, sent]  # the body as it was: not rewritten


async def test_embed_batches_splits_in_order_whatever_order_replies_come_in() -> None:
    backend = EmbeddingBackend()
    inputs = [[i] for i in range(7)]
    batches = await embed_batches(
        backend, {"model": "e", "input": inputs}, inputs, batch_size=3, trace=RouteTrace()
    )
    assert [(start, count) for start, count, _ in batches] == [(0, 3), (3, 3), (6, 1)]
    assert [[d["embedding"][1] for d in reply["data"]] for _, _, reply in batches] == [
        [2.0, 1.0, 0.0],
        [5.0, 4.0, 3.0],
        [6.0],
    ]
    assert sorted(len(s["input"]) for s in backend.sent) == [1, 3, 3]


async def test_embed_batches_raises_the_failing_batchs_gateway_error() -> None:
    error = UpstreamError("batch 2 failed", code="upstream_http_500")
    backend = EmbeddingBackend(fail_on="c", error=error)
    with pytest.raises(UpstreamError) as raised:
        await embed_batches(
            backend, {}, ["a", "b", "c", "d", "e"], batch_size=2, trace=RouteTrace()
        )
    assert raised.value is error  # itself, not wrapped in an exception group
    bug = EmbeddingBackend(fail_on="c", error=RuntimeError("bug"))
    with pytest.raises(ExceptionGroup):  # not a gateway error: left to the caller
        await embed_batches(bug, {}, ["a", "b", "c", "d", "e"], batch_size=2, trace=RouteTrace())


def batch(start: int, size: int, **reply: Any) -> tuple[int, int, dict[str, Any]]:
    return (start, size, reply)


def test_upstream_usage_sums_the_batches_or_gives_none() -> None:
    good = [batch(0, 1, usage={"prompt_tokens": 3}), batch(1, 1, usage={"prompt_tokens": 4})]
    assert upstream_usage(good) == {"prompt_tokens": 7, "completion_tokens": 0}
    for bad in (
        {},
        {"usage": None},
        {"usage": {"prompt_tokens": -1}},
        {"usage": {"prompt_tokens": True}},
    ):
        assert upstream_usage([good[0], batch(1, 1, **bad)]) is None
    huge = [batch(0, 1, usage={"prompt_tokens": MAX_USAGE_TOKENS})] * 2
    # over the sane bound: the Meter drops it and bills its own count
    assert upstream_usage(huge) == {"prompt_tokens": MAX_USAGE_TOKENS + 1, "completion_tokens": 0}


def test_reassemble_orders_by_index_and_offsets_by_batch() -> None:
    replies = [
        batch(0, 2, data=[{"index": 1, "embedding": [1.0]}, {"index": 0, "embedding": [0.0]}]),
        batch(2, 1, data=[{"index": 0, "embedding": [2.0]}]),
    ]
    assert reassemble(replies, encoding="float") == [
        {"object": "embedding", "index": 0, "embedding": [0.0]},
        {"object": "embedding", "index": 1, "embedding": [1.0]},
        {"object": "embedding", "index": 2, "embedding": [2.0]},
    ]
    [item] = reassemble([batch(0, 1, data=[{"embedding": [0.5]}])], encoding="base64")
    assert item["embedding"] == base64.b64encode(struct.pack("<f", 0.5)).decode()


@pytest.mark.parametrize(
    "data",
    [
        [{"index": 0, "embedding": [0.0]}],  # one vector missing
        [{"index": 0, "embedding": [0.0]}, {"index": 0, "embedding": [1.0]}],  # twice the first
        [{"index": 0, "embedding": [0.0]}, {"index": 2, "embedding": [1.0]}],  # out of range
        [{"index": i, "embedding": [0.0]} for i in range(3)],  # one too many
    ],
)
def test_reassemble_refuses_a_reply_without_one_vector_per_input(data: list[Any]) -> None:
    with pytest.raises(MalformedUpstream):
        reassemble([batch(0, 2, data=data)], encoding="float")


def test_reassemble_numbers_vectors_without_index_by_position() -> None:
    data = [{"embedding": [0.0]}, {"embedding": [1.0]}]
    assert [d["index"] for d in reassemble([batch(4, 2, data=data)], encoding="float")] == [4, 5]


def test_encoded_float_lists_are_little_endian_float32_base64_and_back() -> None:
    floats = [0.5, -1.25, 3.0, 0.0]
    text = encoded(floats, "base64")
    assert isinstance(text, str)
    assert base64.b64decode(text) == struct.pack("<4f", *floats)
    assert encoded(text, "float") == floats  # a base64 reply, asked for as floats
    assert encoded(floats, "float") is floats  # already as asked: unchanged
    assert encoded(text, "base64") is text
    rounded = encoded(encoded([0.1], "base64"), "float")
    assert rounded == [struct.unpack("<f", struct.pack("<f", 0.1))[0]]  # float32 precision
    with pytest.raises(MalformedUpstream):
        encoded("not base64!", "float")


def test_a_vector_past_float32s_range_asked_as_base64_is_malformed() -> None:
    with pytest.raises(MalformedUpstream):
        encoded([1e39], "base64")


def test_a_base64_vector_cut_short_is_malformed() -> None:
    whole = encoded([0.5, 1.5], "base64")
    assert isinstance(whole, str)
    cut = base64.b64encode(base64.b64decode(whole)[:6]).decode("ascii")  # 6 bytes: 1.5 floats
    with pytest.raises(MalformedUpstream):
        encoded(cut, "float")
