"""`gateway tokens count`: the gateway's prompt count for a request body, for bill audits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gateway.cli import main
from gateway.settings import Settings

from tests.conftest import TOKENIZERS, models_config
from tests.support import reference

BODY = {
    "model": "tinyllama",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}],
        },
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How many tokens is this?"},
    ],
}


def _settings(tokenizers_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        tokenizers_dir=tokenizers_dir,
        tokenizer_cache_dir=tmp_path / "cache",
        models_config=models_config("http://127.0.0.1:9"),
    )


def test_count_prints_the_gateway_prompt_count(
    tokenizers_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    TOKENIZERS.require("tinyllama-1.1b-chat-v1.0", "qwen3")
    body = tmp_path / "body.json"
    body.write_text(json.dumps(BODY))
    settings = _settings(tokenizers_dir, tmp_path)
    assert main(["tokens", "count", str(body), "--json"], settings=settings) == 0
    result = json.loads(capsys.readouterr().out)
    joined = [dict(m) for m in BODY["messages"]]
    joined[1]["content"] = "Hi\nthere"
    expected = reference.prompt_tokens(tokenizers_dir / "tinyllama-1.1b-chat-v1.0", joined)
    assert result["prompt_tokens"] == expected
    assert result["tokenizer_class"] == "LlamaTokenizer"
    assert "prepend_scheme='first'" in result["loading_rule"]
    assert result["source"] == f"folder {tokenizers_dir / 'tinyllama-1.1b-chat-v1.0'}"

    # --model picks another model for the same body; the plain output leads with the count
    assert main(["tokens", "count", str(body), "--model", "qwen3"], settings=settings) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"prompt_tokens {reference.prompt_tokens(tokenizers_dir / 'qwen3', joined)}"


@pytest.mark.parametrize(
    ("body", "args", "message"),
    [
        pytest.param(
            BODY,
            ["--model", "mistral"],
            "the chat template refuses this conversation",
            marks=TOKENIZERS.marks("mistral-7b-instruct-v0.1"),
        ),
        (BODY, ["--model", "nope"], "model 'nope' is not in the models config"),
        ({"messages": []}, [], "give --model"),
        (
            {"model": "qwen3", "messages": [{"role": "robot"}]},
            [],
            "invalid request body at messages.0",
        ),
        ("not json", [], "is not JSON"),
    ],
)
def test_count_errors_are_one_line(
    tokenizers_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    body: object,
    args: list[str],
    message: str,
) -> None:
    path = tmp_path / "body.json"
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    settings = _settings(tokenizers_dir, tmp_path)
    assert main(["tokens", "count", str(path), *args], settings=settings) == 1
    err = capsys.readouterr().err
    assert err.startswith("gateway: ") and message in err and err.count("\n") == 1
