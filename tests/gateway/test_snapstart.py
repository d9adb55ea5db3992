"""SnapStart (gateway.snapstart): the managed runtime's hooks (ApiFunction) and the Web
Adapter's HTTP hooks (StreamFunction) build the clients before the snapshot and drop pooled
connections after a restore, and requests still work after it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, running_gateway

BEFORE = "/_snapstart/before-checkpoint"
AFTER = "/_snapstart/after-restore"


class FakeSnapshotRestore(ModuleType):
    """`snapshot_restore_py` as the python3.12 managed runtime ships it: two registration
    functions taking (func, *args, **kwargs); the runtime calls the before-snapshot hooks
    in reverse order of registration and the after-restore hooks in order."""

    def __init__(self) -> None:
        super().__init__("snapshot_restore_py")
        self.before: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.after: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []

    def register_before_snapshot(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.before.append((func, args, kw))

    def register_after_restore(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.after.append((func, args, kw))

    def snapshot(self) -> None:
        for func, args, kw in reversed(self.before):
            func(*args, **kw)

    def restore(self) -> None:
        for func, args, kw in self.after:
            func(*args, **kw)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> FakeSnapshotRestore:
    fake = FakeSnapshotRestore()
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)
    return fake


@pytest.fixture
def adapter_gateway(dynamodb: str, tokenizers_dir: Path, sim_url: str) -> Iterator[Gateway]:
    with running_gateway(
        tokenizers_dir,
        sim_url,
        aws_lwa_snapstart_before_checkpoint_path=BEFORE,
        aws_lwa_snapstart_after_restore_path=AFTER,
    ) as gw:
        yield gw


def chat(gateway: Gateway, key: str) -> httpx.Response:
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(
        gateway.base_url + "/chat/completions", json=body, headers=headers, timeout=30
    )


def test_runtime_hooks_build_before_the_snapshot_and_reset_after_restore(
    runtime: FakeSnapshotRestore, dynamodb: str, tokenizers_dir: Path, sim_url: str
) -> None:
    with running_gateway(tokenizers_dir, sim_url) as gw:
        aws = gw.resources.aws
        assert len(runtime.before) == 1 and len(runtime.after) == 1
        assert "dynamodb" not in aws.__dict__  # nothing built at init
        runtime.snapshot()
        client = aws.__dict__["dynamodb"]  # built into the snapshot
        key = gw.new_key()
        assert chat(gw, key).status_code == 200
        pool = gw.resources.backends.http
        closed: list[str] = []
        original = client.close
        client.close = lambda: (closed.append("dynamodb"), original())[1]
        runtime.restore()
        assert closed == ["dynamodb"]
        assert gw.resources.backends._http is None and pool is not gw.resources.backends.http
        # The test's own clean-up, on the server's loop (a real snapshot holds no pool).
        asyncio.run_coroutine_threadsafe(pool.close(), pool._loop).result(timeout=10)
        # The same client, new connections: requests still work and are recorded.
        assert chat(gw, key).status_code == 200
        # ... through the new pool: the old one, closed, opens nothing again (it was, by the
        # backends built before the restore, and its session was never closed).
        assert pool.sessions == [] and gw.resources.backends.http.sessions
        assert aws.__dict__["dynamodb"] is client
        assert len(gw.records(key)) == 2


def test_without_the_runtime_library_nothing_is_registered(
    monkeypatch: pytest.MonkeyPatch, gateway: Gateway
) -> None:
    from gateway.snapstart import register_runtime_hooks

    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails
    assert register_runtime_hooks(gateway.resources) is False


def test_adapter_hooks_are_routes_only_where_configured(
    adapter_gateway: Gateway, gateway: Gateway
) -> None:
    for path in (BEFORE, AFTER):
        assert httpx.post(gateway.url + path, timeout=10).status_code == 404
    gw = adapter_gateway
    assert httpx.post(gw.url + BEFORE, timeout=30).status_code == 204
    assert "dynamodb" in gw.resources.aws.__dict__
    assert "gateway.backends.openai_http" in sys.modules
    key = gw.new_key()
    assert chat(gw, key).status_code == 200
    stale = gw.resources.backends._http
    assert stale is not None
    assert httpx.post(gw.url + AFTER, timeout=30).status_code == 204
    assert gw.resources.backends._http is None
    assert chat(gw, key).status_code == 200
    assert stale.sessions == []  # the restored instance forwards through its new pool
    assert AFTER not in httpx.get(gw.url + "/openapi.json", timeout=30).text


def test_preloading_also_builds_what_the_first_request_would(
    dynamodb: str, tokenizers_dir: Path, sim_url: str
) -> None:
    """PRELOAD_TOKENIZERS (StreamFunction's default) pays at init on purpose: the DynamoDB
    client is built then too, not inside the first request's key-lookup deadline."""
    with running_gateway(tokenizers_dir, sim_url, preload_tokenizers=True) as gw:
        assert "dynamodb" in gw.resources.aws.__dict__
    with running_gateway(tokenizers_dir, sim_url) as gw:
        assert "dynamodb" not in gw.resources.aws.__dict__
