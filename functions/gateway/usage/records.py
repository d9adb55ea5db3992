"""The usage record, and its raw-record item in the usage table (docs/USAGE.md describes
the table; layout.py holds its keys and item translation).

The request path writes only the raw record (usage/store.py). The aggregator
(usage/aggregate.py, fed by the table's stream) adds it to the rollups, settles the
reservation it carries (`reserved_*`) and marks it `aggregated_at`, exactly once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from gateway import layout


class UsageStatus(StrEnum):
    COMPLETED = "completed"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    CLIENT_DISCONNECTED = "client_disconnected"
    RATE_LIMITED = "rate_limited"
    # Refused after authentication, before reaching an upstream (bad input, unknown or
    # forbidden model, a template that refuses the conversation): nothing billed.
    REJECTED = "rejected"
    # The gateway itself failed (a bug): billed what the upstream had generated.
    INTERNAL_ERROR = "internal_error"
    # A dependency of the gateway was unavailable (DynamoDB, a fail-closed guard): a 503,
    # the request's fault no more than the gateway's; billed what had been generated.
    UNAVAILABLE = "unavailable"


@dataclass(kw_only=True)
class UsageRecord:
    request_id: str
    key_id: str
    model: str
    endpoint: str
    created_at: datetime
    stream: bool
    # Which API route: chat, completions, embeddings, responses, messages.
    route: str = "chat"
    status: UsageStatus = UsageStatus.COMPLETED
    http_status: int = 200
    # Billed figures: the upstream's where it reported them, else the gateway's.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # What each side counted (None: that side reported nothing).
    upstream_prompt_tokens: int | None = None
    upstream_completion_tokens: int | None = None
    gateway_prompt_tokens: int | None = None
    gateway_completion_tokens: int | None = None
    # Prompt tokens the upstream found in its prefix cache (its usage's
    # prompt_tokens_details.cached_tokens); None: it did not say.
    cached_tokens: int | None = None
    finish_reason: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    error: str | None = None
    # Comma-separated notes on how the figures were decided, e.g. `upstream_usage_invalid`.
    flags: str | None = None
    # Image/audio parts in the prompt: the gateway's prompt count is then text-only (media
    # tokens are counted by the model server alone), and when the upstream reported no
    # usage the billed prompt is that count plus a per-part estimate, flagged here.
    media_parts: int | None = None
    prompt_estimated: bool | None = None
    # What admission reserved for this request (limits.Admission), for the aggregator to
    # settle: tokens, the epoch minute of the tpm window and the "YYYY-MM" budget month
    # that hold them (None: that limit reserved nothing).
    reserved_tokens: int = 0
    reserved_window_minute: int | None = None
    reserved_month: str | None = None
    # Set when the gateway never learned whether admission's update landed (it answered
    # 503, limits.AdmissionUnconfirmedError): when the admission was sent, in epoch ms.
    # The aggregator then refunds the reservation only if the admission's marker on the
    # month item shows that it landed, once (usage/aggregate.py).
    reserved_unconfirmed_ms: int | None = None
    # Attempts across the model's endpoints (and fallbacks) before it was served or failed;
    # `endpoint` names the one that served it (or the last one tried).
    attempts: int | None = None
    # Guardrails (gateway/guard, docs/GUARDRAILS.md), None when no guard screened the
    # request: the guard model, what its screenings decided (passed, blocked_input,
    # blocked_output, failed_open, failed_closed), how many calls it took, the categories
    # it reported and those that blocked (comma-separated), the time spent waiting for it
    # (all calls, and the input screening alone), its error if it failed, and the guard's
    # own routing (the endpoint of its last call, its attempts over all calls). The guard's
    # own tokens are billed to the key on a line of their own: the aggregator adds them to
    # the guard model's rollups (route `guard`), not to this record's model.
    guard_model: str | None = None
    guard_action: str | None = None
    guard_calls: int | None = None
    guard_endpoint: str | None = None
    guard_attempts: int | None = None
    guard_categories: str | None = None
    guard_blocked: str | None = None
    guard_prompt_tokens: int | None = None
    guard_completion_tokens: int | None = None
    guard_latency_ms: float | None = None
    guard_input_latency_ms: float | None = None
    guard_error: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def guard_tokens(self) -> int:
        return (self.guard_prompt_tokens or 0) + (self.guard_completion_tokens or 0)

    @property
    def billed_tokens(self) -> int:
        """What the key is charged for this request: its model's tokens and its guard's."""
        return self.total_tokens + self.guard_tokens

    @property
    def sk(self) -> str:
        return layout.record_sk(self.created_at, self.request_id)

    @property
    def day(self) -> str:
        return self.created_at.astimezone(UTC).strftime("%Y-%m-%d")

    @property
    def is_error(self) -> bool:
        return self.status not in (UsageStatus.COMPLETED, UsageStatus.CLIENT_DISCONNECTED)

    def to_json(self) -> dict[str, Any]:
        # Every field is a scalar: a shallow copy of the instance's fields, not
        # dataclasses.asdict's deep copy (which cost as much as the rest of the usage write).
        data = dict(vars(self))
        data["created_at"] = layout.iso_ms(self.created_at)
        data["status"] = self.status.value
        data["total_tokens"] = self.total_tokens
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UsageRecord:
        values = {k: v for k, v in data.items() if k in _FIELD_SET}
        values["created_at"] = datetime.fromisoformat(
            str(data["created_at"]).replace("Z", "+00:00")
        )
        values["status"] = UsageStatus(data.get("status", "completed"))
        return cls(**values)

    def to_item(self, *, retention_days: int) -> dict[str, Any]:
        expires = self.created_at + timedelta(days=retention_days)
        values = self.to_json()  # its created_at is already the sort key's text
        values["pk"] = layout.key_pk(self.key_id)
        values["sk"] = layout.record_sk_at(values["created_at"], self.request_id)
        values["expires_at"] = int(expires.timestamp())
        return layout.to_item(values)

    @classmethod
    def from_image(cls, image: dict[str, Any]) -> UsageRecord:
        """From a deserialized item (numbers as Decimal), as stream events carry it."""
        return cls.from_json({name: layout.plain(value) for name, value in image.items()})

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> UsageRecord:
        return cls.from_json(layout.from_item(item))


_FIELD_SET = frozenset(f.name for f in dataclasses.fields(UsageRecord))
