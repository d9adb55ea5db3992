"""Per-key concurrency on one instance: no key may hold more than its share of the
instance's requests in flight (and so of its upstream connections). In memory, per
process: it adds no DynamoDB call. A key's `max_concurrency`, else KEY_MAX_CONCURRENCY."""

from __future__ import annotations

from gateway.errors import RateLimitError
from gateway.keys import ApiKey


class Slot:
    """One request's place among its key's in-flight requests; released once."""

    def __init__(self, owner: KeyConcurrency, key_id: str) -> None:
        self._owner = owner
        self._key_id = key_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._owner.release(self._key_id)


class KeyConcurrency:
    def __init__(self, *, default_limit: int) -> None:
        self._default = default_limit
        self._in_flight: dict[str, int] = {}

    def in_flight(self, key_id: str) -> int:
        return self._in_flight.get(key_id, 0)

    def acquire(self, key: ApiKey) -> Slot:
        """A slot for one more request of `key`, or a 429 when it has its limit in flight."""
        limit = key.max_concurrency or self._default
        held = self._in_flight.get(key.key_id, 0)
        if held >= limit:
            raise RateLimitError(
                f"Too many concurrent requests for this API key: limit {limit} in flight on "
                "this gateway instance. Retry when one of them has finished.",
                code="concurrency_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        self._in_flight[key.key_id] = held + 1
        return Slot(self, key.key_id)

    def release(self, key_id: str) -> None:
        held = self._in_flight.get(key_id, 0) - 1
        if held > 0:
            self._in_flight[key_id] = held
        else:
            self._in_flight.pop(key_id, None)
