"""Chat completions: authorize, count, forward, stream back, record usage. No HTTP types."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
import jinja2
import orjson

from gateway.chat.protocol import ChatCompletionRequest
from gateway.config import ModelConfig, ModelRegistry
from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamTimeoutError,
    sse_error_event,
)
from gateway.keys import ApiKey
from gateway.limits import Admission, LimitStore
from gateway.observability import Telemetry
from gateway.tokens import ChatTokenizer, TokenizerStore
from gateway.upstream import Backend
from gateway.usage import UsageRecord, UsageStatus, UsageStore

# Prompts longer than this (in characters) are counted in a worker thread, so a huge
# prompt does not stall every other stream on the event loop.
_INLINE_COUNT_CHARS = 16_000
_DONE = b"data: [DONE]\n\n"


@dataclass
class _Call:
    """What one request has gathered on its way through."""

    request_id: str
    key: ApiKey
    model: ModelConfig
    tokenizer: ChatTokenizer
    stream: bool
    gateway_prompt_tokens: int
    # vLLM and TGI count the EOS token that ends a natural stop; it has no text, so the
    # gateway adds it when a choice stops without a stop string having been requested.
    counts_eos: bool = True
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    admission: Admission | None = None

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.request_id}"

    def elapsed_ms(self, since: float | None = None) -> float:
        return round(((since or time.perf_counter()) - self.started) * 1000, 3)


def _usage_ints(usage: Any) -> tuple[int, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None


def _status_of(error: GatewayError) -> UsageStatus:
    if isinstance(error, UpstreamTimeoutError):
        return UsageStatus.UPSTREAM_TIMEOUT
    return UsageStatus.UPSTREAM_ERROR


@dataclass(frozen=True)
class ChatResult:
    """A chat.completion body or an SSE stream, and headers (x-ratelimit-*) to send."""

    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class ChatService:
    def __init__(
        self,
        *,
        registry: ModelRegistry,
        tokenizers: TokenizerStore,
        usage: UsageStore,
        backend_for: Callable[[ModelConfig], Backend],
        telemetry: Telemetry,
        limits: LimitStore | None = None,
        default_max_tokens: int = 4096,
    ) -> None:
        self._limits = limits
        self._default_max_tokens = default_max_tokens
        self._registry = registry
        self._tokenizers = tokenizers
        self._usage = usage
        self._backend_for = backend_for
        self._telemetry = telemetry

    def resolve_model(self, *, key: ApiKey, model_id: str) -> ModelConfig:
        model = self._registry.get(model_id)
        if model is None:
            raise NotFoundError(
                f"The model `{model_id}` does not exist or you do not have access to it.",
                param="model",
            )
        if not key.allows_model(model_id):
            raise PermissionDeniedError(
                f"This API key may not use the model `{model_id}`.", param="model"
            )
        return model

    async def create(
        self, request: ChatCompletionRequest, *, key: ApiKey, request_id: str
    ) -> ChatResult:
        """A chat.completion body, or the SSE byte stream when `stream` is set."""
        model = self.resolve_model(key=key, model_id=request.model)
        tokenizer = await self._tokenizer(model)
        prompt_tokens = await self._count_prompt(tokenizer, request)
        call = _Call(
            request_id=request_id,
            key=key,
            model=model,
            tokenizer=tokenizer,
            stream=bool(request.stream),
            gateway_prompt_tokens=prompt_tokens,
            counts_eos=not request.stop,
        )
        body = self.upstream_body(request, model)
        if self._limits is not None and key.has_limits:
            await self._admit(call, request, body)
        headers = call.admission.headers if call.admission else {}
        backend = self._backend_for(model)
        if request.stream:
            try:
                chunks = await backend.open_stream(body)
            except GatewayError as exc:
                await self._record(self._failed_record(call, exc), call)
                raise
            stream = self._relay(call, chunks, include_usage=request.include_usage)
            return ChatResult(stream=stream, headers=headers)
        try:
            data = await backend.complete(body)
        except GatewayError as exc:
            await self._record(self._failed_record(call, exc), call)
            raise
        response, record = self._completion(call, data)
        await self._record(record, call)
        return ChatResult(body=response, headers=headers)

    async def _admit(
        self, call: _Call, request: ChatCompletionRequest, body: dict[str, Any]
    ) -> None:
        """Count the request against the key's limits, reserving its worst case: the
        prompt plus max_tokens for each choice. A request that sets no max_tokens gets
        the default sent upstream too, so the reservation really is the worst case."""
        assert self._limits is not None
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            body["max_tokens"] = self._default_max_tokens
        cap = body.get("max_completion_tokens") or body["max_tokens"]
        reserve = call.gateway_prompt_tokens + cap * (request.n or 1)
        try:
            call.admission = await self._limits.admit_within(key=call.key, reserve_tokens=reserve)
        except RateLimitError as exc:
            record = self._failed_record(call, exc)
            record.status = UsageStatus.RATE_LIMITED
            await self._record(record, call)
            raise

    # --- request side --------------------------------------------------------------

    async def _tokenizer(self, model: ModelConfig) -> ChatTokenizer:
        loaded = self._tokenizers.loaded(model.tokenizer)
        if loaded is not None:
            return loaded
        # The first use of a tokenizer may load (0.1-1 s) or download it: off the loop.
        return await anyio.to_thread.run_sync(self._tokenizers.get, model.tokenizer)

    async def _count_prompt(self, tokenizer: ChatTokenizer, request: ChatCompletionRequest) -> int:
        messages = []
        size = 0
        for message in request.messages:
            item = message.model_dump(exclude_none=True)
            item["content"] = text = message.text()
            size += len(text)
            messages.append(item)
        try:
            if size <= _INLINE_COUNT_CHARS:
                return tokenizer.count_chat(messages)
            return await anyio.to_thread.run_sync(tokenizer.count_chat, messages)
        except jinja2.TemplateError as exc:
            # The model's own template refused the conversation (e.g. roles must alternate).
            raise InvalidRequestError(str(exc), param="messages") from exc

    @staticmethod
    def upstream_body(request: ChatCompletionRequest, model: ModelConfig) -> dict[str, Any]:
        body = request.model_dump(exclude_unset=True, exclude_none=True, exclude={"model_params"})
        body["model"] = model.upstream_model
        if model.max_tokens is not None:
            cap = model.max_tokens
            asked = request.requested_max_tokens
            body.pop("max_completion_tokens", None)
            body["max_tokens"] = min(asked, cap) if asked else cap
        if request.stream:
            # Always ask for usage, so the record has the upstream's figures; the usage
            # chunk is dropped on the way back unless the client asked for it.
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        return body

    # --- non-streaming -------------------------------------------------------------

    def _completion(self, call: _Call, data: dict[str, Any]) -> tuple[dict[str, Any], UsageRecord]:
        choices = []
        texts = []
        finish_reasons = []
        for position, choice in enumerate(data.get("choices") or []):
            upstream_message = choice.get("message") or {}
            message: dict[str, Any] = {
                "role": "assistant",
                "content": upstream_message.get("content"),
                "refusal": upstream_message.get("refusal"),
            }
            # Extensions vLLM clients rely on, passed through only when present.
            for extra in ("tool_calls", "reasoning_content"):
                if upstream_message.get(extra):
                    message[extra] = upstream_message[extra]
            texts.append(upstream_message.get("content") or "")
            texts.append(upstream_message.get("reasoning_content") or "")
            finish_reasons.append(choice.get("finish_reason"))
            choices.append(
                {
                    "index": choice.get("index", position),
                    "message": message,
                    "logprobs": choice.get("logprobs"),
                    "finish_reason": choice.get("finish_reason"),
                }
            )
        record = self._record_for(
            call,
            status=UsageStatus.COMPLETED,
            texts=texts,
            upstream_usage=data.get("usage"),
            finish_reasons=finish_reasons,
        )
        response = {
            "id": call.completion_id,
            "object": "chat.completion",
            "created": call.created,
            "model": call.model.id,
            "choices": choices,
            "usage": {
                "prompt_tokens": record.prompt_tokens,
                "completion_tokens": record.completion_tokens,
                "total_tokens": record.total_tokens,
            },
        }
        if isinstance(data.get("system_fingerprint"), str):
            response["system_fingerprint"] = data["system_fingerprint"]
        return response, record

    # --- streaming -----------------------------------------------------------------

    async def _relay(
        self, call: _Call, chunks: AsyncIterator[dict[str, Any]], *, include_usage: bool
    ) -> AsyncIterator[bytes]:
        texts: dict[int, list[str]] = {}
        finish: dict[int, str] = {}
        upstream_usage: Any = None
        record: UsageRecord | None = None
        try:
            failure: GatewayError | None = None
            try:
                async for chunk in chunks:
                    if chunk.get("usage"):
                        upstream_usage = chunk["usage"]
                    choices = chunk.get("choices")
                    if not choices:
                        continue  # the upstream's usage chunk: ours is sent at the end
                    for choice in choices:
                        choice.pop("stop_reason", None)  # vLLM's, not OpenAI's
                        delta = choice.get("delta") or {}
                        index = choice.get("index", 0)
                        for name in ("content", "reasoning_content"):
                            text = delta.get(name)
                            if text:
                                texts.setdefault(index, []).append(text)
                                if call.first_token_at is None:
                                    call.first_token_at = time.perf_counter()
                        if choice.get("finish_reason"):
                            finish[index] = choice["finish_reason"]
                    chunk["id"] = call.completion_id
                    chunk["object"] = "chat.completion.chunk"
                    chunk["created"] = call.created
                    chunk["model"] = call.model.id
                    if include_usage:
                        chunk["usage"] = None
                    else:
                        chunk.pop("usage", None)
                    yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            except GatewayError as exc:
                failure = exc
            record = self._stream_record(call, texts, finish, upstream_usage, failure)
            await self._record(record, call)
            if failure is not None:
                yield sse_error_event(failure)
                return
            if include_usage:
                usage_chunk = {
                    "id": call.completion_id,
                    "object": "chat.completion.chunk",
                    "created": call.created,
                    "model": call.model.id,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": record.prompt_tokens,
                        "completion_tokens": record.completion_tokens,
                        "total_tokens": record.total_tokens,
                    },
                }
                yield b"data: " + orjson.dumps(usage_chunk) + b"\n\n"
            yield _DONE
        finally:
            # Runs on normal end, on failure and when the client went away (the task is
            # then cancelled): close the upstream at once, and bill what was generated.
            with anyio.CancelScope(shield=True):
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
                if record is None:
                    record = self._record_for(
                        call,
                        status=UsageStatus.CLIENT_DISCONNECTED,
                        texts=["".join(t) for t in texts.values()],
                        upstream_usage=None,
                        finish_reasons=[finish.get(i) for i in sorted(texts)],
                        http_status=499,
                    )
                    await self._record(record, call)

    def _stream_record(
        self,
        call: _Call,
        texts: dict[int, list[str]],
        finish: dict[int, str],
        upstream_usage: Any,
        failure: GatewayError | None,
    ) -> UsageRecord:
        indexes = sorted(set(texts) | set(finish))
        return self._record_for(
            call,
            status=UsageStatus.COMPLETED if failure is None else _status_of(failure),
            texts=["".join(texts.get(i, [])) for i in indexes],
            upstream_usage=upstream_usage if failure is None else None,
            finish_reasons=[finish.get(i) for i in indexes],
            http_status=200 if failure is None else failure.status_code,
            error=failure,
        )

    # --- usage ---------------------------------------------------------------------

    def _record_for(
        self,
        call: _Call,
        *,
        status: UsageStatus,
        texts: list[str],
        upstream_usage: Any,
        finish_reasons: list[str | None],
        http_status: int = 200,
        error: GatewayError | None = None,
    ) -> UsageRecord:
        gateway_completion = sum(call.tokenizer.count_text(t) for t in texts)
        if call.counts_eos:
            gateway_completion += sum(1 for reason in finish_reasons if reason == "stop")
        upstream = _usage_ints(upstream_usage)
        prompt, completion = upstream or (call.gateway_prompt_tokens, gateway_completion)
        reasons = [r for r in finish_reasons if r]
        return UsageRecord(
            request_id=call.request_id,
            key_id=call.key.key_id,
            model=call.model.id,
            endpoint=call.model.upstream.endpoint,
            created_at=datetime.now(UTC),
            stream=call.stream,
            status=status,
            http_status=http_status,
            prompt_tokens=prompt,
            completion_tokens=completion,
            upstream_prompt_tokens=upstream[0] if upstream else None,
            upstream_completion_tokens=upstream[1] if upstream else None,
            gateway_prompt_tokens=call.gateway_prompt_tokens,
            gateway_completion_tokens=gateway_completion,
            finish_reason=",".join(reasons) if reasons else None,
            latency_ms=call.elapsed_ms(),
            ttft_ms=call.elapsed_ms(call.first_token_at) if call.first_token_at else None,
            error=error.message if error else None,
        )

    def _failed_record(self, call: _Call, error: GatewayError) -> UsageRecord:
        """The upstream refused or failed before generating: nothing is billed."""
        record = self._record_for(
            call,
            status=_status_of(error),
            texts=[],
            upstream_usage=None,
            finish_reasons=[],
            http_status=error.status_code,
            error=error,
        )
        record.prompt_tokens = 0
        return record

    async def _record(self, record: UsageRecord, call: _Call) -> None:
        """Write the record (within its deadline; never raises). It carries what admission
        reserved, which the aggregator settles off the request path."""
        if call.admission is not None:
            record.reserved_tokens = call.admission.reserved_tokens
            record.reserved_window_minute = call.admission.window_minute
            record.reserved_month = call.admission.month
        await self._usage.record(record)
        upstream_differs = record.upstream_prompt_tokens is not None and (
            record.upstream_prompt_tokens != record.gateway_prompt_tokens
            or record.upstream_completion_tokens != record.gateway_completion_tokens
        )
        self._telemetry.completed(record, mismatch=upstream_differs)
