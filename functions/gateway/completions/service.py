"""Legacy completions: validate, authorize, count, admit, forward, relay. No HTTP types.

The same keys, allow-lists, limits, errors and usage records as chat (route
"completions"). Prompts are counted as vLLM counts them for this route: each prompt's
text tokenized with the tokenizer's special tokens (BOS where it adds one); a token-id
prompt counts its length.
"""

from __future__ import annotations

from typing import Any

from gateway.backends.wire import COMPLETIONS
from gateway.chat import prompt as chat_prompt
from gateway.chat.stream import MeteredStream, StreamKind, billed_usage, relay
from gateway.completions.protocol import (
    Completion,
    CompletionChoice,
    CompletionRequest,
    one_by_one,
)
from gateway.errors import ContentFilterError, InvalidRequestError
from gateway.guard import NO_SCREENING
from gateway.inputs import parse_body, validate
from gateway.metering import Meter, count_all
from gateway.models.registry import ModelConfig
from gateway.serving import GenerationService, RouteResult
from gateway.tokens import ChatTokenizer
from gateway.usage import UsageStatus

ROUTE = "completions"
# OpenAI's (and vLLM's) default for this route when a request sets no max_tokens.
DEFAULT_MAX_TOKENS = 16


class CompletionService(GenerationService):
    route = ROUTE

    async def _create(self, raw: bytes, meter: Meter) -> RouteResult:
        request = validate(CompletionRequest, parse_body(raw))
        meter.stream = bool(request.stream)
        model = self._deps.resolve_model(key=meter.key, model_id=request.model, route=ROUTE)
        meter.model_id, meter.endpoint = model.id, model.upstream.endpoint
        tokenizer = await self._deps.tokenizer(model)
        meter.count_text = tokenizer.count_text
        meter.counts_eos = not request.stop
        counts = await prompt_counts(tokenizer, request)
        meter.prompt_tokens = sum(counts)
        body = self.upstream_body(request, model, longest_prompt=max(counts))
        check_context(model, prompt_tokens=max(counts), body=body)
        prompts = len(counts) * (request.best_of or request.n or 1)
        headers = await self._deps.admit(meter, meter.prompt_tokens + body["max_tokens"] * prompts)
        await self._screen_input(request, model, meter)
        backend = self._backend_for(model, COMPLETIONS)
        meter.forwarded = True
        if request.stream:
            chunks = await backend.open_stream(body)
            stream = relay(meter, chunks, include_usage=request.include_usage, kind=TEXT_COMPLETION)
            return RouteResult(stream=MeteredStream(stream, meter, chunks), headers=headers)
        completion = await backend.complete(body)
        meter.observe_completion(TEXT_COMPLETION.observed(completion, "message"))
        await meter.close(UsageStatus.COMPLETED)
        return RouteResult(body=_response(meter, completion), headers=headers)

    async def _screen_input(
        self, request: CompletionRequest, model: ModelConfig, meter: Meter
    ) -> None:
        """A model under a guard policy is screened here as in chat: each prompt as a user
        turn. What this route cannot screen is refused rather than served unscreened:
        prompts given as token ids, and completions of a policy that screens output."""
        texts, token_ids = one_by_one(request.prompt)
        screening = self._guard.screening(
            model=model,
            meter=meter,
            messages=lambda: [{"role": "user", "content": t} for t in texts],
        )
        if screening is NO_SCREENING:
            return
        if screening.screens_output or token_ids:
            raise InvalidRequestError(
                f"The model `{model.id}` is screened by a guard policy that this route cannot "
                "apply (output screening, or prompts as token ids): use /v1/chat/completions, "
                "or send the prompt as text.",
                param="prompt",
                code="content_filter_unsupported",
            )
        try:
            await screening.check_input()
        except ContentFilterError as exc:
            exc.param = "prompt"
            raise

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
            body["max_tokens"] = chat_prompt.default_max_tokens(
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


def check_context(model: ModelConfig, *, prompt_tokens: int, body: dict[str, Any]) -> None:
    """Chat's context-length check, naming this route's parameter."""
    try:
        chat_prompt.check_context_length(model, prompt_tokens=prompt_tokens, body=body)
    except InvalidRequestError as exc:
        exc.param = "prompt"
        raise


def _response(meter: Meter, data: dict[str, Any]) -> Completion:
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
