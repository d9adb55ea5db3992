"""The legacy completions surface: its wire adapters for the pipeline. No HTTP types.

The same keys, allow-lists, limits, errors and usage records as chat (route
"completions"). Prompts are counted as vLLM counts them for this route: each prompt's
text tokenized with the tokenizer's special tokens (BOS where it adds one); a token-id
prompt counts its length.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from gateway.backends.routing import RoutedBackend
from gateway.backends.wire import COMPLETIONS
from gateway.completions.prefix import route_hint
from gateway.completions.protocol import (
    Completion,
    CompletionChoice,
    CompletionRequest,
)
from gateway.errors import ContentFilterError, InvalidRequestError
from gateway.generation import check_context_length, default_max_tokens
from gateway.guard import NO_SCREENING, GuardService, Screening
from gateway.inputs import parse_body, validate
from gateway.metering import Meter, count_all
from gateway.metering.generated import INLINE_COUNT_CHARS
from gateway.models.registry import ModelConfig
from gateway.pipeline import Plan, RequestContext, StreamKind, billed_usage, relay
from gateway.prompts import one_by_one
from gateway.tokens import ChatTokenizer, TokenizerStore
from gateway.tokens.offloop import tokenizer_for

ROUTE = "completions"
# OpenAI's (and vLLM's) default for this route when a request sets no max_tokens.
DEFAULT_MAX_TOKENS = 16


class CompletionSurface:
    route = ROUTE
    wire = COMPLETIONS

    def __init__(self, *, default_max_tokens: int) -> None:
        self._default_max_tokens = default_max_tokens

    def parse(self, raw: bytes) -> CompletionRequest:
        return validate(CompletionRequest, parse_body(raw))

    def model_id(self, request: CompletionRequest) -> str:
        return request.model

    def streams(self, request: CompletionRequest) -> bool:
        return bool(request.stream)

    async def plan(
        self, request: CompletionRequest, ctx: RequestContext, tokenizers: TokenizerStore
    ) -> Plan:
        model, meter = ctx.model, ctx.meter
        assert model is not None
        tokenizer = await tokenizer_for(tokenizers, model.tokenizer)
        meter.tokenizer = tokenizer
        meter.counts_eos = not request.stop
        texts, _ = one_by_one(request.prompt)
        least = tokenizer.each_lower_bound(texts, over_chars=INLINE_COUNT_CHARS)
        if least:  # a large prompt past the context by its lower bound: refused uncounted
            body = self.upstream_body(request, model, longest_prompt=max(least))
            check_context_length(model, prompt_tokens=max(least), body=body, param="prompt")
        counts = await prompt_counts(tokenizer, request)
        meter.prompt_tokens = sum(counts)
        body = self.upstream_body(request, model, longest_prompt=max(counts))
        check_context_length(model, prompt_tokens=max(counts), body=body, param="prompt")
        meter.max_tokens = body["max_tokens"]
        prompts = len(counts) * (request.best_of or request.n or 1)
        reserve = meter.prompt_tokens + body["max_tokens"] * prompts
        if len(model.endpoints) > 1 or model.fallbacks:  # a choice of replica to make
            return Plan(body=body, reserve=reserve, hint=route_hint(tokenizer, request))
        return Plan(body=body, reserve=reserve)

    def screening(
        self, request: CompletionRequest, ctx: RequestContext, guard: GuardService
    ) -> Screening:
        """A model under a guard policy is screened as in chat: each prompt as a user
        turn. What this route cannot screen is refused rather than served unscreened:
        prompts given as token ids, and completions of a policy that screens output."""
        model = ctx.model
        assert model is not None
        texts, token_ids = one_by_one(request.prompt)
        policy = guard.policy(model=model, key_id=ctx.key.key_id)
        if policy is None:
            return NO_SCREENING
        screening = guard.screening(
            policy, meter=ctx.meter, messages=[{"role": "user", "content": t} for t in texts]
        )
        if screening.screens_output or token_ids:
            raise InvalidRequestError(
                f"The model `{model.id}` is screened by a guard policy that this route cannot "
                "apply (output screening, or prompts as token ids): use /v1/chat/completions, "
                "or send the prompt as text.",
                param="prompt",
                code="content_filter_unsupported",
            )
        return _PromptScreening(screening)

    async def forward(
        self, _request: CompletionRequest, ctx: RequestContext, backend: RoutedBackend, plan: Plan
    ) -> dict[str, Any]:
        completion = await backend.complete(
            plan.body, trace=ctx.trace, tenant=ctx.key.key_id, hint=plan.hint
        )
        ctx.meter.observe_completion(TEXT_COMPLETION.observed(completion, "message"))
        return completion

    async def answer(
        self, _request: CompletionRequest, ctx: RequestContext, data: Mapping[str, Any]
    ) -> Completion:
        return _response(ctx.meter, data)

    def relay(
        self, request: CompletionRequest, ctx: RequestContext, chunks: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        return relay(ctx.meter, chunks, include_usage=request.include_usage, kind=TEXT_COMPLETION)

    def upstream_body(
        self, request: CompletionRequest, model: ModelConfig, *, longest_prompt: int
    ) -> dict[str, Any]:
        """What the upstream is sent; `max_tokens` decided once, as chat decides it (with
        this route's default of 16), so a reservation is the worst case."""
        body = request.model_dump(exclude_unset=True, exclude_none=True)
        body["model"] = model.upstream_model
        cap = model.max_tokens or self._default_max_tokens
        default = min(DEFAULT_MAX_TOKENS, cap)
        if request.max_tokens:
            body["max_tokens"] = min(request.max_tokens, cap)
        else:
            body["max_tokens"] = default_max_tokens(
                model, prompt_tokens=longest_prompt, default=default
            )
        if request.stream:
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        return body


async def prompt_counts(tokenizer: ChatTokenizer, request: CompletionRequest) -> list[int]:
    texts, token_ids = one_by_one(request.prompt)
    if texts:
        return await count_all(tokenizer.count_text_with_special, texts)
    return [len(ids) for ids in token_ids]


class _PromptScreening(Screening):
    """Input screening whose refusal names this route's parameter, `prompt`."""

    def __init__(self, screening: Screening) -> None:
        self._screening = screening

    async def check_input(self) -> None:
        try:
            await self._screening.check_input()
        except ContentFilterError as exc:
            exc.param = "prompt"
            raise


def _response(meter: Meter, data: Mapping[str, Any]) -> Completion:
    """The client's body from the upstream's validated one (backends/wire.py)."""
    choices: list[CompletionChoice] = [
        {
            "index": choice.get("index", position),
            "text": choice.get("text") or "",
            "logprobs": logprobs if isinstance(logprobs := choice.get("logprobs"), dict) else None,
            "finish_reason": choice.get("finish_reason"),
        }
        for position, choice in enumerate(data["choices"])
    ]
    body = _completion(meter, choices)
    if isinstance(fingerprint := data.get("system_fingerprint"), str):
        body["system_fingerprint"] = fingerprint
    return body


def _completion(meter: Meter, choices: list[CompletionChoice]) -> Completion:
    """A whole text_completion body, or a stream's usage chunk (no choices)."""
    return {
        "id": f"cmpl-{meter.request_id}",
        "object": "text_completion",
        "created": meter.created,
        "model": meter.model_id,
        "choices": choices,
        "usage": billed_usage(meter),
    }


TEXT_COMPLETION = StreamKind(
    "text_completion",
    "cmpl",
    lambda meter: _completion(meter, []),
    text_field="text",
    null_usage=False,
)
