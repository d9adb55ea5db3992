"""The chat completions surface: its wire adapters for the pipeline (parse, count and
plan, screen, forward, answer, relay). No HTTP types; the order of the steps, admission,
routing and the usage record are the pipeline's (gateway/pipeline)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import anyio.to_thread

from gateway import generation
from gateway.backends.affinity import NO_HINT
from gateway.backends.routing import RoutedBackend
from gateway.backends.wire import CHAT
from gateway.chat import prompt as chat_prompt
from gateway.chat import responses as chat_responses
from gateway.chat.prefix import route_hint
from gateway.chat.protocol import ChatCompletionRequest
from gateway.chat.responses import ChatCompletion, Choice, ResponseMessage
from gateway.chat.stream import CHAT_STREAM, chat_completion
from gateway.errors import ConfigurationError, InvalidRequestError
from gateway.generation import check_context_length
from gateway.guard import NO_SCREENING, GuardService, Screening
from gateway.inputs import parse_body, validate
from gateway.metering import Meter
from gateway.models.registry import ModelConfig
from gateway.pipeline import Plan, RequestContext, relay
from gateway.tokens import ChatTokenizer, TokenizerStore
from gateway.tokens.errors import TemplateRefused
from gateway.tokens.offloop import tokenizer_for

logger = logging.getLogger(__name__)

MAX_MESSAGES = 2048
ROUTE = "chat"
# Prompts whose rendering and counting is more work than this (characters, plus a cost
# per message) are counted in a worker thread, so they do not stall other requests.
INLINE_COUNT_WORK = 16_000
# Roles whose string content every chat template here copies whole (the lower bound's texts).
_COPIED_ROLES = frozenset({"system", "developer", "user", "tool"})
_ALL_ROLES = _COPIED_ROLES | {"assistant"}
_MESSAGE_WORK = 64


class ChatSurface:
    route = ROUTE
    wire = CHAT

    def __init__(self, *, default_max_tokens: int) -> None:
        self._default_max_tokens = default_max_tokens

    def parse(self, raw: bytes) -> ChatCompletionRequest:
        data = parse_body(raw)
        messages = data.get("messages")
        if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
            raise InvalidRequestError(
                f"'messages' has {len(messages)} items; at most {MAX_MESSAGES} are accepted.",
                param="messages",
            )
        return validate(ChatCompletionRequest, data)

    def model_id(self, request: ChatCompletionRequest) -> str:
        return request.model

    def streams(self, request: ChatCompletionRequest) -> bool:
        return bool(request.stream)

    async def plan(
        self, request: ChatCompletionRequest, ctx: RequestContext, tokenizers: TokenizerStore
    ) -> Plan:
        model, meter = ctx.model, ctx.meter
        assert model is not None
        meter.media = chat_prompt.check_modalities(request, model)
        meter.counts_eos = not request.stop
        body = self._cold_body(request, model, meter, tokenizers)
        hint = NO_HINT  # a cold instance routes by weighted P2C until it has counted
        if body is None:
            tokenizer = await tokenizer_for(tokenizers, model.tokenizer)
            meter.tokenizer = tokenizer
            self._refuse_past_context(request, model, tokenizer)
            meter.prompt_tokens = await self._count_prompt(tokenizer, request)
            body = self.upstream_body(
                request,
                model,
                prompt_tokens=meter.prompt_tokens,
                default_max_tokens=self._default_max_tokens,
            )
            check_context_length(model, prompt_tokens=meter.prompt_tokens, body=body)
            if len(model.endpoints) > 1 or model.fallbacks:  # a choice of replica to make
                hint = await route_hint(tokenizer, request)
        meter.max_tokens = body["max_tokens"]
        reserve = meter.prompt_tokens + body["max_tokens"] * (request.n or 1)
        return Plan(body=body, reserve=reserve, hint=hint)

    def screening(
        self, request: ChatCompletionRequest, ctx: RequestContext, guard: GuardService
    ) -> Screening:
        assert ctx.model is not None
        # guardrails (gateway/guard): none without a policy, and then no messages built
        policy = guard.policy(model=ctx.model, key_id=ctx.key.key_id)
        if policy is None:
            return NO_SCREENING
        return guard.screening(
            policy, meter=ctx.meter, messages=chat_prompt.template_messages(request)
        )

    async def forward(
        self,
        _request: ChatCompletionRequest,
        ctx: RequestContext,
        backend: RoutedBackend,
        plan: Plan,
    ) -> dict[str, Any]:
        completion = await backend.complete(
            plan.body, trace=ctx.trace, tenant=ctx.key.key_id, hint=plan.hint
        )
        ctx.meter.observe_completion(completion)
        return completion

    async def answer(
        self, _request: ChatCompletionRequest, ctx: RequestContext, data: Mapping[str, Any]
    ) -> ChatCompletion:
        return _response(ctx.meter, data)

    def relay(
        self,
        request: ChatCompletionRequest,
        ctx: RequestContext,
        chunks: AsyncIterator[dict[str, Any]],
    ) -> AsyncIterator[bytes]:
        return relay(ctx.meter, chunks, include_usage=request.include_usage, kind=CHAT_STREAM)

    def _cold_body(
        self,
        request: ChatCompletionRequest,
        model: ModelConfig,
        meter: Meter,
        tokenizers: TokenizerStore,
    ) -> dict[str, Any] | None:
        """A cold instance (tokenizer not loaded) forwards at once when the prompt's upper
        bound decides everything the count would: the context-length check passes and
        `max_tokens` is not cut by it. Admission reserves the bound (settled exactly
        later); the count runs beside the upstream call (Meter.deferred). None: count
        first, as a warm instance does."""
        if tokenizers.loaded(model.tokenizer) is not None:
            return None
        bound = chat_prompt.prompt_upper_bound(request)
        if bound > INLINE_COUNT_WORK:
            # A large prompt is counted first, in a worker thread, as on a warm instance:
            # rendering and counting it beside the upstream call competed with the event
            # loop for the GIL for seconds (the hostile-input test's 3.8 MB prompt).
            return None
        cap = model.max_tokens or self._default_max_tokens
        body = self.upstream_body(
            request, model, prompt_tokens=bound, default_max_tokens=self._default_max_tokens
        )
        limit = model.max_model_len
        if limit is not None and (
            bound + body["max_tokens"] > limit
            or (not request.requested_max_tokens and body["max_tokens"] < cap)
        ):
            return None
        reserve = bound + body["max_tokens"] * (request.n or 1)
        key = meter.key
        if any(most is not None and reserve > most for most in (key.tpm, key.monthly_tokens)):
            return None  # the bound alone would be refused where the count may fit
        meter.prompt_tokens, meter.prompt_counted = bound, False

        async def count() -> None:
            tokenizer = await tokenizer_for(tokenizers, model.tokenizer)
            prompt_tokens = await self._count_prompt(tokenizer, request)
            meter.prompt_tokens, meter.tokenizer = prompt_tokens, tokenizer

        meter.deferred = asyncio.create_task(count())
        meter.deferred.add_done_callback(_retrieved)
        return body

    def _refuse_past_context(
        self, request: ChatCompletionRequest, model: ModelConfig, tokenizer: ChatTokenizer
    ) -> None:
        """A large prompt whose cheap lower bound alone is past the model's context is refused
        before it is rendered and counted: the count of a body that large is the request
        path's largest use of memory (issue 27)."""
        least = prompt_lower_bound(request, model, tokenizer)
        if least is None:
            return
        body = self.upstream_body(
            request, model, prompt_tokens=least, default_max_tokens=self._default_max_tokens
        )
        check_context_length(model, prompt_tokens=least, body=body)

    async def _count_prompt(self, tokenizer: ChatTokenizer, request: ChatCompletionRequest) -> int:
        messages = chat_prompt.template_messages(request)  # as vLLM hands them to the template
        tools = chat_prompt.template_tools(request)
        kwargs = chat_prompt.template_kwargs(request)
        work = sum(len(str(m.get("content") or "")) + _MESSAGE_WORK for m in messages)
        if tools:
            work += sum(len(str(t)) for t in tools)
        if not tokenizer.has_chat_template:
            raise ConfigurationError(f"the tokenizer of {request.model!r} has no chat template")
        count = functools.partial(tokenizer.count_chat, messages, tools, template_kwargs=kwargs)
        try:
            if work <= INLINE_COUNT_WORK:
                return count()
            return await anyio.to_thread.run_sync(count)
        except TemplateRefused as exc:
            # The model's own template refused the conversation (roles must alternate):
            # the request's fault, a 400. Any other failure is the gateway's (a 500).
            raise InvalidRequestError(
                f"The model's chat template cannot render these messages: {_reason(exc)}",
                param="messages",
            ) from exc

    @staticmethod
    def upstream_body(
        request: ChatCompletionRequest,
        model: ModelConfig,
        *,
        prompt_tokens: int,
        default_max_tokens: int,
    ) -> dict[str, Any]:
        """What the upstream is sent. `max_tokens` is decided here, once, for every key:
        the request's, capped by the model's `max_tokens` (or DEFAULT_MAX_TOKENS), and
        that cap when the request sets none (never past `max_model_len`), so a reservation
        really is the worst case and a forgotten stream cannot generate without bound."""
        body = request.model_dump(exclude_unset=True, exclude_none=True, exclude={"model_params"})
        body["model"] = model.upstream_model
        cap = model.max_tokens or default_max_tokens
        asked = request.requested_max_tokens
        body.pop("max_completion_tokens", None)
        body["max_tokens"] = (
            min(asked, cap)
            if asked
            else generation.default_max_tokens(model, prompt_tokens=prompt_tokens, default=cap)
        )
        if request.stream:
            # Always ask for usage, so the record has the upstream's figures; the usage
            # chunk is dropped on the way back unless the client asked for it.
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        return body


def _retrieved(task: asyncio.Task[None]) -> None:
    """A deferred count nobody awaits may fail unseen: its error is read (no asyncio
    warning); the Meter flags it when it needed the figure."""
    if not task.cancelled():
        task.exception()


def _reason(exc: Exception) -> str:
    text = str(exc) if str(exc) else type(exc).__name__
    return text[:200]


def _response(meter: Meter, data: Mapping[str, Any]) -> ChatCompletion:
    """The client's body from the upstream's validated one (backends/wire.py)."""
    choices: list[Choice] = []
    for position, choice in enumerate(data["choices"]):
        upstream_message = choice.get("message") or {}
        message: ResponseMessage = {
            "role": "assistant",
            "content": upstream_message.get("content"),
            "refusal": upstream_message.get("refusal"),
        }
        # Passed through only when present: tool calls, and vLLM's reasoning extension.
        if upstream_message.get("tool_calls"):
            message["tool_calls"] = upstream_message["tool_calls"]
        if upstream_message.get("reasoning_content"):
            message["reasoning_content"] = upstream_message["reasoning_content"]
        choices.append(
            {
                "index": choice.get("index", position),
                "message": message,
                "logprobs": chat_responses.logprobs(choice.get("logprobs")),
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return chat_completion(meter, choices, data)


def prompt_lower_bound(
    request: ChatCompletionRequest, model: ModelConfig, tokenizer: ChatTokenizer
) -> int | None:
    """The cheap lower bound on the prompt's tokens (ChatTokenizer.lower_bound) when the model
    has a context length to hold it to and the prompt is too large to count at once, else
    None. It reads the contents the templates copy whole (system, user, tool), and assistant
    turns where the model's template cuts no content (Qwen3's keeps what follows `</think>`)."""
    if model.max_model_len is None:
        return None
    roles = _ALL_ROLES if tokenizer.copies_contents_whole else _COPIED_ROLES
    # as the template sees them: text parts joined by newlines (a copy only for parts)
    texts = [m.text() for m in request.messages if m.role in roles]
    if sum(map(len, texts)) <= INLINE_COUNT_WORK:
        return None
    return tokenizer.lower_bound(texts)
