"""Authenticate a request's bearer key, through a short-lived in-process cache."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
import anyio.to_thread

from gateway.errors import AuthenticationError, DependencyError
from gateway.keys.apikey import ApiKey, KeyStatus, hash_key
from gateway.keys.mac import KeyMac
from gateway.keys.secret import MAC_PREFIX, is_well_formed
from gateway.keys.store import KeyStore

# Unknown secrets are cached too (so a flood of bad keys costs no DynamoDB reads),
# but for at most this long, so a key created a moment ago starts working quickly.
NEGATIVE_TTL_SECONDS = 5.0
MAX_CACHED_KEYS = 10_000


@dataclass
class _Flight:
    """One lookup in progress; requests for the same key wait for it instead of adding
    their own (single-flight)."""

    done: anyio.Event = field(default_factory=anyio.Event)
    key: ApiKey | None = None
    error: Exception | None = None
    finished: bool = False


def parse_bearer(header: str | None) -> str | None:
    """The key from `Authorization: Bearer <key>`; the scheme is case-insensitive, and
    `Bearer<key>` with no space (sent by one published client) is accepted too."""
    if not header:
        return None
    value = header.strip()
    if value[:6].lower() != "bearer":
        return None
    key = value[6:].strip()
    return key or None


class Authenticator:
    """Resolves a secret to its ApiKey. A cached answer lives at most `ttl` seconds, so a
    revoked, expired or rotated-out key is refused on every instance once `ttl` passes.

    A key of the MAC format (sk-gw3_) is looked up only if its tag verifies under one of
    `mac`'s secrets (None: no such key is accepted); a forged one is refused with no read.
    The legacy formats (sk-gw2_ checksummed, sk-gw- shaped) cost a lookup when well formed.
    """

    def __init__(
        self,
        *,
        store: KeyStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        deadline_seconds: float = 1.0,
        mac: KeyMac | None = None,
    ) -> None:
        self._store = store
        self._mac = mac
        self._ttl = ttl
        self._clock = clock
        self._deadline_seconds = deadline_seconds
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._flights: dict[str, _Flight] = {}

    async def authenticate_headers(self, values: Sequence[str]) -> ApiKey:
        """The key of a request given every value of its `Authorization` header, in order
        (Starlette: `request.headers.getlist("authorization")`). More than one is refused:
        a proxy that reads another one than the gateway would disagree about the caller."""
        if len(values) > 1:
            raise AuthenticationError(
                f"The request has {len(values)} Authorization headers; send exactly one, "
                "as `Authorization: Bearer <key>`.",
                code="multiple_authorization_headers",
            )
        return await self.authenticate(values[0] if values else None)

    async def authenticate(self, header: str | None) -> ApiKey:
        """The key of one `Authorization` header's value (None: absent)."""
        secret = parse_bearer(header)
        if secret is None:
            raise AuthenticationError(
                "Missing API key. Send it as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
                code="missing_api_key",
            )
        digest = hash_key(secret)
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > self._clock():
            # Only a secret that passed _may_exist was ever looked up, hence cached: its
            # tag needs no second check (an HMAC per request) while the answer is fresh.
            key = cached[1]
        elif not self._may_exist(secret):  # forged, mistyped or malformed: no lookup
            raise AuthenticationError("Incorrect API key provided.")
        else:
            key = await self._resolve(secret, digest)
        if key is None:
            raise AuthenticationError("Incorrect API key provided.")
        if key.status is not KeyStatus.ACTIVE:
            raise AuthenticationError("This API key has been revoked.", code="revoked_api_key")
        if key.is_expired(datetime.now(UTC)):
            raise AuthenticationError("This API key has expired.", code="expired_api_key")
        return key

    def _may_exist(self, secret: str) -> bool:
        if secret.startswith(MAC_PREFIX):
            return self._mac is not None and self._mac.verify(secret)
        return is_well_formed(secret)

    async def _resolve(self, secret: str, digest: str) -> ApiKey | None:
        """The cached answer, else one lookup shared by every concurrent request for this
        key, bounded by the lookup deadline (DependencyError, a 503, past it)."""
        while True:
            cached = self._cache.get(digest)
            if cached is not None and cached[0] > self._clock():
                return cached[1]
            flight = self._flights.get(digest)
            if flight is None:
                return await self._lookup(secret, digest)
            with anyio.move_on_after(self._deadline_seconds):
                await flight.done.wait()
            if not flight.done.is_set():
                raise DependencyError("DynamoDB did not answer in time (API key lookup)")
            if flight.error is not None:
                raise flight.error
            if flight.finished:
                return flight.key
            # The leading request was cancelled (its client left): look up again.

    async def _lookup(self, secret: str, digest: str) -> ApiKey | None:
        flight = self._flights[digest] = _Flight()
        try:
            with anyio.fail_after(self._deadline_seconds):
                key = await anyio.to_thread.run_sync(
                    lambda: self._store.lookup(secret=secret), abandon_on_cancel=True
                )
            flight.key, flight.finished = key, True
        except TimeoutError:
            flight.error = DependencyError(
                f"DynamoDB did not answer within {self._deadline_seconds:g}s (API key lookup)"
            )
            raise flight.error from None
        except DependencyError as exc:
            # Say which call failed, as the deadline's message does: a 503 here refuses a
            # caller not yet known (no usage record), unlike one at admission.
            flight.error = DependencyError(f"{exc.message} (API key lookup)", code=exc.code)
            raise flight.error from exc
        finally:
            del self._flights[digest]
            flight.done.set()
        now = self._clock()
        ttl = self._ttl if key is not None else min(self._ttl, NEGATIVE_TTL_SECONDS)
        if ttl > 0:
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._evict(now)
            self._cache[digest] = (now + ttl, key)
        return key

    def _evict(self, now: float) -> None:
        for digest in [d for d, (exp, _) in self._cache.items() if exp <= now]:
            del self._cache[digest]
        while len(self._cache) >= MAX_CACHED_KEYS:
            del self._cache[next(iter(self._cache))]
