"""What the upstream is told of the caller: a prefix-cache salt and a priority.

- `cache_salt` (vLLM: it enters the first block's hash, so requests with different salts
  never share a cached block): for a model with `prefix_cache_isolation` `owner` or `key`,
  an HMAC-SHA256 of the key's owner or id under CACHE_SALT_SECRET, never the raw name, and
  it replaces any salt the request carried, so no tenant can reach another's cached
  prefixes, nor time them. `none`: the request's own salt, if any, goes through.
- `priority` (vLLM with --scheduling-policy priority; lower runs first): the key's, sent to
  models with `priority_scheduling`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from gateway.keys.apikey import ApiKey
from gateway.models.registry import ModelConfig
from gateway.settings import Settings

# The HMAC key when CACHE_SALT_SECRET is unset: salts still never carry a raw id, but
# whoever knows an owner's name could compute its salt (not send it: the gateway sets it).
_UNSET_SECRET = b"gateway cache salt"


@dataclass(frozen=True)
class Tenancy:
    secret: bytes = _UNSET_SECRET

    @classmethod
    def from_settings(cls, settings: Settings) -> Tenancy:
        secret = settings.cache_salt_secret
        return cls(secret.get_secret_value().encode() if secret else _UNSET_SECRET)

    def cache_salt(self, model: ModelConfig, key: ApiKey) -> str | None:
        """The salt the model's isolation gives this key's requests (None: `none`)."""
        if model.prefix_cache_isolation == "none":
            return None
        scope, value = (
            ("owner", key.owner) if model.prefix_cache_isolation == "owner" else ("key", key.key_id)
        )
        message = f"{model.id}\0{scope}\0{value}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:32]

    def upstream_fields(self, model: ModelConfig, key: ApiKey) -> dict[str, Any]:
        """The fields the gateway sets in the upstream body for this key and model."""
        fields: dict[str, Any] = {}
        salt = self.cache_salt(model, key)
        if salt is not None:
            fields["cache_salt"] = salt
        if model.priority_scheduling and key.priority is not None:
            fields["priority"] = key.priority
        return fields
