"""Revocation and rotation through a running gateway, with the key cache on a test clock.

The cache's clock is injected, so the lifetime is crossed exactly, whatever the machine's
speed: no wall-clock sleep, no race between the cached window and the assertions.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from gateway.keys.auth import Authenticator

from tests.conftest import running_gateway
from tests.gateway.keys.test_auth import Clock

HI = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def status(url: str, key: str) -> int:
    return httpx.post(
        url + "/v1/chat/completions",
        json=HI,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,  # the first request loads the tokenizer
    ).status_code


def test_revoked_and_rotated_keys_stop_working_after_the_cache_lifetime(
    dynamodb: str, tokenizers_dir: Path, sim_url: str
) -> None:
    ttl, clock = 3.0, Clock()
    with running_gateway(tokenizers_dir, sim_url) as gw:
        resources = gw.resources
        resources.authenticator = Authenticator(store=resources.keys, ttl=ttl, clock=clock)
        revoked, rotated = gw.new_key(), gw.new_key()
        assert status(gw.url, revoked) == status(gw.url, rotated) == 200  # cached at t0

        resources.keys.revoke(key_id=gw.key_id(revoked))
        _, new_secret = resources.keys.rotate(key_id=gw.key_id(rotated))
        # within the lifetime, only the cache answers: the old secrets still work
        clock.now += ttl - 0.01
        assert status(gw.url, revoked) == 200
        assert status(gw.url, rotated) == 200

        clock.now += 0.02  # the lifetime has passed since both were cached
        assert status(gw.url, revoked) == 401
        assert status(gw.url, rotated) == 401
        assert status(gw.url, new_secret) == 200
