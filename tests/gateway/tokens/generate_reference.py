"""Write reference_counts.json: every reference case counted by transformers, as vLLM counts.

    .venv/bin/python -m tests.gateway.tokens.generate_reference [TOKENIZERS_DIR]

For each folder with a chat template: `AutoTokenizer.from_pretrained(folder)` (what vLLM
0.33 loads, transformers>=5.16.1,<5.21), then `apply_chat_template(vllm_messages(case),
tools=..., add_generation_prompt=True, tokenize=True)` for each conversation (a template
that raises is recorded as refused), and `tokenizer(text, add_special_tokens=True)` for
each plain text. test_reference.py checks the committed file is what this produces.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from tests.gateway.tokens.reference_cases import conversation_cases, text_cases, vllm_messages

OUTPUT = Path(__file__).with_name("reference_counts.json")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def family_counts(folder: Path) -> dict[str, Any]:
    """One folder's entry: transformers' counts of every case, and its files' sha256."""
    import jinja2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    chats: dict[str, int | str] = {}
    for case in conversation_cases():
        try:
            ids = tokenizer.apply_chat_template(
                vllm_messages(case["messages"]),
                tools=case.get("tools"),
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        except jinja2.TemplateError:
            chats[case["id"]] = "refused"
            continue
        chats[case["id"]] = len(ids)
    texts = [len(tokenizer(text, add_special_tokens=True)["input_ids"]) for text in text_cases()]
    return {
        "tokenizer_class": type(tokenizer).__name__,
        "files": {
            name: sha256(folder / name)
            for name in ("tokenizer.json", "tokenizer_config.json")
            if (folder / name).is_file()
        },
        "chat": chats,
        "text_with_special": texts,
    }


def generate(tokenizers_dir: Path) -> dict[str, Any]:
    import transformers

    families = {}
    for folder in sorted(p for p in tokenizers_dir.iterdir() if (p / "tokenizer.json").is_file()):
        config = json.loads((folder / "tokenizer_config.json").read_text())
        if config.get("chat_template") or (folder / "chat_template.jinja").is_file():
            families[folder.name] = family_counts(folder)
    return {"transformers": transformers.__version__, "families": families}


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> None:
    root = Path(__file__).resolve().parents[3]
    tokenizers_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared/tokenizers"
    OUTPUT.write_text(render(generate(tokenizers_dir)), encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
