"""Token counts equal transformers' apply_chat_template count, for every template family."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gateway.errors import ConfigurationError
from gateway.settings import Settings
from gateway.tokens import TokenizerStore

from tests.support import reference

CONVERSATIONS = [
    [{"role": "user", "content": "Hello, world!"}],
    [
        {"role": "system", "content": "Be brief.\nVery brief."},
        {"role": "user", "content": "Wie geht's? 日本語も少し。 🚀"},
        {"role": "assistant", "content": "  Fine, thanks.  "},
        {"role": "user", "content": "And now?\n\n"},
    ],
    [{"role": "user", "content": "x" * 5000 + " end"}],
]
FAMILIES = ["qwen3", "llama-3-8b-instruct", "mistral-7b-instruct-v0.1", "tinyllama-1.1b-chat-v1.0"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
def test_prompt_count_matches_transformers(
    tokenizers_dir: Path, family: str, conversation: int
) -> None:
    messages = CONVERSATIONS[conversation]
    if family.startswith("mistral"):
        messages = [m for m in messages if m["role"] != "system"]
    store = TokenizerStore(Settings(tokenizers_dir=tokenizers_dir))
    expected = reference.prompt_tokens(tokenizers_dir / family, messages)
    assert store.get(family).count_chat(messages) == expected


def test_llama3_prompt_has_exactly_one_bos(tokenizers_dir: Path) -> None:
    tokenizer = TokenizerStore(Settings(tokenizers_dir=tokenizers_dir)).get("llama-3-8b-instruct")
    rendered = tokenizer.render_chat([{"role": "user", "content": "hi"}])
    assert rendered.startswith("<|begin_of_text|>")
    assert rendered.count("<|begin_of_text|>") == 1
    # counted without special tokens added: a second BOS would make this one more
    assert tokenizer.count_chat([{"role": "user", "content": "hi"}]) == reference.prompt_tokens(
        tokenizers_dir / "llama-3-8b-instruct", [{"role": "user", "content": "hi"}]
    )


def test_text_counts(tokenizers_dir: Path) -> None:
    tokenizer = TokenizerStore(Settings(tokenizers_dir=tokenizers_dir)).get("qwen3")
    assert tokenizer.count_text("Hello, world!") == 4
    assert tokenizer.count_text("") == 0


def test_one_instance_per_distinct_file(tokenizers_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tokenizers_dir / "qwen3")
    (tmp_path / "b").symlink_to(tokenizers_dir / "qwen3")
    (tmp_path / "c").symlink_to(tokenizers_dir / "gpt2")
    store = TokenizerStore(Settings(tokenizers_dir=tmp_path, tokenizer_cache_dir=tmp_path / "x"))
    assert store.get("a") is store.get("b")
    assert store.get("c") is not store.get("a")
    assert store.loaded_files == 2
    assert not store.get("c").has_chat_template


class _Hub:
    """A local stand-in for the Hugging Face Hub's `resolve` URLs."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []


@pytest.fixture
def hub(tokenizers_dir: Path) -> Iterator[tuple[str, _Hub]]:
    state = _Hub(
        {
            "/Qwen/Qwen3-8B/resolve/main/tokenizer.json": tokenizers_dir / "qwen3/tokenizer.json",
            "/Qwen/Qwen3-8B/resolve/main/tokenizer_config.json": tokenizers_dir
            / "qwen3/tokenizer_config.json",
        }
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("Authorization")))
            path = state.files.get(self.path)
            if path is None:
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def test_downloads_from_hub_once_and_caches(
    hub: tuple[str, _Hub], tmp_path: Path, tokenizers_dir: Path
) -> None:
    endpoint, state = hub
    settings = Settings(tokenizer_cache_dir=tmp_path, hf_endpoint=endpoint, hf_token="hf_secret")
    tokenizer = TokenizerStore(settings).get("Qwen/Qwen3-8B")
    messages = [{"role": "user", "content": "Hello"}]
    assert tokenizer.count_chat(messages) == reference.prompt_tokens(
        tokenizers_dir / "qwen3", messages
    )
    assert [p for p, _ in state.requests] == [
        "/Qwen/Qwen3-8B/resolve/main/tokenizer_config.json",
        "/Qwen/Qwen3-8B/resolve/main/chat_template.jinja",  # a 404: optional
        "/Qwen/Qwen3-8B/resolve/main/tokenizer.json",
    ]
    assert all(auth == "Bearer hf_secret" for _, auth in state.requests)
    assert (tmp_path / "Qwen--Qwen3-8B" / "tokenizer.json").is_file()

    # A new process (new store) finds the cached files and does not download again.
    TokenizerStore(settings).get("Qwen/Qwen3-8B")
    assert len(state.requests) == 3


def test_unknown_repo_is_a_configuration_error(hub: tuple[str, _Hub], tmp_path: Path) -> None:
    endpoint, _ = hub
    store = TokenizerStore(Settings(tokenizer_cache_dir=tmp_path, hf_endpoint=endpoint))
    with pytest.raises(ConfigurationError, match="not found"):
        store.get("nobody/nothing")
