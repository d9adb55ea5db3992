"""Shared fixtures. Paths to ../shared are resolved here; tests that need it skip cleanly.

../shared (beside the checkout; GATEWAY_SHARED_DIR overrides it) holds the real tokenizer
folders (tokenizers/<folder>/tokenizer.json ...) and OpenAI's schemas. A tokenizer family
missing there is taken from what `make run` downloaded, where present
(tests/support/tokenizers.py). Without every family the run says so once, at the start,
with how to provide them; the token tests (tests/gateway/tokens) run on the families found
and skip the others, each with its reason; the other tests need every family.

The stack the tests run against is real: moto's DynamoDB server, the simulated GPU
endpoint and the gateway, each served over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from devstack import motofix

from tests.support.aws import moto_dynamodb
from tests.support.servers import serve_asgi
from tests.support.tokenizers import TEST_MODELS, locate, shared_root

ROOT = Path(__file__).resolve().parents[1]
SHARED = shared_root(ROOT).resolve()  # as `make run` resolves TOKENIZERS_DIR
TOKENIZERS_DIR = SHARED / "tokenizers"
CONFORMANCE_SCHEMAS = SHARED / "conformance" / "openai-chat-schemas.json"
# Each tokenizer family's folder: ../shared's, else make run's download (read-only).
TOKENIZERS = locate(shared=TOKENIZERS_DIR, env=os.environ)

__all__ = ["TEST_MODELS", "TOKENIZERS", "Gateway", "models_config", "running_gateway"]


def pytest_configure(config: pytest.Config) -> None:
    motofix.install()  # moto's DynamoDB with per-item atomic writes and cheap transactions


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say once, first (with -q too), how to provide missing tokenizer files."""
    message = TOKENIZERS.how_to_provide()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if message and reporter is not None:
        reporter.write_line(f">> {message}", yellow=True)


@pytest.fixture(scope="session")
def tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder with every family found, under its family name (see TOKENIZERS)."""
    return TOKENIZERS.folder(tmp_path_factory.getbasetemp() / "tokenizers")


@pytest.fixture(scope="session")
def tokenizers_dir(tokenizer_folder: Path) -> Path:
    """Every family, or a skip that names the missing ones (the token tests' own
    conftest relaxes this to the families found)."""
    message = TOKENIZERS.how_to_provide()
    if message:
        pytest.skip(message)
    return tokenizer_folder


@pytest.fixture(scope="session")
def conformance_schemas() -> Path:
    if not CONFORMANCE_SCHEMAS.is_file():
        pytest.skip(f"OpenAI schemas not found at {CONFORMANCE_SCHEMAS} (../shared is absent)")
    return CONFORMANCE_SCHEMAS


@pytest.fixture
def mock_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An in-process moto DynamoDB (fresh per test) with the tables from template.yaml."""
    import boto3
    from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables
    from moto import mock_aws

    from tests.support.aws import FAKE_CREDENTIALS

    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(client, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
        yield client


@pytest.fixture(scope="session")
def dynamodb() -> Iterator[str]:
    with moto_dynamodb() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def sim_url(tokenizers_dir: Path) -> Iterator[str]:
    from gpusim import SimConfig, create_app

    with serve_asgi(create_app(SimConfig(tokenizers_dir=tokenizers_dir))) as url:
        yield url


def models_config(sim_url: str, **upstream: Any) -> str:
    models = [
        {
            "id": public,
            "tokenizer": folder,
            "upstream": {"type": "openai", "base_url": sim_url, "model": folder, **upstream},
        }
        for public, folder in TEST_MODELS.items()
    ]
    return json.dumps({"models": models})


@dataclass
class Gateway:
    """A running gateway and its in-process resources (for arranging and asserting)."""

    url: str
    resources: Any  # gateway.resources.Resources

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stream_chat(self, key: str, body: dict[str, Any]) -> Any:
        """`with gateway.stream_chat(key, body) as response:` a streamed chat request."""
        import httpx

        return httpx.stream(
            "POST",
            self.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )

    def new_key(self, **kwargs: Any) -> str:
        kwargs.setdefault("name", "test")
        kwargs.setdefault("owner", "tests")
        _, secret = self.resources.keys.create(**kwargs)
        return str(secret)

    def key_id(self, secret: str) -> str:
        key = self.resources.keys.lookup(secret=secret)
        assert key is not None
        return str(key.key_id)

    def records(self, secret: str) -> list[Any]:
        return list(self.resources.usage.query(key_id=self.key_id(secret)))


@contextmanager
def running_gateway(tokenizers_dir: Path, sim_url: str, **settings: Any) -> Iterator[Gateway]:
    """The gateway app served on 127.0.0.1 with these settings (on the moto tables)."""
    from gateway.app import create_app
    from gateway.settings import Settings

    settings.setdefault("models_config", models_config(sim_url))
    settings.setdefault("key_cache_ttl_seconds", 0)
    # Every request's completion counted by the gateway too, for the exactness checks.
    settings.setdefault("usage_audit_rate", 1.0)
    # This shared 2-core machine answers in seconds under load, DynamoDB in milliseconds:
    # generous deadlines here; the deadline tests set their own.
    for name in ("key_lookup", "admission", "usage_write"):
        settings.setdefault(f"{name}_deadline_seconds", 10)
    settings.setdefault("dynamodb_read_timeout", 10)
    app = create_app(Settings(tokenizers_dir=tokenizers_dir, **settings))
    with serve_asgi(app) as url:
        yield Gateway(url=url, resources=app.state.resources)


@pytest.fixture(scope="session")
def gateway(dynamodb: str, tokenizers_dir: Path, sim_url: str) -> Iterator[Gateway]:
    with running_gateway(tokenizers_dir, sim_url) as gw:
        yield gw


@pytest.fixture
def api_key(gateway: Gateway) -> str:
    return gateway.new_key()
