"""One request's accounting, from admission to its one usage record.

A `Meter` is made for every authenticated request. It holds what the request reserved,
what the upstream sent back, and writes exactly one usage record however the request
ends: completed, refused, failed upstream, failed inside the gateway, or abandoned by its
client at any await. `close` is idempotent and shielded from cancellation, so a `finally`
that calls it can never lose the record or leave a reservation unsettled.

Billing rules:
- Nothing reached an upstream (refused, rate-limited, failed to connect): 0 tokens.
- Completed: the upstream's figures where it reported sane ones, else the gateway's.
- Cut short (client gone, upstream failed mid-stream, gateway error after forwarding):
  the gateway's prompt count and the completion tokens seen so far.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import anyio

from gateway.backends.attempts import RouteTrace
from gateway.backends.wire import cached_figure, usage_figures
from gateway.errors import GatewayError
from gateway.keys import ApiKey
from gateway.limits import Admission
from gateway.limits.concurrency import Slot
from gateway.metering.generated import Generated, TextCounter
from gateway.metering.guard_ledger import GuardLedger
from gateway.metering.media import media_token_estimate
from gateway.metering.status import status_for
from gateway.usage import UsageRecord, UsageStatus

logger = logging.getLogger(__name__)


class RecordSink(Protocol):
    async def write(self, record: UsageRecord, *, admission: Admission | None) -> None:
        """Store the record (and settle its admission) or log it for replay; never raises."""
        ...


class Telemetry(Protocol):
    def completed(self, record: UsageRecord, *, mismatch: bool) -> None: ...


class _Billed(NamedTuple):
    prompt: int
    completion: int
    estimated: bool | None  # None: no media parts in the prompt


@dataclass
class Meter:
    request_id: str
    key: ApiKey
    sink: RecordSink
    telemetry: Telemetry
    route: str = "chat"
    stream: bool = False
    model_id: str = "-"
    endpoint: str = "-"
    # The gateway's prompt count, and the tokenizer that counts generated text (None: no
    # tokenizer loaded).
    prompt_tokens: int = 0
    tokenizer: TextCounter | None = None
    # vLLM and TGI count the EOS token that ends a natural stop; it has no text, so the
    # gateway adds it when a choice stops without a stop string having been requested.
    # vLLM's `stop_reason`, when sent, decides instead (observe_stop_reason).
    counts_eos: bool = True
    # The max_tokens the upstream was sent (each surface's plan): a choice it cut
    # ("length") generated exactly that many tokens (Generated.count).
    max_tokens: int | None = None
    # Count the completion even when the upstream reported usage, to cross-check it
    # (USAGE_AUDIT_RATE of requests): otherwise that count adds no information.
    audit: bool = True
    admission: Admission | None = None
    # The request's place among its key's in-flight requests, given back at close.
    slot: Slot | None = None
    # A cold instance's prompt count, run beside the upstream call (chat/service.py):
    # awaited at close only where the record needs the gateway's own figures; until it
    # has run, `prompt_tokens` is the reservation's upper bound, not a count.
    deferred: asyncio.Task[None] | None = None
    prompt_counted: bool = True
    # Bill the gateway's prompt count even where the upstream reported one: an upstream
    # spoken to in the Responses or Messages API renders the conversation its own way
    # (vLLM renders a tool's unset fields as nulls), and the bill is the chat template's.
    own_prompt: bool = False
    # Modality of each image/audio part of the prompt: the model server alone counts them.
    media: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    forwarded: bool = False
    record: UsageRecord | None = None
    # The guard's screenings of this request (guard/service.py), for the guard fields.
    guard: GuardLedger | None = None
    generated: Generated = field(default_factory=Generated)
    _upstream: tuple[int, int] | None = None
    _cached: int | None = None  # the upstream's prompt_tokens_details.cached_tokens
    _flags: list[str] = field(default_factory=list)
    _closed: anyio.Event | None = None
    # The model's call across its endpoints (filled in by the routed backend the pipeline
    # hands it to): the endpoint that served, and the attempts. The guard has its own.
    trace: RouteTrace = field(default_factory=RouteTrace)

    # --- observing ------------------------------------------------------------------

    def observe_usage(self, usage: Any) -> None:
        if usage is None:
            return
        figures = usage_figures(usage)
        if figures is None:
            if "upstream_usage_invalid" not in self._flags:
                self._flags.append("upstream_usage_invalid")
                logger.warning("upstream usage ignored", extra={"request_id": self.request_id})
            return
        self._upstream = figures
        self._cached = cached_figure(usage, prompt=figures[0])

    def observe_chunk(self, chunk: Mapping[str, Any]) -> None:
        """A validated chat.completion.chunk (backends/wire.py) as the upstream sent it."""
        self.observe_usage(chunk.get("usage"))
        for choice in chunk["choices"]:
            index = choice.get("index", 0)
            if self.generated.add(index, choice.get("delta") or {}) and self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.generated.finished(index, choice)

    def observe_completion(self, data: Mapping[str, Any]) -> None:
        """A validated chat.completion body."""
        self.observe_usage(data.get("usage"))
        for position, choice in enumerate(data["choices"]):
            index = choice.get("index", position)
            self.generated.add(index, choice.get("message") or {})
            self.generated.finished(index, choice)

    @property
    def generated_anything(self) -> bool:
        return self.generated.anything

    @property
    def finish_reasons(self) -> list[str | None]:
        return self.generated.finish_reasons

    # --- closing --------------------------------------------------------------------

    async def close(
        self,
        status: UsageStatus,
        *,
        http_status: int = 200,
        error: GatewayError | None = None,
    ) -> UsageRecord:
        """Decide the record and write it, once; later calls return the first record."""
        if self._closed is not None:
            await self._closed.wait()
            assert self.record is not None
            return self.record
        self._closed = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                if self.deferred is not None:
                    await self._settle_deferred(status)
                gateway_completion = (
                    await self._count_completion() if self._counts(status) else None
                )
                record = self._decide(status, http_status, error, gateway_completion)
                if self.guard is not None:
                    self.guard.apply(record)
                self.record = record
                await self.sink.write(record, admission=self.admission)
                self.telemetry.completed(record, mismatch=self._mismatch(record))
        finally:
            if self.slot is not None:
                self.slot.release()
            self._closed.set()
        return record

    async def fail(self, error: GatewayError) -> UsageRecord:
        return await self.close(status_for(error), http_status=error.status_code, error=error)

    async def _settle_deferred(self, status: UsageStatus) -> None:
        """Wait for the deferred prompt count where the record needs it; else leave it
        running (it loads the tokenizer for the next requests) if it has not finished."""
        task = self.deferred
        assert task is not None
        if not task.done() and not (self.forwarded and (self._counts(status) or self.own_prompt)):
            return
        try:
            await task
            self.prompt_counted = True
        except Exception:  # noqa: BLE001 - a failed count must not cost the record
            logger.warning("deferred prompt count failed", extra={"request_id": self.request_id})
            self._flags.append("gateway_count_failed")
            self.prompt_tokens, self.tokenizer = 0, None

    def _counts(self, status: UsageStatus) -> bool:
        """Whether the gateway's own completion count adds information: the upstream's
        figures are missing or not used (a request cut short), or this is an audit."""
        return self.audit or self._upstream is None or status is not UsageStatus.COMPLETED

    async def _count_completion(self) -> int:
        if self.tokenizer is None:
            return 0
        try:
            return await self.generated.count(
                self.tokenizer, counts_eos=self.counts_eos, max_tokens=self.max_tokens
            )
        except Exception:  # a tokenizer fault must not cost the record
            logger.exception("completion count failed", extra={"request_id": self.request_id})
            self._flags.append("gateway_count_failed")
            return 0

    def _billed(self, status: UsageStatus, gateway_completion: int | None) -> _Billed:
        """The billing rules of this module's docstring."""
        upstream = self._upstream if status is UsageStatus.COMPLETED else None
        if upstream is not None:
            prompt, completion = upstream
            if self.own_prompt and self.prompt_counted:
                prompt = self.prompt_tokens
        elif self.forwarded and (
            status in (UsageStatus.COMPLETED, UsageStatus.CLIENT_DISCONNECTED)
            or self.generated_anything
        ):
            prompt, completion = self.prompt_tokens, gateway_completion or 0
        else:
            prompt, completion = 0, 0
        estimated = None
        if self.media:  # the gateway's count is text-only; without upstream usage, estimate
            estimated = upstream is None and prompt > 0
            if estimated:
                prompt += media_token_estimate(self.media)
        return _Billed(prompt, completion, estimated)

    def _decide(
        self,
        status: UsageStatus,
        http_status: int,
        error: GatewayError | None,
        gateway_completion: int | None,
    ) -> UsageRecord:
        billed = self._billed(status, gateway_completion)
        reasons = [r for r in self.finish_reasons if r]
        now = time.perf_counter()
        return UsageRecord(
            request_id=self.request_id,
            key_id=self.key.key_id,
            model=self.model_id,
            endpoint=self.trace.endpoint or self.endpoint,
            attempts=self.trace.attempts or None,
            created_at=datetime.now(UTC),
            stream=self.stream,
            route=self.route,
            status=status,
            http_status=http_status,
            prompt_tokens=billed.prompt,
            completion_tokens=billed.completion,
            upstream_prompt_tokens=self._upstream[0] if self._upstream else None,
            upstream_completion_tokens=self._upstream[1] if self._upstream else None,
            cached_tokens=self._cached if status is UsageStatus.COMPLETED else None,
            gateway_prompt_tokens=(
                self.prompt_tokens if self.forwarded and self.prompt_counted else None
            ),
            gateway_completion_tokens=gateway_completion if self.forwarded else None,
            finish_reason=",".join(reasons) if reasons else None,
            latency_ms=round((now - self.started) * 1000, 3),
            ttft_ms=(
                round((self.first_token_at - self.started) * 1000, 3)
                if self.first_token_at is not None
                else None
            ),
            error=error.message if error else None,
            flags=",".join(self._flags) if self._flags else None,
            media_parts=len(self.media) if self.media else None,
            prompt_estimated=billed.estimated,
        )

    @staticmethod
    def _mismatch(record: UsageRecord) -> bool:
        if record.upstream_prompt_tokens is None:
            return False
        if (
            record.gateway_prompt_tokens is not None
            and record.upstream_prompt_tokens != record.gateway_prompt_tokens
        ):
            return True
        return record.gateway_completion_tokens is not None and (
            record.upstream_completion_tokens != record.gateway_completion_tokens
        )
