"""The loading rules hold for config settings the shared files do not use: variants of
the real folders with other `legacy`, `add_prefix_space`, added-token flags and
`split_special_tokens`, each counted by transformers' AutoTokenizer at test time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gateway.tokens import ChatTokenizer

from tests.conftest import TOKENIZERS
from tests.gateway.tokens.reference_cases import conversation_cases, text_cases, vllm_messages

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "tinyllama-legacy": ("tinyllama-1.1b-chat-v1.0", {"legacy": True}),
    "tinyllama-no-prefix-space": ("tinyllama-1.1b-chat-v1.0", {"add_prefix_space": False}),
    "mistral-not-legacy": ("mistral-7b-instruct-v0.1", {"legacy": False}),
    "mistral-fast-class": ("mistral-7b-instruct-v0.1", {"tokenizer_class": "LlamaTokenizerFast"}),
    "tinyllama-split-special": ("tinyllama-1.1b-chat-v1.0", {"split_special_tokens": True}),
    "qwen3-prefix-space": ("qwen3", {"add_prefix_space": True}),
    "qwen3-eos-lstrip": ("qwen3", {"added_tokens_decoder": {"151645": {"lstrip": True}}}),
    "llama3-no-class": ("llama-3-8b-instruct", {"tokenizer_class": None}),
    "gpt2-class": ("gpt2", {"tokenizer_class": "GPT2Tokenizer"}),
    "gpt2-class-prefix-space": (
        "gpt2",
        {"tokenizer_class": "GPT2TokenizerFast", "add_prefix_space": True},
    ),
    "llama3-eot-lstrip": (
        "llama-3-8b-instruct",
        {"added_tokens_decoder": {"128009": {"lstrip": True}}},
    ),
    "tinyllama-eos-rstrip": (
        "tinyllama-1.1b-chat-v1.0",
        {"added_tokens_decoder": {"2": {"rstrip": True}}},
    ),
}


def _variant(tokenizers_dir: Path, tmp_path: Path, name: str) -> Path:
    source, changes = VARIANTS[name]
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tokenizer.json").symlink_to(tokenizers_dir / source / "tokenizer.json")
    template = tokenizers_dir / source / "chat_template.jinja"  # a Hub download's, if any
    if template.is_file():
        (folder / template.name).symlink_to(template)
    config = json.loads((tokenizers_dir / source / "tokenizer_config.json").read_text())
    for key, value in changes.items():
        if key == "added_tokens_decoder":
            for token_id, flags in value.items():
                config[key][token_id].update(flags)
        elif value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=TOKENIZERS.marks(VARIANTS[n][0])) for n in sorted(VARIANTS)]
)
def test_variant_counts_equal_transformers(tokenizers_dir: Path, tmp_path: Path, name: str) -> None:
    import jinja2
    from gateway.tokens.errors import TemplateRefused
    from transformers import AutoTokenizer

    folder = _variant(tokenizers_dir, tmp_path, name)
    reference = AutoTokenizer.from_pretrained(str(folder))
    gateway = ChatTokenizer(folder)
    wrong = []
    for case in conversation_cases()[::3] if gateway.has_chat_template else []:
        messages = vllm_messages(case["messages"])
        try:
            want: int | str = len(
                reference.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=False
                )
            )
        except jinja2.TemplateError:
            want = "refused"
        try:
            got: int | str = gateway.count_chat(messages)
        except TemplateRefused:
            got = "refused"
        if got != want:
            wrong.append((case["id"], got, want))
    for text in text_cases():
        want_text = len(reference(text, add_special_tokens=True)["input_ids"])
        if gateway.count_text_with_special(text) != want_text:
            wrong.append((text[:30], gateway.count_text_with_special(text), want_text))
    assert wrong == []


def test_gateway_loads_and_counts_without_transformers(tokenizers_dir: Path) -> None:
    """Lambda must not import transformers; the simulated endpoint must not import gateway."""
    import subprocess
    import sys

    TOKENIZERS.require("tinyllama-1.1b-chat-v1.0")
    code = (
        "import sys; from pathlib import Path; from gateway.tokens import ChatTokenizer; "
        "import gateway.app; "
        f"t = ChatTokenizer(Path({str(tokenizers_dir / 'tinyllama-1.1b-chat-v1.0')!r})); "
        "t.count_chat([{'role': 'user', 'content': 'hi'}]); "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    code = (
        "import sys, gpusim, gpusim.app, gpusim.models; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'gateway']"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
