"""Screening a request with its policy's guard model: the prompt before it is forwarded,
the completion (buffered) or each window of a stream (guard/stream.py) before the client
sees it. No HTTP types; the guard is called through the same backends as any model, with
a route trace of its own (the ledger's), so the model's record fields never see it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread

from gateway.backends.pool import Backends
from gateway.backends.routing import RoutedBackend
from gateway.backends.wire import CHAT, usage_figures
from gateway.errors import ContentFilterError, GatewayError, GuardUnavailableError
from gateway.guard.metrics import BlockMetrics
from gateway.guard.policy import blocking, select_policy
from gateway.guard.prompt import (
    Verdict,
    VerdictError,
    conversation,
    message_text,
    parse_verdict,
    prompt_tokens,
)
from gateway.guard.stream import ScreenedChunks
from gateway.metering import Meter
from gateway.metering.guard_ledger import GuardAction, GuardLedger
from gateway.models.registry import GuardPolicy, ModelConfig, ModelRegistry
from gateway.tokens import TokenizerStore
from gateway.tokens.offloop import tokenizer_for

logger = logging.getLogger(__name__)

# The conversation a guard screens: the request's messages as the template renders them.
Messages = Sequence[Mapping[str, Any]]


class Screening:
    """One request's screenings under one policy. The default (no policy) screens nothing."""

    @property
    def screens_output(self) -> bool:
        return False

    async def check_input(self) -> None:
        """Raises ContentFilterError (400) if the prompt is blocked, GuardUnavailableError
        (503) if a fail-closed guard failed; the upstream is then never called."""

    async def check_completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        """The chat.completion body as the client may see it."""
        return completion

    def screen_stream(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """The upstream's chunks, released one screened window at a time."""
        return chunks


NO_SCREENING = Screening()


class GuardedScreening(Screening):
    def __init__(
        self,
        *,
        policy: GuardPolicy,
        guard: ModelConfig,
        backend: RoutedBackend,
        tokenizers: TokenizerStore,
        meter: Meter,
        messages: Messages,
        metrics: BlockMetrics,
    ) -> None:
        self.policy = policy
        self._metrics = metrics
        self.guard = guard
        self._backend = backend
        self._tokenizers = tokenizers
        self.meter = meter
        self._messages = messages
        self.ledger = GuardLedger(guard_model=guard.id)
        meter.guard = self.ledger  # the record's guard fields

    @property
    def screens_output(self) -> bool:
        return self.policy.output

    async def check_input(self) -> None:
        if not self.policy.input:
            return
        started = self.ledger.latency_ms
        verdict = await self.screen(conversation(self._messages))
        self.ledger.input_latency_ms = self.ledger.latency_ms - started
        blocked = self.decide(verdict)
        if blocked:
            self.ledger.action = GuardAction.BLOCKED_INPUT
            raise ContentFilterError(
                "The prompt was flagged by the content filter (categories: "
                f"{', '.join(blocked)}) and was not sent to the model.",
                categories=list(blocked),
            )

    async def check_completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        if not self.policy.output:
            return completion
        choices = completion.get("choices") or []
        texts = [message_text(c.get("message") or {}) for c in choices]
        verdicts = await self.screen_many([(i, t) for i, t in enumerate(texts) if t])
        flagged = {i for i, v in verdicts.items() if self.decide(v)}
        if not flagged:
            return completion
        self.ledger.action = GuardAction.BLOCKED_OUTPUT
        withheld = [
            {**c, "message": {"role": "assistant", "content": None}, "logprobs": None,
             "finish_reason": "content_filter"} if i in flagged else c
            for i, c in enumerate(choices)
        ]  # fmt: skip
        return {**completion, "choices": withheld}

    def screen_stream(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        if not self.policy.output:
            return chunks
        return ScreenedChunks(chunks, self, window_tokens=self.policy.window_tokens)

    def output_turns(self, completion: str) -> list[dict[str, str]]:
        return conversation(self._messages, completion)

    def decide(self, verdict: Verdict | None) -> tuple[str, ...]:
        """The blocking categories of a verdict (None: the guard failed open), noted."""
        if verdict is None:
            return ()
        blocked = blocking(self.policy, verdict)
        self.ledger.note(verdict.categories, blocked)
        if blocked:
            self._metrics.blocked(model=self.meter.model_id, categories=blocked)
        return blocked

    async def screen_many(self, items: Sequence[tuple[int, str]]) -> dict[int, Verdict | None]:
        """Each choice's completion screened, concurrently (n > 1)."""
        if len(items) == 1:
            index, text = items[0]
            return {index: await self.screen(self.output_turns(text))}
        found: dict[int, Verdict | None] = {}
        refusals: list[GuardUnavailableError] = []

        async def one(index: int, text: str) -> None:
            try:
                found[index] = await self.screen(self.output_turns(text))
            except GuardUnavailableError as exc:
                refusals.append(exc)

        async with anyio.create_task_group() as group:
            for index, text in items:
                group.start_soon(one, index, text)
        if refusals:
            raise refusals[0]
        return found

    async def screen(self, turns: list[dict[str, str]]) -> Verdict | None:
        """The guard's verdict on the last turn; None when it failed and the policy is
        fail-open. Fail-closed: GuardUnavailableError, within the policy's deadline."""
        started = time.perf_counter()
        tokens = (0, 0)
        try:
            with anyio.fail_after(self.policy.deadline_seconds):
                data = await self._backend.complete(
                    self._body(turns), trace=self.ledger.trace, tenant=self.meter.key.key_id
                )
                text = _content(data)
                tokens = await self._tokens(data, turns, text)
            return parse_verdict(text)
        except (TimeoutError, GatewayError, VerdictError) as exc:
            self._failed(exc)
            return None
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.ledger.add_call(
                prompt_tokens=tokens[0], completion_tokens=tokens[1], latency_ms=elapsed
            )

    def _body(self, turns: list[dict[str, str]]) -> dict[str, Any]:
        spec = self.guard.guard
        assert spec is not None
        return {
            "model": self.guard.upstream_model,
            "messages": turns,
            "max_tokens": spec.max_tokens,
            "temperature": 0,
        }

    async def _tokens(
        self, data: Mapping[str, Any], turns: list[dict[str, str]], text: str
    ) -> tuple[int, int]:
        """The guard's usage where it reported it, else the gateway's own count."""
        figures = usage_figures(data.get("usage"))
        if figures is not None:
            return figures
        tokenizer = await tokenizer_for(self._tokenizers, self.guard.tokenizer)
        eos = 1 if _finish_reason(data) == "stop" else 0

        def count() -> tuple[int, int]:
            return prompt_tokens(tokenizer, turns), tokenizer.count_text(text) + eos

        # The whole conversation so far, for every window: a worker thread's work.
        return await anyio.to_thread.run_sync(count)

    def _failed(self, exc: Exception) -> None:
        reason = "deadline exceeded" if isinstance(exc, TimeoutError) else str(exc)[:200]
        self.ledger.error = reason
        logger.warning(
            "guard failed",
            extra={"request_id": self.meter.request_id, "guard": self.guard.id, "error": reason},
        )
        if self.policy.on_error == "open":
            if self.ledger.action is GuardAction.PASSED:
                self.ledger.action = GuardAction.FAILED_OPEN
            return
        self.ledger.action = GuardAction.FAILED_CLOSED
        raise GuardUnavailableError(
            f"The content filter is unavailable ({reason}); the request was refused."
        ) from exc


class GuardService:
    """Builds each request's Screening from the models config's guard policies."""

    def __init__(
        self,
        *,
        registry: ModelRegistry,
        backends: Backends,
        tokenizers: TokenizerStore,
        metrics: BlockMetrics | None = None,
    ) -> None:
        self._registry = registry
        self._backends = backends
        self._tokenizers = tokenizers
        self._metrics = metrics or BlockMetrics(enabled=False)

    def policy(self, *, model: ModelConfig, key_id: str) -> GuardPolicy | None:
        """The guard policy that screens this model for this key, if any."""
        return select_policy(self._registry.guard_policies, model_id=model.id, key_id=key_id)

    def screening(
        self, policy: GuardPolicy | None, *, meter: Meter, messages: Messages
    ) -> Screening:
        """One request's screenings under `policy` (NO_SCREENING for None)."""
        if policy is None:
            return NO_SCREENING
        guard = self._registry.get(policy.guard)
        assert guard is not None  # checked when the config was loaded
        return GuardedScreening(
            policy=policy,
            guard=guard,
            backend=self._backends.for_model(guard, CHAT),
            tokenizers=self._tokenizers,
            meter=meter,
            messages=messages,
            metrics=self._metrics,
        )


def _content(data: Mapping[str, Any]) -> str:
    choices = data.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], Mapping) else None
    content = message.get("content") if isinstance(message, Mapping) else None
    return content if isinstance(content, str) else ""


def _finish_reason(data: Mapping[str, Any]) -> str | None:
    choices = data.get("choices") or [{}]
    return choices[0].get("finish_reason") if isinstance(choices[0], Mapping) else None
