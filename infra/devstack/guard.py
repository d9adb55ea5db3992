"""A guard model's tokenizer folder for the local stack and the tests: Llama Guard 3.

Llama Guard 3 8B is a fine-tuned Llama 3.1 8B: its tokenizer is Llama 3.1's (the same
128,256-token vocabulary as Llama 3; the special tokens its chat template writes,
<|begin_of_text|>, <|start_header_id|>, <|end_header_id|> and <|eot_id|>, have the same ids).
Its chat template, llama_guard_3.jinja beside this module, is the `chat_template` of
meta-llama/Llama-Guard-3-8B's tokenizer_config.json, character for character. So a Llama 3
tokenizer folder with that template counts a guard prompt as vLLM serving Llama Guard 3
counts it. Built with Meta Llama 3 (Llama 3 / 3.1 Community License).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TEMPLATE = Path(__file__).with_name("llama_guard_3.jinja")
GUARD_FOLDER = "llama-guard-3"
LLAMA3_FOLDER = "llama-3-8b-instruct"


def build_guard_tokenizer(llama3: Path, dest: Path) -> Path:
    """`dest`: llama3's tokenizer.json and its tokenizer_config.json with Llama Guard 3's
    chat template (read the same way by the gateway's tokens/ and by transformers)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(llama3 / "tokenizer.json", dest / "tokenizer.json")
    config = json.loads((llama3 / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = TEMPLATE.read_text(encoding="utf-8")
    (dest / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return dest
