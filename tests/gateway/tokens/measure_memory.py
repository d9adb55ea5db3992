"""How far counting a request-sized text raises peak RSS, per family and text (docs/TOKENS.md,
"What counting costs"). One child process per cell, so that no cell inherits another's heap.

    PYTHONPATH=functions:infra .venv/bin/python -m tests.gateway.tokens.measure_memory \
        [--tokenizers-dir ../shared/tokenizers] [--family qwen3 ...] [--text spaces ...] \
        [--check | --request-path]

Each text is as long as a body of `MAX_REQUEST_BYTES` (4 MiB) can carry as one JSON string
(3.8 MB of UTF-8: a CJK character takes 3 bytes, an emoji 4). The child resets its peak
(`/proc/self/clear_refs`, Linux) after loading the tokenizer and building the text, and
reports the rise of `ru_maxrss` during `count_text`, with the count and the whole text's count
when asked (`--check`, which itself takes the whole text's memory, after the measurement).

`--request-path` measures what the chat request path does with the text as one user message
(chat/service.py `_refuse_past_context`, then the count): the lower bound, and `count_chat`
only when the bound is under the family's `max_model_len` in `make run`'s models config
(devstack.tokenizers.context_length); a cell the bound refuses is marked `R`. A family
without a chat template (GPT-2) takes the completions path: `each_lower_bound`, then
`count_text_with_special`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from devstack.tokenizers import context_length

from tests.support.tokenizers import FAMILIES

BYTES = 3_800_000
# name -> a Python expression of the text, given `B` (UTF-8 bytes) and `rng` (seeded)
TEXTS = {
    "digits": '"1" * B',
    "words": '" ".join(f"w{i % 9973}x{i % 31}" for i in range(B // 9))',
    "mixed": '"ab1 2\\t\\n中🚀 " * (B // 24)',
    "special": '"</s><s><|im_end|><|endoftext|><|eot_id|>1 " * (B // 42)',
    "cjk": '"中" * (B // 3)',
    "cjk text": '"".join(rng.choices("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年", k=B // 3))',
    "emoji": '"🚀" * (B // 4)',
    "letters": '"a" * B',
    "one word": '"".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=B))',
    "punct": '"!" * B',
    "spaces": '" " * B',
    "newlines": '"\\n" * B',
    "whitespace": '"".join(rng.choices(" \\t\\n\\r", k=B))',
    "combining": '"\\u0301" * (B // 2)',
    "latin1": '"".join(map(chr, rng.randbytes(B // 2)))',
    "angles": '"<a" * (B // 2)',
}
CHILD = """
import json, random, sys
from pathlib import Path
from gateway.tokens import ChatTokenizer
from tests.support.peak import peak_mb

B = int(sys.argv[3])
rng = random.Random(27)
tokenizer = ChatTokenizer(Path(sys.argv[1]))
tokenizer.count_text("warm up " * 5000)
text = eval(sys.argv[2])
tokens, peak = peak_mb(lambda: tokenizer.count_text(text))
result = {"tokens": tokens, "peak_mb": peak, "chars": len(text)}
if sys.argv[4] == "check":
    backend = tokenizer._tokenizer
    result["whole"] = len(backend.encode_batch_fast([text], add_special_tokens=False)[0])
print(json.dumps(result))
"""
# The request path: the bound first, the count only if the bound leaves the text possible.
REQUEST_CHILD = """
import json, random, sys
from pathlib import Path
from gateway.tokens import ChatTokenizer
from tests.support.peak import peak_mb, request_path

B = int(sys.argv[3])
limit = int(sys.argv[4])
rng = random.Random(27)
tokenizer = ChatTokenizer(Path(sys.argv[1]))
tokenizer.count_text("warm up " * 5000)
tokenizer.lower_bound(["warm up"])
text = eval(sys.argv[2])
done, peak = peak_mb(lambda: request_path(tokenizer, text, limit=limit))
print(json.dumps({**done, "peak_mb": peak}))
"""


def measure(
    folder: Path,
    expression: str,
    *,
    size: int = BYTES,
    check: bool = False,
    max_model_len: int | None = None,
) -> dict[str, Any]:
    """One cell: a fresh child counts the text; its peak RSS rise in MiB, and the count.
    With `max_model_len`, the request path instead: the bound, then the count if the bound
    is under it (`tokens` None: refused on the bound)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    if max_model_len is None:
        child, args = CHILD, [str(folder), expression, str(size), "check" if check else "-"]
    else:
        child, args = REQUEST_CHILD, [str(folder), expression, str(size), str(max_model_len)]
    done = subprocess.run(
        [sys.executable, "-c", child, *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=900,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizers-dir", type=Path, default=Path("../shared/tokenizers"))
    parser.add_argument("--family", action="append", choices=FAMILIES)
    parser.add_argument("--text", action="append", choices=sorted(TEXTS))
    parser.add_argument("--bytes", type=int, default=BYTES)
    parser.add_argument("--check", action="store_true", help="also count the text whole")
    parser.add_argument(
        "--request-path",
        action="store_true",
        help="the bound, then the count only under make run's max_model_len (R: refused)",
    )
    args = parser.parse_args()
    families = args.family or list(FAMILIES)
    texts = args.text or list(TEXTS)
    if args.request_path:  # the context each family is served with
        lengths = [str(context_length(f, args.tokenizers_dir / f)) for f in families]
        sys.stdout.write("max_model_len: " + ", ".join(lengths) + "\n")
    sys.stdout.write("| text | " + " | ".join(families) + " |\n")
    sys.stdout.write("|---" * (len(families) + 1) + "|\n")
    for name in texts:
        cells = []
        for family in families:
            folder = args.tokenizers_dir / family
            limit = context_length(family, folder) if args.request_path else None
            got = measure(
                folder, TEXTS[name], size=args.bytes, check=args.check, max_model_len=limit
            )
            cell = f"{got['peak_mb']:.0f}"
            if args.request_path and got["tokens"] is None:
                cell += " R"
            if args.check and got["tokens"] != got["whole"]:
                cell += f" WRONG {got['tokens']} != {got['whole']}"
            cells.append(cell)
        sys.stdout.write(f"| {name} | " + " | ".join(cells) + " |\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
