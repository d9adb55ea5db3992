"""Counting a prompt as large as a request may be raises peak memory by under 300 MB.

Issue 27: one 3.8 MB chat body of digits raised the gateway's RSS by 1.26 GB while it was
counted. The texts are as long as a body of MAX_REQUEST_BYTES can carry, in UTF-8 bytes;
tests/gateway/tokens/measure_memory.py measures more of them, one process per cell, for the
table in docs/TOKENS.md. Each family counts a few 3.8 MB prompts in a child process, which reports how far
its peak RSS (ru_maxrss) rose during the count; the high-water mark is reset first (Linux
/proc/self/clear_refs) so that loading the tokenizer does not hide the count's own peak.
A memory assertion, not a timing one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOKENIZERS
from tests.support.tokenizers import FAMILIES

LIMIT_MB = 300
SIZE = 3_800_000  # UTF-8 bytes: what a body of MAX_REQUEST_BYTES (4 MiB) carries as a string
# Four texts: the digits, a mixture, and two runs that are one pre-token each
# (gateway.tokens.deepcuts cuts inside them). `make memory` measures every family against
# every hostile text of measure_memory.py (CJK, one long word, special-token strings, ...).
PROMPTS = {
    "digits": '"1" * SIZE',
    "mixed scripts": '"ab1 2\\t\\n中🚀 " * (SIZE // 24)',
    "spaces": '"x" + " " * SIZE + "x"',
    "emoji": '"🚀" * (SIZE // 4)',
}
# Counted whole, by design (docs/TOKENS.md, "What counting costs"): runs whose merge rules
# split at every boundary in a file whose merges are not monotone (Llama 3's spaces), and
# Metaspace words (Mistral, TinyLlama: no cut inside a word). Their memory is measured and
# reported, not bounded here.
WHOLE = {
    "llama-3-8b-instruct": {"spaces"},
    "mistral-7b-instruct-v0.1": {"spaces"},
    "tinyllama-1.1b-chat-v1.0": {"spaces"},
}
CHILD = """
import json, random, resource, sys
from pathlib import Path
from gateway.tokens import ChatTokenizer

SIZE = {size}
tokenizer = ChatTokenizer(Path(sys.argv[1]))
tokenizer.count_text("warm up")
results = {{}}
for name, expression in json.loads(sys.argv[2]).items():
    text = eval(expression)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # the peak so far becomes the current RSS
    except OSError:
        pass
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if tokenizer.has_chat_template:
        tokens = tokenizer.count_chat([{{"role": "user", "content": text}}])
    else:
        tokens = tokenizer.count_text_with_special(text)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results[name] = {{"tokens": tokens, "peak_mb": (after - before) / 1024}}
    del text
print(json.dumps(results))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux procfs")
@pytest.mark.parametrize("family", TOKENIZERS.params(FAMILIES))
def test_counting_a_request_sized_prompt_stays_under_300_mb(
    tokenizers_dir: Path, family: str
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD.format(size=SIZE),
            str(tokenizers_dir / family),
            json.dumps(PROMPTS),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["digits"]["tokens"] >= SIZE // 4  # counted, not refused
    bounded = {name: r for name, r in results.items() if name not in WHOLE.get(family, ())}
    over = {name: r["peak_mb"] for name, r in bounded.items() if r["peak_mb"] >= LIMIT_MB}
    assert over == {}, f"peak RSS rose by (MB): {results}"
    print(family, results)
