"""Keys only the gateway can make: the random part of a secret is followed by a keyed MAC
(HMAC-SHA256) under a secret that only the gateway and the operator's CLI hold.

    sk-gw3_ + 43 random base62 characters (256 bits) + 22 base62 characters of tag

The tag is HMAC-SHA256(mac_secret, "sk-gw3_" + random part), truncated to its first 128
bits (NIST SP 800-107's floor for a truncated MAC is far below that), in base62 (62**22 >
2**128). A key minted outside the gateway has the right shape but, without the MAC secret,
a right tag only with odds of 1 in 2**128: the gateway refuses it before any database read.

The MAC secrets (docs/SECURITY.md, "Rotating the MAC secret") are a list, newest first: the
newest mints, every one verifies, so a key minted under the previous secret keeps working
until that secret is retired. Each has a public id (an HMAC of a fixed label under it) that
the keys table records beside every key it made, so an operator can see which keys still
depend on a secret before retiring it; the id reveals nothing of the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import ConfigurationError, DependencyError
from gateway.keys.secret import (
    ALPHABET,
    MAC_PREFIX,
    MAC_RANDOM_LENGTH,
    TAG_BYTES,
    TAG_LENGTH,
    base62,
    has_mac_shape,
)
from gateway.settings import Settings

# A MAC secret is text of at least this many characters (secrets.token_urlsafe(32) gives
# 43: 256 bits); at most MAX_SECRETS are active, since a forged key costs one HMAC each.
MIN_SECRET_CHARS = 32
MAX_SECRETS = 4
_ID_LABEL = b"gpu-gateway key-mac secret id"


def new_mac_secret() -> str:
    """A fresh MAC secret (256 bits, URL-safe text), for `gateway keys secrets --generate`."""
    return secrets.token_urlsafe(32)


def parse_secrets(text: str) -> tuple[str, ...]:
    """The MAC secrets from a parameter's text: a JSON list of strings, or one secret per
    line; newest first. Raises ConfigurationError (never quoting a secret)."""
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise ConfigurationError("the key MAC secrets are not a valid JSON list") from None
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise ConfigurationError("the key MAC secrets must be a JSON list of strings")
        found = tuple(s.strip() for s in value)
    else:
        found = tuple(line.strip() for line in text.splitlines() if line.strip())
    return validate_secrets(found)


def validate_secrets(found: tuple[str, ...]) -> tuple[str, ...]:
    """`found` if it is a usable list of MAC secrets, else ConfigurationError."""
    if not found:
        raise ConfigurationError("no key MAC secret is configured (the list is empty)")
    if len(found) > MAX_SECRETS:
        raise ConfigurationError(
            f"{len(found)} key MAC secrets are configured; at most {MAX_SECRETS} may be "
            "active (retire the oldest)"
        )
    for position, secret in enumerate(found, start=1):
        if len(secret) < MIN_SECRET_CHARS:
            raise ConfigurationError(
                f"key MAC secret number {position} is shorter than {MIN_SECRET_CHARS} "
                "characters (make one with `gateway keys secrets --generate`)"
            )
    if len(set(found)) != len(found):
        raise ConfigurationError("the key MAC secrets list the same secret twice")
    return found


def secret_id(mac_secret: str) -> str:
    """A MAC secret's public id: 12 hex characters of an HMAC of a fixed label under it."""
    return hmac.new(mac_secret.encode(), _ID_LABEL, hashlib.sha256).hexdigest()[:12]


def _tag(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:TAG_BYTES]
    return base62(int.from_bytes(digest, "big"), width=TAG_LENGTH)


@dataclass(frozen=True)
class KeyMac:
    """The active MAC secrets, newest first. Built once per process (from_settings)."""

    _keys: tuple[bytes, ...]
    ids: tuple[str, ...]

    @classmethod
    def of(cls, mac_secrets: tuple[str, ...] | list[str]) -> KeyMac:
        found = validate_secrets(tuple(mac_secrets))
        return cls(tuple(s.encode() for s in found), tuple(secret_id(s) for s in found))

    @classmethod
    def parse(cls, text: str) -> KeyMac:
        return cls.of(parse_secrets(text))

    @classmethod
    def from_settings(
        cls, settings: Settings, *, read_ssm_parameter: Callable[[str], str]
    ) -> KeyMac | None:
        """The secrets from KEY_MAC_SECRETS (local use) or else the SSM parameter named by
        KEY_MAC_SECRETS_PARAMETER, read once (one GetParameter, WithDecryption); None when
        neither is set (then no key of the MAC format is accepted, nor minted)."""
        if settings.key_mac_secrets is not None:
            return cls.parse(settings.key_mac_secrets.get_secret_value())
        name = settings.key_mac_secrets_parameter
        if not name:
            return None
        try:
            text = read_ssm_parameter(name)
        except DependencyError as exc:
            raise ConfigurationError(
                f"the key MAC secrets could not be read from SSM parameter {name} ({exc})"
            ) from exc
        try:
            return cls.parse(text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"SSM parameter {name}: {exc}") from None

    @property
    def newest_id(self) -> str:
        return self.ids[0]

    def mint(self) -> str:
        """A new secret in the MAC format, tagged under the newest MAC secret."""
        body = MAC_PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(MAC_RANDOM_LENGTH))
        return body + _tag(self._keys[0], body)

    def signer_id(self, secret: str) -> str | None:
        """The id of the active MAC secret whose tag `secret` carries, or None (a wrong
        shape, a forged or mistyped key, or one made under a retired secret). Every active
        secret is tried and each tag compared in constant time."""
        if not has_mac_shape(secret):
            return None
        body, tag = secret[:-TAG_LENGTH], secret[-TAG_LENGTH:]
        found = None
        for key, key_id in zip(self._keys, self.ids, strict=True):
            if hmac.compare_digest(_tag(key, body), tag) and found is None:
                found = key_id
        return found

    def verify(self, secret: str) -> bool:
        return self.signer_id(secret) is not None

    def __repr__(self) -> str:  # never the secrets
        return f"KeyMac(ids={self.ids!r})"
