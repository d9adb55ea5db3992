"""Anthropic's Messages API surface (`POST /v1/messages`) and its token count
(`POST /v1/messages/count_tokens`).

A Messages request is translated to the chat-completions body the chat route would forward
for the same conversation (translate.py, vLLM's conversion), then counted, planned,
screened and forwarded by the chat surface's own adapters: the prompt counts exactly as
chat counts it. The answer, buffered or streamed, is translated back into a `message` or
Anthropic's stream events. Errors on these routes are given Anthropic's shape by the app
(app.py, messages/errors.py).

A model that serves the Messages API natively (`native_routes`) is counted and planned the
same way, then sent the Anthropic body itself on /v1/messages (`max_tokens` as planned);
its answer is read as chat by the wire parsers (backends/wire_native.py), so the client
gets the same message, events and usage as on the translated path.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from gateway.backends.native import Ended
from gateway.backends.routing import RoutedBackend
from gateway.backends.wire import CHAT
from gateway.backends.wire_messages import MESSAGES
from gateway.chat import prompt as chat_prompt
from gateway.chat.protocol import ChatCompletionRequest
from gateway.chat.service import ChatSurface, prompt_lower_bound
from gateway.errors import ConfigurationError, GatewayError, InvalidRequestError
from gateway.generation import check_context_length
from gateway.guard import GuardService, Screening
from gateway.inputs import parse_body, validate
from gateway.keys import ApiKey
from gateway.limits import LimitStore
from gateway.messages import answer, translate
from gateway.messages.protocol import MessagesRequest, parse_count_tokens, parse_request
from gateway.messages.stream import MessagesStream, sse_frame
from gateway.models.registry import ModelConfig
from gateway.pipeline import Plan, RequestContext, billed_usage
from gateway.pipeline.events import relay_events, with_details
from gateway.tokens import TokenizerStore
from gateway.tokens.errors import TemplateRefused
from gateway.tokens.offloop import tokenizer_for

ROUTE = "messages"


@dataclass
class MessagesCall:
    """One request between the pipeline's steps: the Messages request, and the chat
    request `plan` translated it to (what is counted and forwarded)."""

    request: MessagesRequest
    chat: ChatCompletionRequest | None = None
    native: bool = False  # forwarded to the upstream's own /v1/messages

    @property
    def chat_request(self) -> ChatCompletionRequest:
        assert self.chat is not None, "plan() runs first"
        return self.chat


class MessagesSurface:
    route = ROUTE
    wire = CHAT  # translated: the upstream is spoken to in chat completions

    def __init__(self, *, chat: ChatSurface) -> None:
        self._chat = chat

    def parse(self, raw: bytes) -> MessagesCall:
        return MessagesCall(parse_request(parse_body(raw)))

    def model_id(self, call: MessagesCall) -> str:
        return call.request.model

    def streams(self, call: MessagesCall) -> bool:
        return bool(call.request.stream)

    async def plan(
        self, call: MessagesCall, ctx: RequestContext, tokenizers: TokenizerStore
    ) -> Plan:
        call.chat = validate(ChatCompletionRequest, translate.to_chat(call.request))
        plan = await self._chat.plan(call.chat, ctx, tokenizers)
        assert ctx.model is not None
        if ROUTE not in ctx.model.native_routes:
            return plan
        # Counted and capped as chat; sent as the Messages request it is.
        call.native = ctx.meter.own_prompt = True  # billed by the chat template's count
        body = translate.native_body(call.request)
        body["model"] = plan.body["model"]
        body["max_tokens"] = plan.body["max_tokens"]
        return dataclasses.replace(plan, body=body, wire=MESSAGES)

    def screening(self, call: MessagesCall, ctx: RequestContext, guard: GuardService) -> Screening:
        return self._chat.screening(call.chat_request, ctx, guard)

    async def forward(
        self, call: MessagesCall, ctx: RequestContext, backend: RoutedBackend, plan: Plan
    ) -> dict[str, Any]:
        return await self._chat.forward(call.chat_request, ctx, backend, plan)

    async def answer(
        self, call: MessagesCall, ctx: RequestContext, data: Mapping[str, Any]
    ) -> dict[str, Any]:
        usage = data.get("usage")
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        return answer.message_from_chat(
            data,
            message_id=message_id(ctx.request_id),
            model=call.request.model,
            request=call.request,
            usage=with_details(billed_usage(ctx.meter), details),
        )

    def relay(
        self, call: MessagesCall, ctx: RequestContext, chunks: AsyncIterator[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        if call.native:
            chunks = Ended(chunks)
        return relay_events(ctx.meter, chunks, MessagesEvents(call, ctx))


class MessagesEvents:
    """Anthropic's stream events for one request (pipeline/events.EventStream)."""

    def __init__(self, call: MessagesCall, ctx: RequestContext) -> None:
        self._request_id = ctx.request_id
        self._stream = MessagesStream(
            message_id=message_id(ctx.request_id),
            model=call.request.model,
            request=call.request,
            input_tokens=ctx.meter.prompt_tokens,
        )

    def start(self) -> list[bytes]:
        return [sse_frame(event) for event in self._stream.start()]

    def feed(self, chunk: Mapping[str, Any]) -> list[bytes]:
        return [sse_frame(event) for event in self._stream.feed(chunk)]

    async def finish(self, usage: Mapping[str, Any]) -> list[bytes]:
        return [sse_frame(event) for event in self._stream.finish(usage)]

    def fail(self, error: GatewayError) -> list[bytes]:
        return [sse_frame(e) for e in self._stream.fail(error, request_id=self._request_id)]


def message_id(request_id: str) -> str:
    return f"msg_{request_id}"


class TokenCounter:
    """`POST /v1/messages/count_tokens`: the gateway's own count of the conversation, the
    same count a Messages request of it is billed by. Authenticated (the route), the model
    resolved as the pipeline resolves it, and counted as one request against the key's
    rate limit (nothing reserved: nothing is generated). No usage record is written: it
    is not billed, as Anthropic's count_tokens is free."""

    def __init__(self, *, tokenizers: TokenizerStore, limits: LimitStore | None) -> None:
        self._tokenizers = tokenizers
        self._limits = limits

    def parse(self, raw: bytes) -> ChatCompletionRequest:
        """The count_tokens request as the chat request it is counted as (a 400 names the
        field)."""
        request = parse_count_tokens(parse_body(raw))
        return validate(ChatCompletionRequest, translate.count_tokens_body(request))

    async def admit(self, key: ApiKey, *, request_id: str) -> dict[str, str]:
        """One request against the key's rate limit (429 past it); its x-ratelimit headers."""
        if self._limits is None:
            return {}
        admission = await self._limits.admit_within(
            key=key, reserve_tokens=0, request_id=request_id
        )
        return admission.headers

    async def count(self, request: ChatCompletionRequest, model: ModelConfig) -> dict[str, Any]:
        """Anthropic's MessageTokensCount for the conversation on `model`."""
        chat_prompt.check_modalities(request, model)
        tokenizer = await tokenizer_for(self._tokenizers, model.tokenizer)
        if not tokenizer.has_chat_template:
            raise ConfigurationError(f"the tokenizer of {model.id!r} has no chat template")
        least = prompt_lower_bound(request, model, tokenizer)
        if least is not None:  # past the context on its bound alone: not worth its count
            check_context_length(model, prompt_tokens=least, body={})
        count = functools.partial(
            tokenizer.count_chat,
            chat_prompt.template_messages(request),
            chat_prompt.template_tools(request),
            template_kwargs=chat_prompt.template_kwargs(request),
        )
        try:
            tokens = await anyio.to_thread.run_sync(count)
        except TemplateRefused as exc:
            raise InvalidRequestError(
                f"The model's chat template cannot render these messages: {str(exc)[:200]}",
                param="messages",
            ) from exc
        return translate.token_count(tokens)
