"""Forged keys cost nothing (issue 27, item 6), on a running gateway whose MAC secrets come
from moto's SSM (a SecureString parameter) and whose DynamoDB is the local one with its
pause fault: a key minted outside is refused while DynamoDB is paused, and not one
DynamoDB call reaches the server; every issued format still works, and keys made under the
previous MAC secret too."""

from __future__ import annotations

import json
import os
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.__main__ import LOCAL_MAC_PARAMETER, put_mac_secrets
from devstack.dynamodb import FaultControl
from gateway.keys.mac import KeyMac, new_mac_secret
from gateway.keys.secret import LEGACY_PREFIX, new_secret

from tests.conftest import Gateway, running_gateway
from tests.gateway.keys.test_mac import outsider_key
from tests.support.aws import moto_dynamodb

NEW, OLD, RETIRED = (new_mac_secret() for _ in range(3))
BODY = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


@dataclass
class Stack:
    gateway: Gateway
    faults: FaultControl


@pytest.fixture(scope="module")
def stack(tokenizers_dir: Path, sim_url: str) -> Iterator[Stack]:
    with moto_dynamodb() as endpoint:
        saved = os.environ.get("AWS_ENDPOINT_URL_SSM")
        os.environ["AWS_ENDPOINT_URL_SSM"] = endpoint  # boto3's own per-service variable
        try:
            put_mac_secrets(endpoint, json.dumps([NEW, OLD]))  # as `make run` does
            with running_gateway(
                tokenizers_dir, sim_url, key_mac_secrets_parameter=LOCAL_MAC_PARAMETER,
                key_lookup_deadline_seconds=1, dynamodb_read_timeout=1,
            ) as gw:  # fmt: skip
                yield Stack(gw, FaultControl(endpoint))
        finally:
            if saved is None:
                os.environ.pop("AWS_ENDPOINT_URL_SSM", None)
            else:
                os.environ["AWS_ENDPOINT_URL_SSM"] = saved


def post(gateway: Gateway, *authorization: str) -> httpx.Response:
    headers = [("Authorization", value) for value in authorization]
    return httpx.post(
        gateway.base_url + "/chat/completions", json=BODY, headers=headers, timeout=30
    )


def mint(gateway: Gateway, mac_secret: str) -> str:
    """A key as `gateway keys create` makes one under `mac_secret`."""
    mac = KeyMac.of([mac_secret])
    _, secret = gateway.resources.keys.create(
        name="mac", owner="forged-tests", secret=mac.mint(), mac_secret_id=mac.newest_id
    )
    return str(secret)


def test_keys_minted_outside_are_refused_with_dynamodb_paused_and_read_nothing(
    stack: Stack,
) -> None:
    rng = random.Random(27)
    forged = [outsider_key(rng) for _ in range(20)]  # the public layout, random tags
    forged += [outsider_key(rng, new_mac_secret()) for _ in range(20)]  # a guessed secret
    stored = mint(stack.gateway, RETIRED)  # in the table, but its secret is not active
    telemetry = stack.gateway.resources.telemetry
    rejections: list[dict[str, Any]] = []
    telemetry.rejected = lambda **seen: rejections.append(seen)  # the Rejections metric
    stack.faults.set(reset_counts=True)
    try:
        with stack.faults.paused():
            responses = [post(stack.gateway, f"Bearer {key}") for key in [*forged, stored]]
    finally:
        del telemetry.rejected
    assert {r.status_code for r in responses} == {401}
    assert {r.json()["error"]["code"] for r in responses} == {"invalid_api_key"}
    assert all(set(r.json()["error"]) == {"message", "type", "param", "code"} for r in responses)
    calls = stack.faults.calls()
    assert "GetItem" not in calls, calls  # not one forged key reached DynamoDB
    # counted as a bad checksum is: a rejection of type invalid_api_key, status 401
    kinds = [(seen["error_type"], seen["status"]) for seen in rejections]
    assert kinds == [("invalid_api_key", 401)] * len(responses)
    ids = [r.headers["x-request-id"] for r in responses]
    assert [seen.get("request_id") for seen in rejections] == ids  # each line findable


def test_a_checksummed_key_of_the_right_crc_costs_a_read(stack: Stack) -> None:
    # The contrast the MAC format removes: sk-gw2_'s checksum is public (CRC32), so an
    # outsider's well-formed key reaches DynamoDB (here: paused, so a 503).
    stack.faults.set(reset_counts=True)
    with stack.faults.paused():
        response = post(stack.gateway, f"Bearer {new_secret()}")
    assert response.status_code == 503
    assert stack.faults.calls().get("GetItem", 0) >= 1


def test_every_issued_format_and_the_previous_mac_secret_still_work(stack: Stack) -> None:
    gateway = stack.gateway
    keys = {
        "mac, newest secret": mint(gateway, NEW),
        "mac, previous secret": mint(gateway, OLD),
        "checksummed sk-gw2_": gateway.new_key(),
        "legacy sk-gw-": gateway.new_key(secret=LEGACY_PREFIX + secrets.token_urlsafe(32)),
    }
    statuses = {name: post(gateway, f"Bearer {key}").status_code for name, key in keys.items()}
    assert statuses == dict.fromkeys(keys, 200)


def test_two_authorization_headers_are_refused(stack: Stack) -> None:
    key = mint(stack.gateway, NEW)
    cases: list[tuple[str, ...]] = [
        (f"Bearer {key}", f"Bearer {key}"),
        (f"Bearer {key}", "Bearer sk-someone-else"),
    ]
    for headers in cases:
        response = post(stack.gateway, *headers)
        assert response.status_code == 401, response.text
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] == "multiple_authorization_headers"
        assert error["type"] == "authentication_error"
        assert "Authorization headers" in error["message"] and key not in error["message"]
    models = httpx.get(
        stack.gateway.base_url + "/models",
        headers=[("Authorization", f"Bearer {key}"), ("authorization", f"Bearer {key}")],
    )
    assert models.status_code == 401
