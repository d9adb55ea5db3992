"""Key lookups on the request path: concurrent requests for a key whose cache entry
expired share one lookup, and a lookup past its deadline is a 503 within the deadline."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from gateway.errors import DependencyError
from gateway.keys import ApiKey, hash_key
from gateway.keys.auth import Authenticator
from gateway.keys.secret import new_secret

SECRET = new_secret()  # well formed: checked before any lookup


class SlowStore:
    """KeyStore's `lookup` taking `delay` seconds (in its worker thread), counted."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lookups = 0
        self.key = ApiKey(key_id="k1", key_hash=hash_key(SECRET), name="n", owner="o")
        self._lock = threading.Lock()

    def lookup(self, *, secret: str) -> ApiKey | None:
        with self._lock:
            self.lookups += 1
        time.sleep(self.delay)
        return self.key if secret == SECRET else None


def test_concurrent_requests_share_one_lookup_when_the_cache_expires() -> None:
    store = SlowStore(delay=0.2)
    now = [0.0]
    # The deadline is not what this checks: generous, so a loaded machine's thread
    # scheduling (60 waiters, one worker) cannot turn the burst into 503s.
    auth = Authenticator(
        store=store,  # type: ignore[arg-type]
        ttl=10,
        clock=lambda: now[0],
        deadline_seconds=30,
    )

    async def burst() -> list[ApiKey]:
        return await asyncio.gather(*(auth.authenticate(f"Bearer {SECRET}") for _ in range(60)))

    assert {k.key_id for k in asyncio.run(burst())} == {"k1"}
    assert store.lookups == 1
    now[0] = 11.0  # the cached entry expired: again one lookup for the whole burst
    asyncio.run(burst())
    assert store.lookups == 2


def test_a_hanging_lookup_is_a_503_within_the_deadline() -> None:
    store = SlowStore(delay=3.0)
    auth = Authenticator(store=store, ttl=10, deadline_seconds=0.3)  # type: ignore[arg-type]

    async def burst() -> list[BaseException | ApiKey]:
        calls = (auth.authenticate(f"Bearer {SECRET}") for _ in range(20))
        return await asyncio.gather(*calls, return_exceptions=True)

    started = time.monotonic()
    results = asyncio.run(burst())
    assert time.monotonic() - started < 1.5  # not the lookup's 3 s
    assert all(isinstance(r, DependencyError) and r.status_code == 503 for r in results)
    assert store.lookups == 1


def test_a_failed_lookup_is_not_cached() -> None:
    store = SlowStore(delay=0.0)
    auth = Authenticator(store=store, ttl=10)  # type: ignore[arg-type]
    original = store.lookup

    def broken(*, secret: str) -> ApiKey | None:
        raise DependencyError("DynamoDB is unavailable (InternalServerError)")

    store.lookup = broken  # type: ignore[method-assign]
    with pytest.raises(DependencyError):
        asyncio.run(auth.authenticate(f"Bearer {SECRET}"))
    store.lookup = original  # type: ignore[method-assign]
    assert asyncio.run(auth.authenticate(f"Bearer {SECRET}")).key_id == "k1"


def test_a_failed_lookup_says_it_was_the_key_lookup() -> None:
    """A 503 before the caller is known leaves no usage record: its message names the
    call, as the deadline's does, so it is told apart from a 503 at admission."""
    store = SlowStore(delay=0.0)
    auth = Authenticator(store=store, ttl=10)  # type: ignore[arg-type]

    def broken(*, secret: str) -> ApiKey | None:
        raise DependencyError("DynamoDB is unavailable (ReadTimeoutError)")

    store.lookup = broken  # type: ignore[method-assign]
    with pytest.raises(DependencyError) as raised:
        asyncio.run(auth.authenticate(f"Bearer {SECRET}"))
    assert raised.value.message == "DynamoDB is unavailable (ReadTimeoutError) (API key lookup)"
    assert raised.value.status_code == 503
