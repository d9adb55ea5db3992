"""SageMakerBackend against a local server that speaks the SageMaker runtime API with real
event-stream frames, parsed by a real boto3 client."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import NoRegionError
from gateway.aws import AwsClients
from gateway.backends.sagemaker import SageMakerBackend, client_config
from gateway.backends.sse import SSEDecoder
from gateway.errors import InvalidRequestError, UpstreamError, UpstreamTimeoutError
from gateway.models.registry import SageMakerEndpoint
from gateway.settings import Settings

from tests.support.eventstream import (
    Reply,
    SageMakerStub,
    Wait,
    aws_error,
    exception_event,
    json_reply,
    model_error,
    payload_part,
    sagemaker_stub,
)
from tests.support.servers import free_port

BODY: dict[str, Any] = {
    "model": "llama3",
    "messages": [{"role": "user", "content": "Say hello"}],
    "stream_options": {"include_usage": True},
}
PIECES = ["Hé", "llo", ", 世界", " 🎉", "\n\nnext paragraph", " — done."]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "llama3",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


CHUNKS: list[dict[str, Any]] = [
    _chunk({"role": "assistant", "content": ""}),
    *[_chunk({"content": piece}) for piece in PIECES],
    _chunk({}, "stop"),
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "llama3",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
    },
]


def sse(chunks: list[dict[str, Any]], *, eol: str = "\n", prefix: str = "data: ") -> bytes:
    text = "".join(f"{prefix}{json.dumps(c, ensure_ascii=False)}{eol}{eol}" for c in chunks)
    return (text + f"{prefix}[DONE]{eol}{eol}").encode()


def events(chunks: list[dict[str, Any]]) -> bytes:
    """The chunks' events, without the final `[DONE]`."""
    return sse(chunks).removesuffix(b"data: [DONE]\n\n")


def split_every(n: int) -> Callable[[bytes], list[bytes]]:
    return lambda data: [data[i : i + n] for i in range(0, len(data), n)]


def split_mid_utf8(data: bytes) -> list[bytes]:
    """Cut inside every multi-byte character (at each continuation byte's start)."""
    cuts = [i for i in range(1, len(data)) if 0x80 <= data[i] <= 0xBF and data[i - 1] >= 0xC0]
    return _cut(data, cuts)


def split_mid_lines(data: bytes) -> list[bytes]:
    """Cut inside each `data:` prefix, between the blank line's newlines, and in the JSON."""
    cuts: list[int] = []
    for i in range(len(data)):
        if data.startswith(b"data", i):
            cuts += [i + 2, i + 5]
        if data.startswith(b"\n\n", i) or data.startswith(b"\r\n", i):
            cuts.append(i + 1)
        if data.startswith(b'"content"', i):
            cuts.append(i + 4)
    return _cut(data, sorted(set(cuts)))


def split_random(seed: int) -> Callable[[bytes], list[bytes]]:
    def split(data: bytes) -> list[bytes]:
        rng = random.Random(seed)
        return _cut(data, sorted(rng.sample(range(1, len(data)), 40)))

    return split


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def frames(parts: list[bytes]) -> list[bytes | Wait]:
    return [payload_part(p) for p in parts]


def frames_across_http_chunks(parts: list[bytes], size: int) -> list[bytes | Wait]:
    """Every frame cut across HTTP chunks, several frames in some chunks."""
    wire = b"".join(payload_part(p) for p in parts)
    return [wire[i : i + size] for i in range(0, len(wire), size)]


@pytest.fixture(scope="module")
def stub() -> Iterator[SageMakerStub]:
    with sagemaker_stub() as server:
        yield server


def make_client(url: str, **config: Any) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, **config),
    )


@pytest.fixture(scope="module")
def client(stub: SageMakerStub) -> Any:
    return make_client(stub.url, read_timeout=5)


@pytest.fixture(scope="module")
def quick(stub: SageMakerStub) -> Any:
    """A client whose read timeout trips fast."""
    return make_client(stub.url, read_timeout=0.3)


def backend(client: Any, endpoint: str) -> SageMakerBackend:
    return SageMakerBackend(
        upstream=SageMakerEndpoint(endpoint_name=endpoint), get_client=lambda: client
    )


async def collect(b: SageMakerBackend, body: dict[str, Any] = BODY) -> list[dict[str, Any]]:
    stream = await b.open_stream(body)
    return [chunk async for chunk in stream]


def content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def raises(exc_type: type[UpstreamError] | type[InvalidRequestError], coro: Any) -> Any:
    with pytest.raises(exc_type) as info:
        asyncio.run(coro)
    return info.value


# ---- streaming: chunks come out exactly as sent, whatever the split points ----------

SPLITS: dict[str, Callable[[bytes], list[bytes | Wait]]] = {
    "one-part": lambda data: frames([data]),
    "every-byte": lambda data: frames(split_every(1)(data)),
    "every-7-bytes": lambda data: frames(split_every(7)(data)),
    "mid-utf8": lambda data: frames(split_mid_utf8(data)),
    "mid-lines": lambda data: frames(split_mid_lines(data)),
    "random-1": lambda data: frames(split_random(1)(data)),
    "random-2": lambda data: frames(split_random(2)(data)),
    "frames-across-http-chunks": lambda data: frames_across_http_chunks(split_every(11)(data), 5),
}


@pytest.mark.parametrize("split", list(SPLITS))
def test_stream_chunks_survive_any_split(stub: SageMakerStub, client: Any, split: str) -> None:
    endpoint = f"split-{split}"
    stub.add_stream(endpoint, SPLITS[split](sse(CHUNKS)))
    out = asyncio.run(collect(backend(client, endpoint)))
    assert out == CHUNKS
    assert content(out) == "".join(PIECES)
    assert stub.outcome(endpoint).finished


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("crlf", sse(CHUNKS, eol="\r\n")),
        ("no-space-after-colon", sse(CHUNKS, prefix="data:")),
        ("json-lines", "".join(json.dumps(c) + "\n" for c in CHUNKS).encode()),
    ],
)
def test_stream_wire_variants(stub: SageMakerStub, client: Any, name: str, wire: bytes) -> None:
    endpoint = f"variant-{name}"
    stub.add_stream(endpoint, frames(split_mid_lines(wire)))
    assert asyncio.run(collect(backend(client, endpoint))) == CHUNKS


def test_stream_request(stub: SageMakerStub, client: Any) -> None:
    stub.add_stream("request-shape", frames([sse(CHUNKS[:1])]))
    asyncio.run(collect(backend(client, "request-shape")))
    request = next(r for r in stub.requests if "/request-shape/" in r.path)
    assert request.path == "/endpoints/request-shape/invocations-response-stream"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {**BODY, "stream": True}


def test_stream_without_done_ends_with_the_stream(stub: SageMakerStub, client: Any) -> None:
    wire = events(CHUNKS).removesuffix(b"\n")  # no final blank
    stub.add_stream("no-done", frames(split_every(13)(wire)))
    assert asyncio.run(collect(backend(client, "no-done"))) == CHUNKS


def test_sse_decoder_tolerates_comments_and_fields() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b': ping\n\nevent: message\nid: 3\ndata: {"a":\n')
    events += decoder.feed(b"data: 1}\r\n\r\n")
    assert events == [b'{"a":\n1}']
    assert decoder.close() == []


# ---- streaming errors ---------------------------------------------------------------


def test_model_stream_error_after_some_chunks(stub: SageMakerStub, client: Any) -> None:
    stub.add_stream(
        "stream-error",
        [
            *frames([events(CHUNKS[:3])]),
            exception_event(
                "ModelStreamError",
                "Model invocation time exceeded",
                error_code="ModelInvocationTimeExceeded",
            ),
        ],
    )
    received: list[dict[str, Any]] = []

    async def run() -> None:
        stream = await backend(client, "stream-error").open_stream(BODY)
        async for chunk in stream:
            received.append(chunk)

    error = raises(UpstreamError, run())
    assert received == CHUNKS[:3]
    assert error.status_code == 502
    assert error.code == "upstream_stream_error"
    # The endpoint's own words are logged, never sent to the client.
    assert "Model invocation time exceeded" not in error.message


def test_internal_stream_failure(stub: SageMakerStub, client: Any) -> None:
    stub.add_stream("stream-failure", [exception_event("InternalStreamFailure", "boom")])
    error = raises(UpstreamError, collect(backend(client, "stream-failure")))
    assert (error.status_code, error.code) == (502, "upstream_stream_error")
    assert "boom" not in error.message


def test_error_chunk_mid_stream(stub: SageMakerStub, client: Any) -> None:
    wire = events(CHUNKS[:2])
    wire += b'data: {"error":"CUDA out of memory","error_type":"generation"}\n\n'
    stub.add_stream("error-chunk", frames(split_every(9)(wire)))
    error = raises(UpstreamError, collect(backend(client, "error-chunk")))
    assert error.status_code == 502
    assert "CUDA out of memory" not in error.message


def test_invalid_event_is_an_upstream_error(stub: SageMakerStub, client: Any) -> None:
    stub.add_stream("bad-event", frames([b"data: {not json\n\n"]))
    assert raises(UpstreamError, collect(backend(client, "bad-event"))).status_code == 502


def test_stream_refused_by_the_container_is_raised_before_the_stream(
    stub: SageMakerStub, client: Any
) -> None:
    message = "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096"
    stub.add_stream("stream-422", model_error(422, {"error": message, "error_type": "validation"}))
    error = raises(InvalidRequestError, backend(client, "stream-422").open_stream(BODY))
    assert (error.status_code, error.code) == (400, "upstream_rejected_request")
    assert "HTTP 422" in error.message and "validation" not in error.message


def test_stream_read_timeout_is_504(stub: SageMakerStub, quick: Any) -> None:
    stub.add_stream("stream-stall", [*frames([events(CHUNKS[:1])]), Wait(3.0)])
    error = raises(UpstreamTimeoutError, collect(backend(quick, "stream-stall")))
    assert error.status_code == 504
    assert stub.outcome("stream-stall").client_closed


# ---- closing early drops the connection ---------------------------------------------


def test_early_close_closes_the_connection(stub: SageMakerStub, client: Any) -> None:
    stub.add_stream("early-close", [*frames([sse(CHUNKS[:2])]), Wait(4.0), *frames([b"x"])])

    async def run() -> dict[str, Any]:
        stream = await backend(client, "early-close").open_stream(BODY)
        first = await anext(stream)
        await stream.aclose()
        return first

    started = time.monotonic()
    assert asyncio.run(run()) == CHUNKS[0]
    outcome = stub.outcome("early-close", timeout=2)
    assert outcome.client_closed and not outcome.finished
    assert time.monotonic() - started < 2


def test_cancelled_while_waiting_closes_the_connection(stub: SageMakerStub, client: Any) -> None:
    """The task is cancelled while a worker thread is blocked reading the next event: the
    cancellation is not held up by the read, and the endpoint sees the connection go."""
    stub.add_stream("cancel-wait", [*frames([events(CHUNKS[:1])]), Wait(4.0)])

    async def run() -> float:
        stream = await backend(client, "cancel-wait").open_stream(BODY)
        first = await anext(stream)
        assert first == CHUNKS[0]
        task = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await stream.aclose()
        return time.monotonic() - started

    assert asyncio.run(run()) < 0.5
    outcome = stub.outcome("cancel-wait", timeout=2)
    assert outcome.client_closed and not outcome.finished


# ---- complete() ---------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "llama3",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Héllo 世界"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
}


def test_complete(stub: SageMakerStub, client: Any) -> None:
    stub.add_invocation("complete-ok", json_reply(COMPLETION))
    assert asyncio.run(backend(client, "complete-ok").complete(BODY)) == COMPLETION
    request = next(r for r in stub.requests if r.path == "/endpoints/complete-ok/invocations")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert json.loads(request.body) == BODY


@pytest.mark.parametrize(
    ("name", "reply", "error_type", "status", "code", "message"),
    [
        (
            "model-400",
            model_error(400, {"error": {"message": "max_tokens is too large", "code": 400}}),
            InvalidRequestError,
            400,
            "upstream_rejected_request",
            "rejected the request (HTTP 400)",
        ),
        (
            "model-500",
            model_error(500, "Internal Server Error"),
            UpstreamError,
            502,
            "upstream_http_500",
            "failed (HTTP 500)",
        ),
        (
            "throttled",
            aws_error(400, "ThrottlingException", {"message": "Rate exceeded"}),
            UpstreamError,
            502,
            "upstream_throttled",
            "overloaded",
        ),
        (
            "not-ready",
            aws_error(429, "ModelNotReadyException", {"message": "Model is loading"}),
            UpstreamError,
            502,
            "upstream_throttled",
            "overloaded",
        ),
        (
            "unavailable",
            aws_error(503, "ServiceUnavailable", {"message": "try again"}),
            UpstreamError,
            502,
            "upstream_unavailable",
            "ServiceUnavailable",
        ),
        (
            "bad-json",
            Reply(200, b"<html>oops</html>", {"Content-Type": "text/html"}),
            UpstreamError,
            502,
            "upstream_malformed_response",
            "malformed body",
        ),
        (
            "timeout",
            Reply(200, b"{}", {"Content-Type": "application/json"}, delay=0.6),
            UpstreamTimeoutError,
            504,
            "upstream_timeout",
            "timed out",
        ),
    ],
)
def test_complete_errors(
    stub: SageMakerStub,
    quick: Any,
    name: str,
    reply: Reply,
    error_type: type[UpstreamError],
    status: int,
    code: str,
    message: str,
) -> None:
    stub.add_invocation(name, reply)
    error = raises(error_type, backend(quick, name).complete(BODY))
    assert (error.status_code, error.code) == (status, code)
    assert message in error.message


def test_unknown_endpoint_is_a_validation_error(client: Any) -> None:
    error = raises(UpstreamError, backend(client, "no-such-endpoint").complete(BODY))
    assert (error.status_code, error.code) == (502, "upstream_validation_error")
    assert "no-such-endpoint" not in error.message  # SageMaker's text names the account


def test_unreachable_endpoint_is_502() -> None:
    from gateway.backends.faults import Unreachable

    dead = make_client(f"http://127.0.0.1:{free_port()}", connect_timeout=0.5)
    error = raises(UpstreamError, backend(dead, "any").complete(BODY))
    assert error.status_code == 502
    assert "unreachable" in error.message
    assert isinstance(error, Unreachable)  # counts against the endpoint without a key


def test_client_config_uses_the_gateway_timeouts() -> None:
    settings = Settings.model_construct(
        upstream_connect_timeout=3.0, upstream_read_timeout=120.0, upstream_max_connections=64
    )
    config = client_config(settings)
    assert (config.connect_timeout, config.read_timeout) == (3.0, 120.0)
    assert config.max_pool_connections == 64
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}


def _on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _RecordingSession(boto3.session.Session):
    """A real boto3 session that notes, per client built, whether an event loop ran in the
    building thread."""

    built: list[bool]

    def client(self, *args: Any, **kwargs: Any) -> Any:
        self.built.append(_on_the_loop())
        return super().client(*args, **kwargs)


def test_the_shared_client_is_built_once_by_the_first_calls_outside_the_event_loop(
    stub: SageMakerStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building a boto3 client loads botocore's service model (tens of milliseconds): in
    a worker thread, once per process, however many first calls arrive together, through
    AwsClients as resources.py wires it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", stub.url)
    session = _RecordingSession(
        aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    )
    session.built = []
    aws = AwsClients(session=session, sagemaker_config=Config(read_timeout=5))
    stub.add_invocation("first-call", json_reply(COMPLETION))
    stub.add_stream("first-stream", frames([sse(CHUNKS)]))
    calls, stream = (
        SageMakerBackend(
            upstream=SageMakerEndpoint(endpoint_name=name),
            get_client=lambda: aws.sagemaker_runtime,
        )
        for name in ("first-call", "first-stream")
    )
    assert session.built == []  # nothing built with the backends

    async def first_calls() -> list[Any]:
        both = await asyncio.gather(calls.complete(BODY), calls.complete(BODY), collect(stream))
        return list(both)

    one, two, chunks = asyncio.run(first_calls())
    assert one == two == COMPLETION
    assert content(chunks) == "".join(PIECES)
    assert session.built == [False]


def test_a_client_that_cannot_be_built_is_an_upstream_error() -> None:
    def build() -> Any:
        raise NoRegionError()  # what botocore raises with no region configured

    unbuildable = SageMakerBackend(
        upstream=SageMakerEndpoint(endpoint_name="any"), get_client=build
    )
    error = raises(UpstreamError, unbuildable.complete(BODY))
    assert error.status_code == 502
    assert "NoRegionError" in error.message
