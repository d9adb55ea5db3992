"""Revocation and rotation through a running gateway, with a short key-cache lifetime."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import running_gateway

HI = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def status(url: str, key: str) -> int:
    return httpx.post(
        url + "/v1/chat/completions", json=HI, headers={"Authorization": f"Bearer {key}"}
    ).status_code


def test_revoked_and_rotated_keys_stop_working_after_the_cache_lifetime(
    dynamodb: str, tokenizers_dir: Path, sim_url: str
) -> None:
    ttl = 3.0
    with running_gateway(tokenizers_dir, sim_url, key_cache_ttl_seconds=ttl) as gw:
        revoked, rotated = gw.new_key(), gw.new_key()
        assert status(gw.url, gw.new_key()) == 200  # warm up (loads the tokenizer)
        cached = time.monotonic()
        assert status(gw.url, revoked) == status(gw.url, rotated) == 200  # now cached

        gw.services.keys.revoke(key_id=gw.key_id(revoked))
        _, new_secret = gw.services.keys.rotate(key_id=gw.key_id(rotated))
        # within the lifetime, only the cache answers: the old secrets still work
        assert status(gw.url, revoked) == 200
        assert status(gw.url, rotated) == 200
        assert time.monotonic() - cached < ttl, "too slow to observe the cached window"

        time.sleep(max(0.0, cached + ttl + 0.1 - time.monotonic()))
        assert status(gw.url, revoked) == 401
        assert status(gw.url, rotated) == 401
        assert status(gw.url, new_secret) == 200
