"""Two gateway processes that share nothing route each conversation to the same replica,
turn after turn (docs/ROUTING.md, "Prefix affinity").

Three real gpusim replicas; two Python processes (different hash seeds, so nothing can
lean on Python's salted hash()) each route the same conversations with the gateway's own
code (tests/support/affinity_probe.py) and report the replica of every turn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.servers import serve_asgi

ROOT = Path(__file__).resolve().parents[3]
SYSTEMS = ["You are a careful assistant for the billing team. " * 6,
           "You answer questions about rivers and mountains. " * 6]  # fmt: skip


def _conversations(count: int) -> list[list[dict[str, str]]]:
    talks = []
    for n in range(count):
        talk = [{"role": "system", "content": SYSTEMS[n % 2]}]
        for turn in range(3):
            talk.append({"role": "user", "content": f"Conversation {n}, question {turn}: " * 4})
            talk.append({"role": "assistant", "content": f"An answer to question {turn}."})
        talks.append(talk[:-1])
    return talks


@pytest.fixture(scope="module")
def replicas(tokenizers_dir: Path) -> Iterator[list[str]]:
    from gpusim import SimConfig, create_app

    with ExitStack() as stack:
        config = SimConfig(tokenizers_dir=tokenizers_dir, models=("qwen3",))
        yield [stack.enter_context(serve_asgi(create_app(config))) for _ in range(3)]


def _route(tokenizers_dir: Path, urls: list[str], talks: object, seed: str) -> list[list[str]]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.affinity_probe", str(tokenizers_dir), *urls],
        input=json.dumps(talks),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_two_processes_send_each_conversation_to_the_same_replica(
    tokenizers_dir: Path, replicas: list[str]
) -> None:
    talks = _conversations(12)
    first = _route(tokenizers_dir, replicas, talks, seed="1")
    second = _route(tokenizers_dir, replicas, talks, seed="2")
    assert first == second
    for served in first:
        assert len(served) == 3 and len(set(served)) == 1, served  # every turn, one replica
    # Conversations that share a system prompt are still spread over the replicas.
    assert len({served[0] for served in first}) == 3
