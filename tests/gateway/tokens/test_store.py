"""Token counts equal transformers' apply_chat_template count, for every template family."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway.errors import ConfigurationError
from gateway.settings import Settings
from gateway.tokens import TokenizerStore

from tests.conftest import TOKENIZERS
from tests.support import reference
from tests.support.hub import LocalHub, local_hub
from tests.support.stall import longest_stall
from tests.support.tokenizers import CHAT_FAMILIES

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


@pytest.mark.parametrize("family", TOKENIZERS.params(CHAT_FAMILIES))
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
    TOKENIZERS.require("llama-3-8b-instruct")
    tokenizer = TokenizerStore(Settings(tokenizers_dir=tokenizers_dir)).get("llama-3-8b-instruct")
    rendered = tokenizer.render_chat([{"role": "user", "content": "hi"}])
    assert rendered.startswith("<|begin_of_text|>")
    assert rendered.count("<|begin_of_text|>") == 1
    # counted without special tokens added: a second BOS would make this one more
    assert tokenizer.count_chat([{"role": "user", "content": "hi"}]) == reference.prompt_tokens(
        tokenizers_dir / "llama-3-8b-instruct", [{"role": "user", "content": "hi"}]
    )


def test_text_counts(tokenizers_dir: Path) -> None:
    TOKENIZERS.require("qwen3")
    tokenizer = TokenizerStore(Settings(tokenizers_dir=tokenizers_dir)).get("qwen3")
    assert tokenizer.count_text("Hello, world!") == 4
    assert tokenizer.count_text("") == 0


@pytest.mark.parametrize("special", [False, True])
def test_a_long_count_lets_other_threads_run(tokenizers_dir: Path, special: bool) -> None:
    TOKENIZERS.require("qwen3")
    """The gateway counts long texts in a worker thread so that the event loop goes on;
    that only helps if the count releases the GIL. `Tokenizer.encode` holds it for the
    whole count (measured: this thread then waits ~95% of the count)."""
    tokenizer = TokenizerStore(Settings(tokenizers_dir=tokenizers_dir)).get("qwen3")
    count = tokenizer.count_text_with_special if special else tokenizer.count_text
    text = " ".join(f"w{i % 9973}x{i % 31}" for i in range(150_000))  # ~1.2 MB
    counted, took, longest = longest_stall(lambda: count(text), lambda: time.sleep(0.001))
    assert counted > 150_000
    assert longest < took / 4, f"this thread waited {longest:.2f} s of a {took:.2f} s count"


def test_one_instance_per_distinct_file(tokenizers_dir: Path, tmp_path: Path) -> None:
    TOKENIZERS.require("qwen3", "gpt2")
    (tmp_path / "a").symlink_to(tokenizers_dir / "qwen3")
    (tmp_path / "b").symlink_to(tokenizers_dir / "qwen3")
    (tmp_path / "c").symlink_to(tokenizers_dir / "gpt2")
    store = TokenizerStore(Settings(tokenizers_dir=tmp_path, tokenizer_cache_dir=tmp_path / "x"))
    assert store.get("a") is store.get("b")
    assert store.get("c") is not store.get("a")
    assert store.loaded_files == 2
    assert not store.get("c").has_chat_template


@pytest.fixture
def hub(tokenizers_dir: Path) -> Iterator[LocalHub]:
    TOKENIZERS.require("qwen3")
    with local_hub({"Qwen/Qwen3-8B": tokenizers_dir / "qwen3"}) as state:
        yield state


def test_downloads_from_hub_once_and_caches(
    hub: LocalHub, tmp_path: Path, tokenizers_dir: Path
) -> None:
    endpoint, state = hub.url, hub
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


def test_unknown_repo_is_a_configuration_error(hub: LocalHub, tmp_path: Path) -> None:
    endpoint = hub.url
    store = TokenizerStore(Settings(tokenizer_cache_dir=tmp_path, hf_endpoint=endpoint))
    with pytest.raises(ConfigurationError, match="not found"):
        store.get("nobody/nothing")
