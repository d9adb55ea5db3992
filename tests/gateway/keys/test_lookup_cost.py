"""Unauthenticated traffic costs no DynamoDB read: measured on a real boto3 client.

Every DynamoDB API call the client makes is counted with a botocore event hook
(`before-call.dynamodb`), against moto's DynamoDB server; the tables come from
template.yaml.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import string
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import boto3
import httpx
import pytest
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.errors import AuthenticationError
from gateway.keys import ApiKey, KeyStore
from gateway.keys.auth import NEGATIVE_TTL_SECONDS, Authenticator
from gateway.keys.mac import KeyMac, new_mac_secret
from gateway.keys.secret import LEGACY_PREFIX, PREFIX

from tests.conftest import Gateway
from tests.gateway.keys.test_auth import Clock
from tests.gateway.keys.test_mac import outsider_key

BASE62 = string.digits + string.ascii_letters


@contextmanager
def counting(client: Any) -> Iterator[Counter[str]]:
    """Counts the client's DynamoDB API calls by operation while the block runs."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.dynamodb", count, unique_id="count-calls")
    try:
        yield calls
    finally:
        client.meta.events.unregister("before-call.dynamodb", unique_id="count-calls")


def random_keys(n: int, seed: int) -> list[str]:
    """Keys an attacker would send: the new prefix and length with random characters,
    plus junk of other shapes."""
    rng = random.Random(seed)
    shaped = [PREFIX + "".join(rng.choices(BASE62, k=49)) for _ in range(n)]
    junk = ["sk-gw-nope", LEGACY_PREFIX + "x" * 42, "sk-" + "a" * 48, "", " ", "null"]
    return shaped + junk


@pytest.fixture
def store(dynamodb: str) -> Iterator[KeyStore]:
    with closing(boto3.client("dynamodb")) as client:
        yield KeyStore(client=client, table=LOCAL_TABLE_NAMES["KeysTable"])


def check(auth: Authenticator, secret: str) -> ApiKey | str:
    """The key, or the error code of the refusal."""
    try:
        return asyncio.run(auth.authenticate(f"Bearer {secret}"))
    except AuthenticationError as exc:
        return str(exc.code)


def test_the_counter_sees_a_lookup_and_the_negative_cache(store: KeyStore) -> None:
    # The measurement can fail: an unknown key of a valid shape is one GetItem, then
    # cached as unknown for NEGATIVE_TTL_SECONDS, then read again.
    clock = Clock()
    auth = Authenticator(store=store, ttl=10, clock=clock)
    unknown = LEGACY_PREFIX + secrets.token_urlsafe(32)
    with counting(store._client) as calls:
        assert [check(auth, unknown) for _ in range(5)] == ["invalid_api_key"] * 5
        assert calls == {"GetItem": 1}
        clock.now += NEGATIVE_TTL_SECONDS + 0.01
        assert check(auth, unknown) == "invalid_api_key"
        assert calls == {"GetItem": 2}


def test_malformed_keys_cost_no_dynamodb_call(store: KeyStore) -> None:
    auth = Authenticator(store=store, ttl=10)
    keys = random_keys(1000, seed=4)
    with counting(store._client) as calls:
        refusals = [check(auth, key) for key in keys]
    assert refusals.count("invalid_api_key") == len(keys) - 2
    assert refusals.count("missing_api_key") == 2  # "" and " "
    assert sum(calls.values()) == 0, calls


def test_new_key_round_trips_and_legacy_key_still_works(store: KeyStore) -> None:
    auth = Authenticator(store=store, ttl=10)
    created, new = store.create(name="new", owner="cost")
    legacy_secret = LEGACY_PREFIX + secrets.token_urlsafe(32)
    legacy, _ = store.create(name="legacy", owner="cost", secret=legacy_secret)
    assert new.startswith(PREFIX)
    with counting(store._client) as calls:
        for secret, key in [(new, created), (legacy_secret, legacy)]:
            found = check(auth, secret)
            assert isinstance(found, ApiKey) and found.key_id == key.key_id
    assert calls == {"GetItem": 2}
    # one wrong character of a real key: refused for free
    typo = new[:-1] + ("a" if new[-1] != "a" else "b")
    with counting(store._client) as calls:
        assert check(auth, typo) == "invalid_api_key"
    assert not calls


def test_a_secret_that_could_never_authenticate_is_not_stored(store: KeyStore) -> None:
    with pytest.raises(ValueError, match="malformed"):
        store.create(name="bad", owner="cost", secret="sk-gw-demo")


def test_a_flood_of_random_keys_through_the_gateway_reads_nothing(gateway: Gateway) -> None:
    # The shared test gateway runs with no key cache at all (lifetime 0): only the format
    # check stands between these requests and DynamoDB.
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]}
    keys = [k for k in random_keys(300, seed=9) if k.strip()]  # "Bearer " is no valid header
    with counting(gateway.resources.aws.dynamodb) as calls, httpx.Client() as client:
        responses = [
            client.post(
                gateway.base_url + "/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )
            for key in keys
        ]
    assert {r.status_code for r in responses} == {401}
    codes = {r.json()["error"]["code"] for r in responses}
    assert codes == {"invalid_api_key"}
    assert all(set(r.json()["error"]) == {"message", "type", "param", "code"} for r in responses)
    assert sum(calls.values()) == 0, calls
    # ...while a real key in the same gateway still reads its record
    real = gateway.new_key()
    with counting(gateway.resources.aws.dynamodb) as calls:
        response = httpx.get(
            gateway.base_url + "/models", headers={"Authorization": f"Bearer {real}"}
        )
    assert response.status_code == 200
    assert calls["GetItem"] == 1


def test_keys_minted_outside_cost_no_dynamodb_call(store: KeyStore) -> None:
    # The MAC format's layout is public; its tag is not: 1,000 keys with random tags and
    # 1,000 tagged under a guessed secret read nothing, while a real key reads its record.
    mac = KeyMac.of([new_mac_secret(), new_mac_secret()])
    auth = Authenticator(store=store, ttl=10, mac=mac)
    rng = random.Random(6)
    forged = [outsider_key(rng) for _ in range(1000)]
    forged += [outsider_key(rng, new_mac_secret()) for _ in range(1000)]
    with counting(store._client) as calls:
        assert {check(auth, key) for key in forged} == {"invalid_api_key"}
    assert sum(calls.values()) == 0, calls
    created, secret = store.create(
        name="mac", owner="cost", secret=mac.mint(), mac_secret_id=mac.newest_id
    )
    with counting(store._client) as calls:
        found = check(auth, secret)
    assert isinstance(found, ApiKey) and found.key_id == created.key_id
    assert found.mac_secret_id == mac.newest_id
    assert calls == {"GetItem": 1}
