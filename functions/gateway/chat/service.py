"""Chat completions: validate, authorize, count, admit, forward, relay. No HTTP types.

Accounting is the Meter's (gateway/metering): every authenticated request leaves exactly
one usage record, whichever way it ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import anyio
import anyio.to_thread

from gateway.backends.wire import CHAT
from gateway.chat import prompt as chat_prompt
from gateway.chat import responses as chat_responses
from gateway.chat.protocol import ChatCompletionRequest
from gateway.chat.responses import ChatCompletion, Choice, ResponseMessage
from gateway.chat.stream import MeteredStream, chat_completion, relay
from gateway.errors import (
    ConfigurationError,
    InvalidRequestError,
)
from gateway.inputs import parse_body, validate
from gateway.metering import Meter
from gateway.models.registry import ModelConfig
from gateway.serving import GenerationService, RouteResult
from gateway.tokens import ChatTokenizer
from gateway.usage import UsageStatus

logger = logging.getLogger(__name__)

MAX_MESSAGES = 2048
ROUTE = "chat"
# Prompts whose rendering and counting is more work than this (characters, plus a cost
# per message) are counted in a worker thread, so they do not stall other requests.
INLINE_COUNT_WORK = 16_000
_MESSAGE_WORK = 64


class ChatService(GenerationService):
    route = ROUTE

    async def _create(self, raw: bytes, meter: Meter) -> RouteResult:
        data = parse_body(raw)
        messages = data.get("messages")
        if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
            raise InvalidRequestError(
                f"'messages' has {len(messages)} items; at most {MAX_MESSAGES} are accepted.",
                param="messages",
            )
        request = validate(ChatCompletionRequest, data)
        meter.stream = bool(request.stream)
        model = self._deps.resolve_model(key=meter.key, model_id=request.model, route=ROUTE)
        meter.model_id, meter.endpoint = model.id, model.upstream.endpoint
        meter.media = chat_prompt.check_modalities(request, model)
        meter.counts_eos = not request.stop
        body = self._cold_body(request, model, meter)
        if body is None:
            tokenizer = await self._deps.tokenizer(model)
            meter.count_text = tokenizer.count_text
            meter.prompt_tokens = await self._count_prompt(tokenizer, request)
            body = self.upstream_body(
                request,
                model,
                prompt_tokens=meter.prompt_tokens,
                default_max_tokens=self._default_max_tokens,
            )
            chat_prompt.check_context_length(model, prompt_tokens=meter.prompt_tokens, body=body)
        reserve = meter.prompt_tokens + body["max_tokens"] * (request.n or 1)
        headers = await self._deps.admit(meter, reserve)
        screening = self._guard.screening(  # guardrails (gateway/guard): no-op without a policy
            model=model, meter=meter, messages=lambda: chat_prompt.template_messages(request)
        )
        await screening.check_input()
        backend = self._backend_for(model, CHAT)
        meter.forwarded = True
        if request.stream:
            chunks = screening.screen_stream(await backend.open_stream(body))
            stream = relay(meter, chunks, include_usage=request.include_usage)
            return RouteResult(stream=MeteredStream(stream, meter, chunks), headers=headers)
        completion = await backend.complete(body)
        meter.observe_completion(completion)
        completion = await screening.check_completion(completion)
        await meter.close(UsageStatus.COMPLETED)
        return RouteResult(body=_response(meter, completion), headers=headers)

    def _cold_body(
        self, request: ChatCompletionRequest, model: ModelConfig, meter: Meter
    ) -> dict[str, Any] | None:
        """A cold instance (tokenizer not loaded) forwards at once when the prompt's upper
        bound decides everything the count would: the context-length check passes and
        `max_tokens` is not cut by it. Admission reserves the bound (settled exactly
        later); the count runs beside the upstream call (Meter.deferred). None: count
        first, as a warm instance does."""
        if self._deps.tokenizers.loaded(model.tokenizer) is not None:
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
            tokenizer = await self._deps.tokenizer(model)
            prompt_tokens = await self._count_prompt(tokenizer, request)
            meter.prompt_tokens, meter.count_text = prompt_tokens, tokenizer.count_text

        meter.deferred = asyncio.create_task(count())
        meter.deferred.add_done_callback(_retrieved)
        return body

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
        except Exception as exc:
            # The model's own template refused the conversation (roles must alternate,
            # a field of the wrong type): the request's fault, a 400.
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
            else chat_prompt.default_max_tokens(model, prompt_tokens=prompt_tokens, default=cap)
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


def _response(meter: Meter, data: dict[str, Any]) -> ChatCompletion:
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
