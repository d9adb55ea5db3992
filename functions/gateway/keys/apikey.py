"""The API key record."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from gateway.keys.secret import new_secret

__all__ = ["ApiKey", "KeyStatus", "hash_key", "new_key_id", "new_secret", "parse_iso"]


class KeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_key(secret: str) -> str:
    """SHA-256 of the secret. Secrets are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    key_id: str
    key_hash: str
    name: str
    owner: str
    status: KeyStatus = KeyStatus.ACTIVE
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_at: datetime | None = None
    # Empty: every configured model.
    models: tuple[str, ...] = ()
    # Limits (None: unlimited): requests and tokens per minute, tokens per UTC month.
    rpm: int | None = None
    tpm: int | None = None
    monthly_tokens: int | None = None
    # Requests in flight at once on one gateway instance (None: Settings'
    # KEY_MAX_CONCURRENCY); limits/concurrency.py.
    max_concurrency: int | None = None
    # The public id of the MAC secret that tagged this key's secret (keys/mac.py); None
    # for a key of a legacy format, which has no tag.
    mac_secret_id: str | None = None
    # vLLM's request `priority` (lower runs first) forwarded for this key to the models
    # that run with priority scheduling (`priority_scheduling`); None: not sent.
    priority: int | None = None

    @property
    def has_limits(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.monthly_tokens is not None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def allows_model(self, model_id: str) -> bool:
        return not self.models or model_id in self.models

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "key_hash": {"S": self.key_hash},
            "key_id": {"S": self.key_id},
            "name": {"S": self.name},
            "owner": {"S": self.owner},
            "status": {"S": self.status.value},
            "created_at": {"S": _iso(self.created_at)},
        }
        if self.expires_at is not None:
            item["expires_at"] = {"S": _iso(self.expires_at)}
        if self.models:
            item["models"] = {"SS": list(self.models)}
        for name in ("rpm", "tpm", "monthly_tokens", "max_concurrency", "priority"):
            value = getattr(self, name)
            if value is not None:
                item[name] = {"N": str(value)}
        if self.mac_secret_id is not None:
            item["mac_secret_id"] = {"S": self.mac_secret_id}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ApiKey:
        def num(name: str) -> int | None:
            return int(item[name]["N"]) if name in item else None

        return cls(
            key_id=item["key_id"]["S"],
            key_hash=item["key_hash"]["S"],
            name=item.get("name", {}).get("S", ""),
            owner=item.get("owner", {}).get("S", ""),
            status=KeyStatus(item.get("status", {}).get("S", "active")),
            created_at=parse_iso(item["created_at"]["S"]),
            expires_at=parse_iso(item["expires_at"]["S"]) if "expires_at" in item else None,
            models=tuple(sorted(item.get("models", {}).get("SS", []))),
            rpm=num("rpm"),
            tpm=num("tpm"),
            monthly_tokens=num("monthly_tokens"),
            max_concurrency=num("max_concurrency"),
            priority=num("priority"),
            mac_secret_id=item["mac_secret_id"]["S"] if "mac_secret_id" in item else None,
        )

    def public_dict(self) -> dict[str, Any]:
        """Everything but the hash, for the CLI."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "owner": self.owner,
            "status": self.status.value,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at) if self.expires_at else None,
            "models": list(self.models),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "monthly_tokens": self.monthly_tokens,
            "max_concurrency": self.max_concurrency,
            "priority": self.priority,
            "mac_secret_id": self.mac_secret_id,
        }
