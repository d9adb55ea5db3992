"""GET and DELETE /v1/responses/{id} count against the key's request rate limit (rpm) like
every other route, without being billed: past the key's rpm they are refused with a 429
in OpenAI's error format, and the stored response is left as it was."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Gateway
from tests.support.minute import within_one_minute
from tests.support.sdk import openai_client

MODEL = "qwen3"


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


def test_get_and_delete_are_refused_past_the_keys_rpm(gateway: Gateway) -> None:
    def burst() -> dict[str, Any]:
        key = gateway.new_key(owner="rpm-owner", rpm=3)
        created = sdk(gateway, key).responses.create(
            model=MODEL, input="Keep this.", max_output_tokens=4
        )
        url = f"{gateway.base_url}/responses/{created.id}"
        auth = {"Authorization": f"Bearer {key}"}
        read = httpx.get(url, headers=auth, timeout=30)
        deleted = httpx.delete(url + "-unknown", headers=auth, timeout=30)  # 404, counted
        refused = [httpx.get(url, headers=auth, timeout=30), httpx.delete(url, headers=auth)]
        return {"key": key, "id": created.id, "read": read, "deleted": deleted, "refused": refused}

    run = within_one_minute(burst)
    assert run["read"].status_code == 200
    assert run["read"].headers["x-ratelimit-limit-requests"] == "3"
    assert run["deleted"].status_code == 404
    for refused in run["refused"]:
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert set(error) >= {"message", "type", "param", "code"}
    with pytest.raises(openai.RateLimitError):
        sdk(gateway, run["key"]).responses.retrieve(run["id"])
    # Refused, so not deleted: another key of the owner still reads it. Never billed:
    # the one record is the create's.
    other = gateway.new_key(owner="rpm-owner")
    assert sdk(gateway, other).responses.retrieve(run["id"]).id == run["id"]
    assert [r.route for r in gateway.records(run["key"])] == ["responses"]
