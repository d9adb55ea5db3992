"""/v1/completions' logprobs, as vLLM's CompletionRequest takes it: an integer (the
number of alternatives per token, 0-20), answered in the legacy CompletionLogProbs shape
(issue 27: gpusim used to refuse it with chat's boolean check)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gpusim import SimConfig, create_app

from tests.support.servers import serve_asgi


@pytest.fixture(scope="module")
def sim(tokenizers_dir: Path) -> Iterator[str]:
    with serve_asgi(create_app(SimConfig(tokenizers_dir=tokenizers_dir))) as url:
        yield url


def complete(sim: str, **body: Any) -> httpx.Response:
    body = {"model": "qwen3", "prompt": "The lighthouse", "max_tokens": 5, **body}
    return httpx.post(sim + "/v1/completions", json=body, timeout=30)


def test_integer_logprobs_are_accepted_and_answered(sim: str) -> None:
    response = complete(sim, logprobs=2)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    logprobs = choice["logprobs"]
    assert set(logprobs) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == 5
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert all(len(top) == 2 for top in logprobs["top_logprobs"])
    assert logprobs["text_offset"][0] == 0
    assert logprobs["text_offset"] == sorted(logprobs["text_offset"])
    # 0 alternatives: the sampled tokens' logprobs only
    zero = complete(sim, logprobs=0).json()["choices"][0]["logprobs"]
    assert zero["top_logprobs"] == [None] * 5 and len(zero["token_logprobs"]) == 5
    assert complete(sim).json()["choices"][0]["logprobs"] is None


def test_streamed_chunks_carry_their_tokens_logprobs(sim: str) -> None:
    body = {"model": "qwen3", "prompt": "The lighthouse", "max_tokens": 5, "logprobs": 1,
            "stream": True}  # fmt: skip
    with httpx.stream("POST", sim + "/v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(line)["choices"][0] for line in lines[:-1]]
    tokens = [t for c in chunks for t in c["logprobs"]["tokens"]]
    assert len(tokens) == 5
    assert "".join(tokens) == "".join(c["text"] for c in chunks)


@pytest.mark.parametrize(("value", "status"), [(-1, 400), (21, 400), ("2", 400), (True, 200)])
def test_logprobs_bounds(sim: str, value: Any, status: int) -> None:
    # pydantic's lax mode, as vLLM's request model: true is 1
    assert complete(sim, logprobs=value).status_code == status


def test_first_tokenizer_loads_from_many_threads_at_once(tokenizers_dir: Path) -> None:
    """The first concurrent embeddings/completions requests count in worker threads while
    chat requests load their model's tokenizer: a fresh process (transformers not yet
    imported) loads both ways from 8 threads at once."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from pathlib import Path\n"
        "from gpusim.completions import _auto_tokenizer\n"
        "from gpusim.models import load_tokenizer\n"
        "folder = Path(sys.argv[1])\n"
        "loads = [_auto_tokenizer.__wrapped__, load_tokenizer] * 4\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    list(pool.map(lambda load: load(folder), loads))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tokenizers_dir / "qwen3")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
