"""The gateway routing one model across two simulated GPU replicas and a dead server:
every request is served, records name the replica and the attempts, the dead server is
cooled down (and `gateway endpoints list` says so), and a stream that fails midway is not
retried and ends with the error event."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway.cli import main
from gateway.settings import Settings
from openai import InternalServerError, RateLimitError

from tests.conftest import Gateway, running_gateway
from tests.support.faulty import refused_url
from tests.support.processes import stop
from tests.support.sdk import openai_client
from tests.support.servers import free_port, serve_asgi
from tests.support.sse import events

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def second_replica(tokenizers_dir: Path) -> Iterator[str]:
    from gpusim import SimConfig, create_app

    with serve_asgi(create_app(SimConfig(tokenizers_dir=tokenizers_dir))) as url:
        yield url


@pytest.fixture(scope="module")
def config(sim_url: str, second_replica: str) -> str:
    endpoints = [
        {"name": "dead", "type": "openai", "base_url": refused_url(), "weight": 1000},
        {"name": "rep1", "type": "openai", "base_url": sim_url, "model": "qwen3"},
        {"name": "rep2", "type": "openai", "base_url": second_replica, "model": "qwen3"},
    ]
    return json.dumps({"models": [{"id": "qwen3", "tokenizer": "qwen3", "endpoints": endpoints}]})


@pytest.fixture(scope="module")
def gw(dynamodb: str, tokenizers_dir: Path, sim_url: str, config: str) -> Iterator[Gateway]:
    with running_gateway(tokenizers_dir, sim_url, models_config=config) as gateway:
        yield gateway


def test_requests_move_off_a_dead_replica_and_records_say_where_they_went(
    gw: Gateway, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = gw.new_key()
    client = openai_client(base_url=gw.base_url, api_key=key, max_retries=0)
    for _ in range(16):
        reply = client.chat.completions.create(model="qwen3", messages=HI, max_tokens=4)  # type: ignore[arg-type]
        assert reply.choices[0].message.content
    records = sorted(gw.records(key), key=lambda r: r.created_at)
    assert [r.status for r in records] == ["completed"] * 16
    # The dead server (weight 1000) is tried first until it is cooled down, 3 failures on.
    assert [r.attempts for r in records[:3]] == [2, 2, 2]
    assert [r.attempts for r in records[3:]] == [1] * 13
    served = Counter(r.endpoint for r in records)
    assert set(served) == {"rep1", "rep2"}  # both replicas share the load
    code = main(["endpoints", "list", "--json"], settings=Settings(models_config=config))
    lines = capsys.readouterr().out.splitlines()  # the gateway's own EMF lines too
    rows = {
        r["endpoint"]: r
        for r in map(json.loads, lines)
        if r.get("model") == "qwen3" and "state" in r
    }
    assert code == 0 and rows["dead"]["state"] == "cooled_down"
    assert rows["dead"]["reason"] == "upstream_error"
    assert rows["rep1"]["state"] == rows["rep2"]["state"] == "ok"


def test_a_stream_failing_midway_is_not_retried(gw: Gateway) -> None:
    key = gw.new_key()
    body: dict[str, Any] = {
        "model": "qwen3", "messages": HI, "stream": True, "sim": {"fail_after_tokens": 3}
    }  # fmt: skip
    with gw.stream_chat(key, body) as response:
        assert response.status_code == 200
        received = [data for _, data in events(response)]
    assert received[-1]["error"]["type"] == "upstream_error"
    assert "[DONE]" not in received
    [record] = gw.records(key)
    assert record.status == "upstream_error" and record.attempts == 1
    assert record.endpoint in ("rep1", "rep2") and record.completion_tokens == 3


# --- issue 27, item 3: cooldowns that cannot be weaponized, end to end -----------------


@pytest.fixture
def pausable_replica(tokenizers_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """gpusim in a process of its own, so that it can be paused (SIGSTOP) as `make run`'s
    demo pauses a replica: it still accepts connections and answers nothing."""
    port = free_port()
    cmd = [sys.executable, "-m", "gpusim", "--port", str(port), "--models", "qwen3",
           "--tokenizers-dir", str(tokenizers_dir)]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(process.url + "/health", timeout=1).status_code == 200:  # type: ignore[attr-defined]
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "gpusim did not start"
            time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGCONT)
        stop(process)  # killed if SIGTERM is not enough within 10 s on a loaded machine


def test_one_keys_500s_and_a_429_for_an_hour_do_not_stop_a_paused_replicas_peer(
    dynamodb: str,
    tokenizers_dir: Path,
    sim_url: str,
    pausable_replica: subprocess.Popen[bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The attack of issue 27: one key sends three requests that make both replicas answer
    500, and one that both answer 429 with Retry-After: 3600; then one replica pauses.
    Every other request is still served, by the peer (before: both replicas were cooled
    down or benched for an hour, the router made one attempt and about half the requests
    got a 504), and `gateway endpoints list` shows the backoff, for a minute only."""
    paused_url = pausable_replica.url  # type: ignore[attr-defined]
    endpoints = [
        {"name": "peer", "type": "openai", "base_url": sim_url, "model": "qwen3"},
        {"name": "paused", "type": "openai", "base_url": paused_url, "model": "qwen3"},
    ]
    config = json.dumps({"models": [{"id": "qwen3", "tokenizer": "qwen3", "endpoints": endpoints}]})
    settings = {"models_config": config, "upstream_first_token_timeout": 1.0}
    with running_gateway(tokenizers_dir, sim_url, **settings) as gw:
        attacker = openai_client(base_url=gw.base_url, api_key=gw.new_key(), max_retries=0)
        for _ in range(3):
            with pytest.raises(InternalServerError):  # 502: both replicas answered 500
                attacker.chat.completions.create(
                    model="qwen3", messages=HI, max_tokens=4,  # type: ignore[arg-type]
                    extra_body={"sim": {"fail_status": 500}},
                )  # fmt: skip
        with pytest.raises(RateLimitError) as limited:
            attacker.chat.completions.create(
                model="qwen3", messages=HI, max_tokens=4,  # type: ignore[arg-type]
                extra_body={"sim": {"fail_status": 429, "retry_after": 3600}},
            )  # fmt: skip
        assert limited.value.response.headers["retry-after"] == "3600"
        started = time.time()
        code = main(["endpoints", "list", "--json"], settings=Settings(models_config=config))
        rows = {
            r["endpoint"]: r
            for r in map(json.loads, capsys.readouterr().out.splitlines())
            if r.get("model") == "qwen3" and "state" in r
        }
        assert code == 0
        for name in ("peer", "paused"):
            assert rows[name]["state"] == "backing_off"
            until = datetime.fromisoformat(rows[name]["until"]).timestamp()
            assert until <= started + 60  # not an hour
        pausable_replica.send_signal(signal.SIGSTOP)
        key = gw.new_key()
        for _ in range(8):
            body = {"model": "qwen3", "messages": HI, "stream": True, "max_tokens": 4}
            with gw.stream_chat(key, body) as response:
                assert response.status_code == 200
                received = [data for _, data in events(response)]
            assert received[-1] == "[DONE]"
        records = gw.records(key)
        assert [r.status for r in records] == ["completed"] * 8
        assert {r.endpoint for r in records} == {"peer"}
