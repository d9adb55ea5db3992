"""Bearer parsing and the bounded-lifetime key cache."""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import replace

import pytest
from gateway.errors import AuthenticationError
from gateway.keys import ApiKey, KeyStatus, hash_key, new_secret
from gateway.keys.auth import NEGATIVE_TTL_SECONDS, Authenticator, parse_bearer
from gateway.keys.mac import KeyMac, new_mac_secret
from gateway.keys.secret import LEGACY_PREFIX

from tests.gateway.keys.test_mac import outsider_key


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer sk-1", "sk-1"),
        ("bearer sk-1", "sk-1"),
        ("BEARER   sk-1  ", "sk-1"),
        ("bearersk-1", "sk-1"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_bearer(header: str | None, expected: str | None) -> None:
    assert parse_bearer(header) == expected


class FakeStore:
    """Stands in for KeyStore: a dict of secret -> key, counting lookups."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.lookups = 0

    def lookup(self, *, secret: str) -> ApiKey | None:
        self.lookups += 1
        return self.keys.get(secret)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_key(secret: str) -> ApiKey:
    return ApiKey(key_id="key_1", key_hash=hash_key(secret), name="n", owner="o")


def authenticate(auth: Authenticator, secret: str) -> ApiKey:
    return asyncio.run(auth.authenticate(f"Bearer {secret}"))


def test_revocation_takes_effect_once_the_cache_lifetime_passes() -> None:
    store, clock, s1 = FakeStore(), Clock(), new_secret()
    store.keys[s1] = make_key(s1)
    auth = Authenticator(store=store, ttl=30, clock=clock)  # type: ignore[arg-type]
    assert authenticate(auth, s1).key_id == "key_1"

    store.keys[s1] = replace(store.keys[s1], status=KeyStatus.REVOKED)
    clock.now += 29.9
    assert authenticate(auth, s1).status is KeyStatus.ACTIVE  # served from cache only
    assert store.lookups == 1
    clock.now += 0.2
    with pytest.raises(AuthenticationError) as info:
        authenticate(auth, s1)
    assert info.value.code == "revoked_api_key"
    assert store.lookups == 2


def test_rotated_out_secret_is_refused_after_the_lifetime() -> None:
    store, clock = FakeStore(), Clock()
    old, new = new_secret(), new_secret()
    store.keys[old] = make_key(old)
    auth = Authenticator(store=store, ttl=10, clock=clock)  # type: ignore[arg-type]
    authenticate(auth, old)
    del store.keys[old]
    store.keys[new] = make_key(new)
    assert authenticate(auth, new).key_id == "key_1"
    assert authenticate(auth, old).key_id == "key_1"  # still cached
    clock.now += 10.01
    with pytest.raises(AuthenticationError):
        authenticate(auth, old)


def test_unknown_keys_are_cached_briefly() -> None:
    store, clock, nope = FakeStore(), Clock(), new_secret()
    auth = Authenticator(store=store, ttl=30, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            authenticate(auth, nope)
    assert store.lookups == 1
    store.keys[nope] = make_key(nope)  # created after a failed attempt
    clock.now += NEGATIVE_TTL_SECONDS + 0.01
    assert authenticate(auth, nope).key_id == "key_1"


def test_zero_lifetime_means_no_cache() -> None:
    store, s = FakeStore(), new_secret()
    store.keys[s] = make_key(s)
    auth = Authenticator(store=store, ttl=0)  # type: ignore[arg-type]
    authenticate(auth, s)
    authenticate(auth, s)
    assert store.lookups == 2


@pytest.mark.parametrize("secret", ["sk-gw-nope", "sk-gw2_" + "a" * 49, "hunter2"])
def test_malformed_keys_are_refused_without_a_lookup(secret: str) -> None:
    store = FakeStore()
    store.keys[secret] = make_key(secret)  # even if the store somehow had it
    auth = Authenticator(store=store, ttl=30)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError) as info:
        authenticate(auth, secret)
    assert (info.value.status_code, info.value.code) == (401, "invalid_api_key")
    assert store.lookups == 0


# -- the MAC format and the Authorization header ---------------------------------------


def test_a_key_minted_outside_is_refused_without_a_lookup() -> None:
    store, mac = FakeStore(), KeyMac.of([new_mac_secret(), new_mac_secret()])
    genuine = mac.mint()
    store.keys[genuine] = make_key(genuine)
    auth = Authenticator(store=store, ttl=0, mac=mac)  # no cache: every check is seen
    rng = random.Random(3)
    for forged in [outsider_key(rng), outsider_key(rng, new_mac_secret())]:
        store.keys[forged] = make_key(forged)  # even if the table had it
        with pytest.raises(AuthenticationError) as refused:
            authenticate(auth, forged)
        assert refused.value.code == "invalid_api_key"
    assert store.lookups == 0
    assert authenticate(auth, genuine).key_id == "key_1"
    assert store.lookups == 1
    # A gateway with no MAC secret configured accepts no key of that format.
    with pytest.raises(AuthenticationError):
        authenticate(Authenticator(store=store, ttl=0), genuine)
    assert store.lookups == 1


def test_legacy_formats_still_authenticate_with_a_lookup() -> None:
    store = FakeStore()
    checksummed, legacy = new_secret(), LEGACY_PREFIX + secrets.token_urlsafe(32)
    for secret in (checksummed, legacy):
        store.keys[secret] = make_key(secret)
    auth = Authenticator(store=store, ttl=0, mac=KeyMac.of([new_mac_secret()]))
    assert authenticate(auth, checksummed).key_id == authenticate(auth, legacy).key_id
    assert store.lookups == 2


def test_more_than_one_authorization_header_is_refused() -> None:
    store, secret = FakeStore(), new_secret()
    store.keys[secret] = make_key(secret)
    auth = Authenticator(store=store, ttl=10)
    header = f"Bearer {secret}"
    assert asyncio.run(auth.authenticate_headers([header])).key_id == "key_1"
    for values in ([header, header], [header, "Bearer sk-other"], ["", header]):
        with pytest.raises(AuthenticationError, match="Authorization headers") as refused:
            asyncio.run(auth.authenticate_headers(values))
        assert refused.value.code == "multiple_authorization_headers"
        assert refused.value.status_code == 401
    with pytest.raises(AuthenticationError) as missing:
        asyncio.run(auth.authenticate_headers([]))
    assert missing.value.code == "missing_api_key"
    assert store.lookups == 1


class CountingMac:
    """A KeyMac that counts its verifications."""

    def __init__(self, mac: KeyMac) -> None:
        self.mac, self.checks = mac, 0

    def verify(self, secret: str) -> bool:
        self.checks += 1
        return self.mac.verify(secret)


def test_a_cached_key_is_not_verified_again_and_a_forged_one_still_is() -> None:
    store, clock, mac = FakeStore(), Clock(), KeyMac.of([new_mac_secret()])
    counting = CountingMac(mac)
    genuine = mac.mint()
    store.keys[genuine] = make_key(genuine)
    auth = Authenticator(store=store, ttl=30, clock=clock, mac=counting)  # type: ignore[arg-type]
    for _ in range(3):
        assert authenticate(auth, genuine).key_id == "key_1"
    assert (counting.checks, store.lookups) == (1, 1)  # the tag is checked once, with the read

    forged = outsider_key(random.Random(5))
    store.keys[forged] = make_key(forged)
    for _ in range(2):  # a refused key is never cached: each attempt is checked, none read
        with pytest.raises(AuthenticationError):
            authenticate(auth, forged)
    assert (counting.checks, store.lookups) == (3, 1)

    clock.now += 30.01  # past the lifetime, the key is checked and read again
    assert authenticate(auth, genuine).key_id == "key_1"
    assert (counting.checks, store.lookups) == (4, 2)
