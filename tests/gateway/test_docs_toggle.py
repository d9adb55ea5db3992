"""DOCS_ENABLED=false (template.yaml: EnableApiDocs) removes /docs, /redoc and /openapi.json."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gateway.settings import Settings

from tests.conftest import Gateway, running_gateway


def test_docs_toggle_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().docs_enabled is True
    monkeypatch.setenv("DOCS_ENABLED", "false")
    assert Settings().docs_enabled is False


def test_docs_can_be_turned_off(dynamodb: str, tokenizers_dir: Path, sim_url: str) -> None:
    with running_gateway(tokenizers_dir, sim_url, docs_enabled=False) as gw:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            response = httpx.get(gw.url + path)
            assert response.status_code == 404, path
            assert response.json()["error"]["type"] == "not_found_error"
        assert httpx.get(gw.url + "/health").status_code == 200
        key = gw.new_key()
        models = httpx.get(gw.base_url + "/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200


def test_docs_are_served_by_default(gateway: Gateway) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(gateway.url + path).status_code == 200, path
