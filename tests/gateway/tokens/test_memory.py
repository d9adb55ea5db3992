"""A prompt as large as a request may be raises peak memory by under 300 MB.

Issue 27: one 3.8 MB chat body of digits raised the gateway's RSS by 1.26 GB while it was
counted. The texts are as long as a body of MAX_REQUEST_BYTES can carry, in UTF-8 bytes;
tests/gateway/tokens/measure_memory.py measures more of them, one process per cell, for the
table in docs/TOKENS.md. Each family takes a few 3.8 MB prompts in a child process, which
reports how far its peak RSS (ru_maxrss) rose while it did what the chat request path does
(the lower bound, then the count only if the bound is under the model's max_model_len:
chat/service.py `_refuse_past_context`) and, for the texts that are cut, while it counted
them alone; the high-water mark is reset first (Linux /proc/self/clear_refs) so that loading
the tokenizer does not hide the work's own peak. A memory assertion, not a timing one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from devstack.tokenizers import context_length

from tests.conftest import TOKENIZERS
from tests.support.tokenizers import FAMILIES

LIMIT_MB = 300
SIZE = 3_800_000  # UTF-8 bytes: what a body of MAX_REQUEST_BYTES (4 MiB) carries as a string
# Counted alone: the digits, a mixture, and two runs that are one pre-token each
# (gateway.tokens.deepcuts cuts inside them). `make memory` measures every family against
# every hostile text of measure_memory.py (CJK, one long word, special-token strings, ...).
COUNTED = {
    "digits": '"1" * SIZE',
    "mixed scripts": '"ab1 2\\t\\n中🚀 " * (SIZE // 24)',
    "spaces": '"x" + " " * SIZE + "x"',
    "emoji": '"🚀" * (SIZE // 4)',
}
# On the request path only: the texts that are counted whole (docs/TOKENS.md, "What counting
# costs": runs whose merge rules split at every boundary in a file whose merges are not
# monotone, Llama 3's spaces and newlines, and Metaspace words, Mistral's and TinyLlama's),
# whose count alone costs 330-510 MB. The request path bounds them first.
REQUEST_ONLY = {
    "only spaces": '" " * SIZE',
    "newlines": '"\\n" * SIZE',
    "one word": '"".join(random.Random(27).choices("abcdefghijklmnopqrstuvwxyz", k=SIZE))',
    "punct": '"!" * SIZE',
    "angles": '"<a" * (SIZE // 2)',  # one Metaspace word of would-be added tokens: 500 MB
}
# Counted alone, these cells are counted whole, by design (330-380 MB): measured on the
# request path only, where their bound is past the context.
WHOLE = {
    "llama-3-8b-instruct": {"spaces"},
    "mistral-7b-instruct-v0.1": {"spaces"},
    "tinyllama-1.1b-chat-v1.0": {"spaces"},
}
CHILD = """
import json, random, sys
from pathlib import Path
from gateway.tokens import ChatTokenizer
from tests.support.peak import count, peak_mb, request_path

SIZE = {size}
tokenizer = ChatTokenizer(Path(sys.argv[1]))
limit = int(sys.argv[2])
tokenizer.count_text("warm up")
tokenizer.lower_bound(["warm up"])

results = {{}}
for name, (expression, alone) in json.loads(sys.argv[3]).items():
    text = eval(expression)
    done, peak = peak_mb(lambda: request_path(tokenizer, text, limit=limit))
    results[name] = {{**done, "peak_mb": peak}}
    if alone:
        tokens, peak = peak_mb(lambda: count(tokenizer, text))
        results[name].update(counted=tokens, count_peak_mb=peak)
    del text
print(json.dumps(results))
"""


def _child(folder: Path, limit: int, prompts: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    """A fresh process: RSS that one text's work freed but kept cannot hide another's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD.format(size=SIZE),
            str(folder),
            str(limit),
            json.dumps(prompts),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=900,
    )
    results: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux procfs")
@pytest.mark.parametrize("family", TOKENIZERS.params(FAMILIES))
def test_a_request_sized_prompt_stays_under_300_mb(tokenizers_dir: Path, family: str) -> None:
    """The request path (the bound, then the count if the bound is under `make run`'s
    max_model_len for the family) stays under the target for every text, none exempt;
    counted alone (a model with no max_model_len), so do the texts that are cut."""
    folder = tokenizers_dir / family
    limit, whole = context_length(family, folder), WHOLE.get(family, set())
    prompts = {
        **{name: (text, name not in whole) for name, text in COUNTED.items()},
        **{name: (text, False) for name, text in REQUEST_ONLY.items()},
    }
    results = {}  # one process per text
    for name, prompt in prompts.items():
        results.update(_child(folder, limit, {name: prompt}))
    assert results["digits"]["counted"] >= SIZE // 4  # counted alone, not refused
    assert results["digits"]["tokens"] is None  # refused on the bound on the request path
    over = {
        name: peak
        for name, result in results.items()
        for peak in (result["peak_mb"], result.get("count_peak_mb", 0.0))
        if peak >= LIMIT_MB
    }
    assert over == {}, f"peak RSS rose by (MB): {results}"
    print(family, results)
