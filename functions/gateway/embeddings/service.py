"""The embeddings surface: its wire adapters for the pipeline (forwarded in batches,
reassembled in order). No HTTP types.

The same keys, allow-lists, limits, errors and usage records as chat (route
"embeddings", no completion tokens). Inputs are counted as vLLM counts them: each text
tokenized with the tokenizer's special tokens; a token-id input counts its length. An
input over the model's limit is a 400 before anything is forwarded.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio

from gateway.backends.attempts import RouteTrace
from gateway.backends.routing import RoutedBackend
from gateway.backends.wire import EMBEDDINGS, MAX_USAGE_TOKENS, MalformedUpstream
from gateway.embeddings.protocol import Embedding, EmbeddingList, EmbeddingRequest
from gateway.errors import GatewayError, InvalidRequestError
from gateway.guard import NO_SCREENING, GuardService, Screening
from gateway.inputs import parse_body, validate
from gateway.metering import count_all
from gateway.metering.generated import INLINE_COUNT_CHARS
from gateway.models.registry import ModelConfig
from gateway.pipeline import Plan, RequestContext
from gateway.prompts import one_by_one
from gateway.tokens import TokenizerStore
from gateway.tokens.offloop import tokenizer_for

ROUTE = "embeddings"
# Batches of one request sent to the upstream at once.
MAX_CONCURRENT_BATCHES = 4


class EmbeddingSurface:
    route = ROUTE
    wire = EMBEDDINGS

    def parse(self, raw: bytes) -> EmbeddingRequest:
        return validate(EmbeddingRequest, parse_body(raw))

    def model_id(self, request: EmbeddingRequest) -> str:
        return request.model

    def streams(self, _request: EmbeddingRequest) -> bool:
        return False

    async def plan(
        self, request: EmbeddingRequest, ctx: RequestContext, tokenizers: TokenizerStore
    ) -> Plan:
        model, meter = ctx.model, ctx.meter
        assert model is not None
        meter.counts_eos = False
        texts, token_ids = one_by_one(request.input)
        if texts:
            tokenizer = await tokenizer_for(tokenizers, model.tokenizer)
            # large inputs past the limit by their lower bound: refused uncounted (issue 27)
            check_input_limit(
                model, tokenizer.each_lower_bound(texts, over_chars=INLINE_COUNT_CHARS)
            )
            counts = await count_all(tokenizer.count_text_with_special, texts)
        else:
            counts = [len(ids) for ids in token_ids]
        check_input_limit(model, counts)
        meter.prompt_tokens = sum(counts)
        body = request.model_dump(exclude_unset=True, exclude_none=True)
        body["model"] = model.upstream_model
        return Plan(body=body, reserve=meter.prompt_tokens)

    def screening(
        self, _request: EmbeddingRequest, _ctx: RequestContext, _guard: GuardService
    ) -> Screening:
        return NO_SCREENING  # guard policies screen generation, not embeddings

    async def forward(
        self, request: EmbeddingRequest, ctx: RequestContext, backend: RoutedBackend, plan: Plan
    ) -> dict[str, Any]:
        texts, token_ids = one_by_one(request.input)
        inputs: Sequence[str | list[int]] = texts or token_ids
        replies = await embed_batches(
            backend,
            plan.body,
            inputs,
            batch_size=ctx.model.max_batch_size if ctx.model else None,
            trace=ctx.trace,
            tenant=ctx.key.key_id,
        )
        ctx.meter.observe_usage(upstream_usage(replies))
        return {"data": reassemble(replies, encoding=request.encoding_format or "float")}

    async def answer(
        self, _request: EmbeddingRequest, ctx: RequestContext, data: Mapping[str, Any]
    ) -> EmbeddingList:
        record = ctx.meter.record
        assert record is not None
        return {
            "object": "list",
            "data": data["data"],
            "model": ctx.meter.model_id,
            "usage": {"prompt_tokens": record.prompt_tokens, "total_tokens": record.total_tokens},
        }

    def relay(
        self,
        _request: EmbeddingRequest,
        _ctx: RequestContext,
        _chunks: AsyncIterator[dict[str, Any]],
    ) -> AsyncIterator[bytes]:
        raise AssertionError("embeddings never stream")


def check_input_limit(model: ModelConfig, counts: Sequence[int]) -> None:
    limit = model.input_limit
    if not counts:
        return
    longest = max(counts)
    if limit is None or longest <= limit:
        return
    raise InvalidRequestError(
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{longest} tokens in the input for embedding generation. Please reduce the length "
        "of the input.",
        param="input",
        code="context_length_exceeded",
    )


Batch = tuple[int, int, dict[str, Any]]  # first input's position, inputs, the reply


async def embed_batches(
    backend: RoutedBackend,
    body: dict[str, Any],
    inputs: Sequence[Any],
    *,
    batch_size: int | None,
    trace: RouteTrace,
    tenant: str | None = None,
) -> list[Batch]:
    """Each batch's reply, in order; batches of at most `batch_size` inputs, at most
    MAX_CONCURRENT_BATCHES in flight."""
    if batch_size is None or len(inputs) <= batch_size:
        return [(0, len(inputs), await backend.complete(body, trace=trace, tenant=tenant))]
    starts = list(range(0, len(inputs), batch_size))
    replies: dict[int, dict[str, Any]] = {}
    limiter = anyio.CapacityLimiter(MAX_CONCURRENT_BATCHES)

    async def one(start: int) -> None:
        async with limiter:
            batch = list(inputs[start : start + batch_size])
            replies[start] = await backend.complete(
                {**body, "input": batch}, trace=trace, tenant=tenant
            )

    try:
        async with anyio.create_task_group() as group:
            for start in starts:
                group.start_soon(one, start)
    except BaseExceptionGroup as failures:  # the first batch failure is the request's
        first = _first_gateway_error(failures)
        if first is None:
            raise
        raise first from None
    return [(s, len(inputs[s : s + batch_size]), replies[s]) for s in starts]


def _first_gateway_error(group: BaseExceptionGroup[Any]) -> GatewayError | None:
    for exc in group.exceptions:
        if isinstance(exc, GatewayError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_gateway_error(exc)
            if found is not None:
                return found
    return None


def upstream_usage(replies: Sequence[Batch]) -> dict[str, int] | None:
    """The upstreams' prompt tokens summed, in the Meter's terms; None unless every batch
    reported a sane figure (then the gateway's count is billed)."""
    total = 0
    for _, _, reply in replies:
        usage = reply.get("usage")
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if not isinstance(prompt, int) or isinstance(prompt, bool) or prompt < 0:
            return None
        total += prompt
    return {"prompt_tokens": min(total, MAX_USAGE_TOKENS + 1), "completion_tokens": 0}


def reassemble(replies: Sequence[Batch], *, encoding: str) -> list[Embedding]:
    """The batches' vectors as one list, in input order; a reply without exactly one
    vector per input (by index) is malformed."""
    data: list[Embedding] = []
    for start, size, reply in replies:
        items = sorted(reply["data"], key=lambda item: item.get("index", 0))
        if [item.get("index", i) for i, item in enumerate(items)] != list(range(size)):
            raise MalformedUpstream("The model endpoint sent a malformed body.")
        for position, item in enumerate(items):  # sorted by index, or as sent without one
            vector = encoded(item["embedding"], encoding)
            index = start + item.get("index", position)
            data.append({"object": "embedding", "index": index, "embedding": vector})
    return data


def encoded(vector: list[float] | str, encoding: str) -> list[float] | str:
    """The vector as the client asked for it: OpenAI's base64 is little-endian float32."""
    try:
        if encoding == "base64":
            if isinstance(vector, str):
                return vector
            return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        if isinstance(vector, list):
            return vector
        raw = base64.b64decode(vector, validate=True)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))  # struct.error unless 4n bytes
    except (ValueError, OverflowError, struct.error) as exc:  # e.g. 1e39: not a float32
        raise MalformedUpstream("The model endpoint sent a malformed body.") from exc
