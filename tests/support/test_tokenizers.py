"""Without ../shared, the token tests run on the tokenizers `make run` downloaded (issue 26).

A run of pytest in a child process, with GATEWAY_SHARED_DIR naming an empty folder and
make run's cache (TOKENIZER_CACHE_DIR) holding one model, as `make run` leaves it: that
family's token tests run and pass, the others skip with a reason that says what to
download or provide, and the run says once, first, how to provide the rest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.tokenizers import FAMILIES, locate

ROOT = Path(__file__).resolve().parents[2]


def _downloaded(cache: Path, source: Path, repo_folder: str) -> None:
    """A tokenizer as make run's download leaves it: cache/<org>--<name>/ with its files."""
    dest = cache / repo_folder
    dest.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(source / name, dest / name)


def test_a_downloaded_family_is_found_where_shared_lacks_it(
    tokenizers_dir: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared" / "tokenizers"
    (shared / "gpt2").mkdir(parents=True)
    shutil.copyfile(tokenizers_dir / "gpt2" / "tokenizer.json", shared / "gpt2" / "tokenizer.json")
    shutil.copyfile(
        tokenizers_dir / "gpt2" / "tokenizer_config.json",
        shared / "gpt2" / "tokenizer_config.json",
    )
    cache = tmp_path / "cache"
    _downloaded(
        cache, tokenizers_dir / "tinyllama-1.1b-chat-v1.0", "TinyLlama--TinyLlama-1.1B-Chat-v1.0"
    )
    located = locate(shared=shared, env={"TOKENIZER_CACHE_DIR": str(cache)})
    assert located.found == {
        "tinyllama-1.1b-chat-v1.0": cache / "TinyLlama--TinyLlama-1.1B-Chat-v1.0",
        "gpt2": shared / "gpt2",
    }
    assert "run `make run` once to download Qwen/Qwen3-0.6B" in located.missing("qwen3")
    llama = located.missing("llama-3-8b-instruct")
    assert "with HF_TOKEN set (gated on the Hub)" in llama
    folder = located.folder(tmp_path / "links")
    assert sorted(p.name for p in folder.iterdir()) == ["gpt2", "tinyllama-1.1b-chat-v1.0"]
    assert (folder / "tinyllama-1.1b-chat-v1.0" / "tokenizer.json").is_file()
    message = located.how_to_provide()
    assert message is not None and "GATEWAY_SHARED_DIR" in message
    assert all(f in message for f in FAMILIES if f not in located.found)


def test_token_tests_run_on_make_runs_download_without_shared(
    tokenizers_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _downloaded(cache, tokenizers_dir / "qwen3", "Qwen--Qwen3-0.6B")
    (tmp_path / "no-shared").mkdir()
    env = {
        **os.environ,
        "GATEWAY_SHARED_DIR": str(tmp_path / "no-shared"),
        "TOKENIZER_CACHE_DIR": str(cache),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            "-p", "no:schemathesis", "-p", "no:hypothesispytest",
            "tests/gateway/tokens/test_chunking.py", "-k", "adversarial or cuts_are_made",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert out.splitlines()[0].startswith(">> tokenizer files missing for llama-3-8b-instruct")
    assert out.count(">> tokenizer files missing") == 1
    assert "2 passed, 6 skipped" in out.splitlines()[-1]  # qwen3's adversarial and cuts
    assert "run `make run` once with HF_TOKEN set (gated on the Hub)" in out
    assert "`make run` does not download gpt2" in out
