"""CPU of `count_text` on ordinary prompts, this checkout against another, side by side.

    PYTHONPATH=functions:infra .venv/bin/python -m tests.gateway.tokens.bench_counting \
        --baseline /work/main [--tokenizers-dir ../shared/tokenizers] [--rounds 5]

Each round runs one child per checkout (alternating, so that load on the machine falls on
both alike); a child loads every family and reports the process CPU seconds of counting each
prompt a number of times. The report is the ratio this / baseline per prompt (median of the
rounds): below 1 is faster. A benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from tests.support.tokenizers import FAMILIES

PROMPTS = {
    # a chat turn of a few hundred tokens, counted whole (under CHUNK_CHARS)
    "chat 2 KB": ("Explain how a hash map works, with an example in Python. " * 36, 200),
    # a long document with ordinary cuts (pieces)
    "document 200 KB": (
        "".join(
            f"Section {i}: the quick brown fox jumps over {i % 97} lazy dogs.\n"
            for i in range(3500)
        ),
        3,
    ),
}
CHILD = """
import json, sys, time
from pathlib import Path
from gateway.tokens import ChatTokenizer

out = {}
prompts = json.loads(sys.stdin.read())
for family in sys.argv[2:]:
    tokenizer = ChatTokenizer(Path(sys.argv[1]) / family)
    for name, (text, times) in prompts.items():
        tokenizer.count_text(text)  # warm (splitter built, caches filled)
        began = time.process_time()
        for _ in range(times):
            tokenizer.count_text(text)
        out[f"{family} / {name}"] = time.process_time() - began
print(json.dumps(out))
"""


def _run(checkout: Path, tokenizers_dir: Path) -> dict[str, float]:
    path = os.pathsep.join(str(checkout / p) for p in ("functions", "infra"))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tokenizers_dir), *FAMILIES],
        input=json.dumps(PROMPTS),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--tokenizers-dir", type=Path, default=Path("../shared/tokenizers"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[3]
    ratios: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        base = _run(args.baseline, args.tokenizers_dir)
        this = _run(here, args.tokenizers_dir)
        for key, seconds in this.items():
            ratios.setdefault(key, []).append(seconds / base[key])
    for key, values in ratios.items():
        sys.stdout.write(f"{key}: {statistics.median(values):.2f}\n")


if __name__ == "__main__":
    main()
