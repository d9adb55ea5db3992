"""The pipeline over fakes: its steps in order, the model's resolution, admission (per-key
concurrency), the narrowed template catch, and a client that leaves before its answer,
each leaving exactly one record."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import orjson
import pytest
from gateway.chat.service import ChatSurface
from gateway.completions.service import CompletionSurface
from gateway.embeddings.service import EmbeddingSurface
from gateway.errors import (
    ClientDisconnected,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from gateway.models.registry import ModelConfig
from gateway.pipeline import Pipeline, Plan, echo_id
from gateway.pipeline.pipeline import internal_error
from gateway.tokens.errors import TemplateRefused

from tests.unit.fakes import (
    FakeBackend,
    FakeClient,
    FakeTokenizers,
    RecordingSink,
    api_key,
    chunk,
    model,
    pipeline,
)

pytestmark = pytest.mark.anyio
CHAT = ChatSurface(default_max_tokens=100)
COMPLETION = {
    "choices": [{"index": 0, "message": {"content": "hello you"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 6, "completion_tokens": 3},
}


def body(content: str = "hi there", **fields: Any) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        messages = [{"role": "user", "content": content}]
        return orjson.dumps({"model": "m", "messages": messages, **fields})

    return read


async def test_run_goes_through_every_step_and_leaves_one_record() -> None:
    backend, sink = FakeBackend(body=COMPLETION), RecordingSink()
    routes: list[Any] = []
    gateway = pipeline(model(), sink, backend, routes=routes)
    ctx = gateway.begin("chat", key=api_key(), request_id="r1")
    assert ctx.meter.route == "chat" and ctx.trace is ctx.meter.trace
    result = await gateway.run(CHAT, FakeClient(body()), key=api_key(), request_id="r2")
    assert result.body is not None and result.body["id"] == "chatcmpl-r2"
    assert routes == [CHAT.wire] and backend.sent[0]["max_tokens"] == 100
    [record] = sink.records
    assert (record.status, record.http_status, record.prompt_tokens) == ("completed", 200, 6)


async def test_serve_streams_after_the_body_is_read() -> None:
    backend = FakeBackend(chunks=[chunk("hi"), chunk(finish="stop")])
    sink = RecordingSink()
    gateway = pipeline(model(), sink, backend)
    ctx = gateway.begin("chat", key=api_key(), request_id="s")
    result = await gateway.serve(CHAT, ctx, await body(stream=True)())
    assert result.stream is not None
    frames = b"".join([frame async for frame in result.stream])
    assert frames.endswith(b"data: [DONE]\n\n") and [r.status for r in sink.records] == [
        "completed"
    ]


async def test_resolve_model_refuses_unknown_forbidden_and_unserved_models() -> None:
    gateway = pipeline(model(), RecordingSink(), FakeBackend(body=COMPLETION))
    ctx = gateway.begin("chat", key=api_key(models=("m",)), request_id="r")
    assert gateway.resolve_model(ctx, "m", "chat").id == "m"
    with pytest.raises(NotFoundError):
        gateway.resolve_model(ctx, "nope", "chat")
    other = pipeline(model(), RecordingSink(), FakeBackend(), models=[model("x")])
    with pytest.raises(PermissionDeniedError):
        other.resolve_model(ctx, "x", "chat")
    with pytest.raises(InvalidRequestError) as refused:
        gateway.resolve_model(ctx, "m", "embeddings")
    assert refused.value.code == "model_not_supported"


async def test_admit_holds_a_key_to_its_concurrency_and_frees_the_slot() -> None:
    started, release = anyio.Event(), anyio.Event()

    class Slow(FakeBackend):
        async def complete(
            self, body: dict[str, Any], *, trace: Any = None, tenant: Any = None, hint: Any = None
        ) -> dict[str, Any]:
            started.set()
            await release.wait()
            return COMPLETION

    sink = RecordingSink()
    gateway = pipeline(model(), sink, Slow(), max_concurrency=1)
    key = api_key()

    async def first() -> None:
        await gateway.run(CHAT, FakeClient(body()), key=key, request_id="a")

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await started.wait()
        with pytest.raises(RateLimitError) as refused:
            await gateway.run(CHAT, FakeClient(body()), key=key, request_id="b")
        # admit() alone, for the same key: refused the same way, no reservation made
        ctx = gateway.begin("chat", key=key, request_id="x")
        with pytest.raises(RateLimitError):
            await gateway.admit(ctx, Plan(body={}, reserve=1))
        assert refused.value.code == "concurrency_limit_exceeded"
        assert refused.value.headers["Retry-After"] == "1"
        # another key is not held back by this one
        other = api_key(key_id="key_other", max_concurrency=1)
        release.set()
        await gateway.run(CHAT, FakeClient(body()), key=other, request_id="c")
    assert gateway.concurrency.in_flight(key.key_id) == 0
    statuses = {r.request_id: r.status for r in sink.records}
    assert statuses == {"a": "completed", "b": "rate_limited", "c": "completed"}


async def test_a_template_refusal_is_a_400_and_any_other_count_failure_a_500() -> None:
    sink = RecordingSink()
    gateway = pipeline(model(), sink, FakeBackend(body=COMPLETION))
    with pytest.raises(InvalidRequestError):
        await gateway.run(CHAT, FakeClient(body("please raise")), key=api_key(), request_id="a")
    with pytest.raises(InternalError) as failed:
        await gateway.run(CHAT, FakeClient(body("please crash")), key=api_key(), request_id="b")
    assert failed.value.code == "internal_error" and failed.value.status_code == 500
    assert [(r.status, r.http_status) for r in sink.records] == [
        ("rejected", 400),
        ("internal_error", 500),
    ]
    assert issubclass(TemplateRefused, ValueError)


class ColdTokenizers(FakeTokenizers):
    """A cold instance: no tokenizer loaded yet (the request is forwarded before its
    prompt is counted, and the count runs beside the upstream call)."""

    def loaded(self, spec: str) -> None:  # type: ignore[override]
        return None


async def test_a_cold_instances_template_refusal_is_the_templates_400_not_the_upstreams() -> None:
    """The upstream rejects a conversation its template refuses (vLLM's 400) while the
    gateway's deferred count refuses it too: the client gets the template's own reason,
    as a warm instance gives it, not a bare "the model endpoint rejected the request"."""
    from gateway.backends.wire import status_error

    sink = RecordingSink()
    backend = FakeBackend(error=status_error(400, b'{"error": {"message": "no"}}'))
    gateway = pipeline(model(), sink, backend, tokenizers=ColdTokenizers())
    with pytest.raises(InvalidRequestError) as refused:
        await gateway.run(CHAT, FakeClient(body("please raise")), key=api_key(), request_id="c")
    assert backend.sent  # forwarded before the count: the cold path
    assert refused.value.code != "upstream_rejected_request"
    assert "chat template cannot render" in str(refused.value)
    [record] = sink.records
    assert (record.status, record.http_status) == ("rejected", 400)
    # an upstream refusal the count does not share stays the upstream's
    backend.sent.clear()
    with pytest.raises(InvalidRequestError) as upstream:
        await gateway.run(CHAT, FakeClient(body("hi")), key=api_key(), request_id="d")
    assert backend.sent and upstream.value.code == "upstream_rejected_request"


@pytest.mark.parametrize("surface", ["chat", "completions", "embeddings"])
async def test_a_huge_prompt_past_the_context_by_its_lower_bound_is_refused_uncounted(
    surface: str,
) -> None:
    """Issue 27: a body near MAX_REQUEST_BYTES whose cheap lower bound alone is past the
    model's context is refused (400 context_length_exceeded) before it is rendered and
    counted, the request path's largest use of memory."""
    huge = " ".join(["1"] * 40_000)  # 80,000 characters, 20,000 words at least
    tokenizers = FakeTokenizers()
    sink = RecordingSink()
    backend = FakeBackend(body=COMPLETION)
    if surface == "chat":
        config, adapter, raw = model(max_model_len=1000), CHAT, body(huge)
    elif surface == "completions":
        config, adapter = model(max_model_len=1000), CompletionSurface(default_max_tokens=10)
        raw = _json({"model": "m", "prompt": huge, "max_tokens": 5})
    else:
        config, adapter = model(routes=["embeddings"], max_model_len=1000), EmbeddingSurface()
        raw = _json({"model": "m", "input": [huge]})
    gateway = pipeline(config, sink, backend, tokenizers=tokenizers)
    counted = []
    tokenizers.tokenizer.count_text_with_special = counted.append  # type: ignore[method-assign]
    with pytest.raises(InvalidRequestError) as refused:
        await gateway.run(adapter, FakeClient(raw), key=api_key(), request_id="huge")
    assert refused.value.code == "context_length_exceeded"
    assert tokenizers.tokenizer.counted == 0 and counted == [] and backend.sent == []
    [record] = sink.records
    assert (record.status, record.http_status, record.prompt_tokens) == ("rejected", 400, 0)


def _json(data: dict[str, Any]) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return orjson.dumps(data)

    return read


class Hanging(FakeBackend):
    """An upstream that never answers; notes when its call was cancelled."""

    cancelled: bool = False

    async def complete(
        self, body: dict[str, Any], *, trace: Any = None, tenant: Any = None, hint: Any = None
    ) -> dict[str, Any]:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        raise AssertionError

    async def open_stream(
        self, body: dict[str, Any], *, trace: Any = None, tenant: Any = None, hint: Any = None
    ) -> AsyncIterator[dict[str, Any]]:
        return await self.complete(body)  # type: ignore[no-any-return]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_leaves_before_the_answer_cancels_the_upstream(stream: bool) -> None:
    backend, sink = Hanging(), RecordingSink()
    gateway: Pipeline = pipeline(model(), sink, backend)
    client = FakeClient(body(stream=stream))

    async def leave() -> None:
        await anyio.sleep(0.05)
        client.gone.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(leave)
            with pytest.raises(ClientDisconnected):
                await gateway.run(CHAT, client, key=api_key(), request_id="gone")
    assert backend.cancelled
    [record] = sink.records
    assert (record.status, record.http_status) == ("client_disconnected", 499)
    assert record.prompt_tokens > 0  # forwarded: the prompt is billed


def test_echo_id_and_internal_error() -> None:
    assert echo_id("m") == "m" and echo_id("x" * 100).endswith("…")
    from gateway.errors import ConfigurationError

    assert internal_error(ConfigurationError("no template"), "r").code == "configuration_error"
    assert internal_error(ValueError("bug"), "r").code == "internal_error"
    assert isinstance(model(), ModelConfig)
