"""layers/build_tokenizers.py: the tokenizer layer, from a local directory or a (fake) Hub."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "layers" / "build_tokenizers.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_tokenizers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building
    spec.loader.exec_module(module)
    return module


bt = _load_script()


def _config(*models: tuple[str, str]) -> dict[str, Any]:
    return {
        "models": [
            {"id": model_id, "tokenizer": tokenizer, "upstream": {"type": "openai"}}
            for model_id, tokenizer in models
        ]
    }


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


def test_copies_from_a_local_directory(tmp_path: Path, tokenizers_dir: Path) -> None:
    config = tmp_path / "models.json"
    # found by model id (qwen3), twice (one copy), and by "--" name (llama)
    local = tmp_path / "local"
    (local / "meta-llama--Llama-3").mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = tokenizers_dir / "llama-3-8b-instruct" / name
        (local / "meta-llama--Llama-3" / name).write_bytes(src.read_bytes())
    (local / "qwen3").symlink_to(tokenizers_dir / "qwen3")
    models = _config(
        ("qwen3", "Qwen/Qwen3-8B"), ("qwen3-b", "Qwen/Qwen3-8B"), ("llama", "meta-llama/Llama-3")
    )
    config.write_text(json.dumps(models))
    out = tmp_path / "layer"

    result = _run(
        "--config", str(config), "--from-dir", str(local), "--no-download", "--out", str(out)
    )

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "tokenizers").iterdir()) == [
        "Qwen--Qwen3-8B",
        "meta-llama--Llama-3",
    ]
    qwen = out / "tokenizers" / "Qwen--Qwen3-8B"
    assert (qwen / "tokenizer.json").read_bytes() == (
        tokenizers_dir / "qwen3" / "tokenizer.json"
    ).read_bytes()
    assert (qwen / "tokenizer_config.json").is_file()
    assert json.loads((out / "gateway" / "models.json").read_text()) == models
    assert result.stdout.count("tokenizer.json ") == 2  # one progress line per file
    assert "[2/2]" in result.stdout


def test_missing_locally_without_download_fails(tmp_path: Path) -> None:
    config = tmp_path / "models.json"
    config.write_text(json.dumps(_config(("m", "org/absent"))))
    result = _run(
        "--config",
        str(config),
        "--from-dir",
        str(tmp_path),
        "--no-download",
        "--out",
        str(tmp_path / "o"),
    )
    assert result.returncode == 1
    assert "org/absent" in result.stderr


def test_config_from_environment_and_errors(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MODELS_CONFIG": json.dumps({"models": [{"id": "x"}]})}
    result = _run("--no-download", "--out", str(tmp_path / "o"), env=env)
    assert result.returncode == 0, result.stderr
    assert "no 'tokenizer'" in result.stdout
    env["MODELS_CONFIG"] = "{not json"
    assert _run("--out", str(tmp_path / "o"), env=env).returncode == 1
    env["MODELS_CONFIG"] = json.dumps({"models": [{"id": "x", "tokenizer": "../etc"}]})
    assert "bad tokenizer name" in _run("--out", str(tmp_path / "o"), env=env).stderr


def test_no_config_builds_an_empty_layer(tmp_path: Path) -> None:
    out = tmp_path / "layer"
    (out / "tokenizers" / "stale").mkdir(parents=True)
    result = _run("--out", str(out), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "warning: no models config" in result.stdout
    assert [p.name for p in (out / "tokenizers").iterdir()] == ["EMPTY"]
    assert not (out / "gateway" / "models.json").exists()


class _FakeHub:
    """A Hub that serves some files, requires a token, and redirects one file to a CDN."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.token = "hf_secret"
        self.seen: list[tuple[str, str, str | None]] = []  # (server, path, Authorization)
        self.cdn_url = ""


@contextmanager
def _serve(hub: _FakeHub, name: str) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            hub.seen.append((name, self.path, auth))
            if name == "cdn":
                self._send(200, hub.files[self.path])
            elif auth != f"Bearer {hub.token}":
                self._send(401, b"unauthorized")
            elif self.path.endswith("/tokenizer.json"):
                self.send_response(302)
                self.send_header("Location", f"{hub.cdn_url}{self.path}")
                self.end_headers()
            elif self.path in hub.files:
                self._send(200, hub.files[self.path])
            else:
                self._send(404, b"not found")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_downloads_from_the_hub_with_the_token_only_to_the_hub(tmp_path: Path) -> None:
    hub = _FakeHub()
    hub.files = {
        "/org/model/resolve/v2/tokenizer.json": b'{"version": "1.0"}',
        "/org/model/resolve/v2/tokenizer_config.json": b'{"chat_template": "x"}',
    }
    with _serve(hub, "hub") as hub_url, _serve(hub, "cdn") as cdn_url:
        hub.cdn_url = cdn_url
        config = {"models": [{"id": "m", "tokenizer": "org/model", "tokenizer_revision": "v2"}]}
        total = bt.build(config, tmp_path, from_dir=None, hf_endpoint=hub_url, token=hub.token)

        dest = tmp_path / "tokenizers" / "org--model"
        assert (dest / "tokenizer.json").read_bytes() == b'{"version": "1.0"}'
        assert (dest / "tokenizer_config.json").read_bytes() == b'{"chat_template": "x"}'
        assert not (dest / "chat_template.jinja").exists()  # 404: optional
        assert not list(dest.glob("*.part"))
        assert total > 0
        auth_by_server = {(server, auth) for server, _, auth in hub.seen}
        assert ("cdn", None) in auth_by_server
        assert ("cdn", f"Bearer {hub.token}") not in auth_by_server

        with pytest.raises(bt.BuildError, match=r"HTTP 401.*set HF_TOKEN"):
            bt.build(config, tmp_path / "x", from_dir=None, hf_endpoint=hub_url, token=None)


def test_layer_counts_as_transformers(tmp_path: Path, tokenizers_dir: Path) -> None:
    """The layer carries the files unchanged; the gateway's loader applies transformers 5's
    rules when it reads them from /opt/tokenizers, so every family counts as the reference."""
    from gateway.settings import Settings
    from gateway.tokens import TokenizerStore

    from tests.gateway.tokens.generate_reference import OUTPUT
    from tests.gateway.tokens.reference_cases import conversation_cases, vllm_messages

    families = json.loads(OUTPUT.read_text())["families"]
    config = _config(*((f"m-{name}", f"org/{name}") for name in families))
    local = tmp_path / "local"
    local.mkdir()
    for name in families:
        (local / f"org--{name}").symlink_to(tokenizers_dir / name)
    out = tmp_path / "layer"
    bt.build(config, out, from_dir=local, hf_endpoint=None, token=None)
    store = TokenizerStore(Settings(tokenizers_dir=out / "tokenizers"))
    cases = [c for c in conversation_cases() if c["id"].startswith(("user-", "turns-"))]
    for name, expected in families.items():
        tokenizer = store.get(f"org/{name}")
        assert tokenizer.directory == out / "tokenizers" / f"org--{name}"
        counts = {c["id"]: tokenizer.count_chat(vllm_messages(c["messages"])) for c in cases}
        assert counts == {c["id"]: expected["chat"][c["id"]] for c in cases}, name
