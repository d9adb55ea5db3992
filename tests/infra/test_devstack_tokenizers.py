"""`make run` with no tokenizer folder: public tokenizers come from the Hub (a local
HF_ENDPOINT serving ../shared/tokenizers in the Hub's URL layout) into the cache once, the
stack serves them and counts exactly as from TOKENIZERS_DIR."""

from __future__ import annotations

from pathlib import Path

import httpx
from devstack.tokenizers import HUB_MODELS, from_folder, select, sim_args
from gateway.tokens.hub import human_size

from tests.conftest import running_gateway
from tests.support import reference
from tests.support.hub import local_hub
from tests.support.servers import serve_asgi

# Hub repo -> the shared folder with the same files (SmolLM2 is not there: a 404)
SHARED = {
    "Qwen/Qwen3-0.6B": "qwen3",
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": "tinyllama-1.1b-chat-v1.0",
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama-3-8b-instruct",
    "mistralai/Mistral-7B-Instruct-v0.1": "mistral-7b-instruct-v0.1",
}
MESSAGES = [{"role": "user", "content": "Hello! How many tokens?"}]


def test_catalog_has_three_ungated_families() -> None:
    assert len([m for m in HUB_MODELS if not m.gated]) >= 3
    assert set(SHARED) <= {m.repo for m in HUB_MODELS}


def test_make_run_fetches_public_tokenizers_once_and_counts_as_the_folder(
    tokenizers_dir: Path, tmp_path: Path, dynamodb: str
) -> None:
    from gpusim import SimConfig, create_app

    repos = {repo: tokenizers_dir / folder for repo, folder in SHARED.items()}
    with local_hub(repos) as hub:
        env = {"HF_ENDPOINT": hub.url, "TOKENIZER_CACHE_DIR": str(tmp_path / "cache")}
        lines: list[str] = []
        selection = select(env, default_dir=tmp_path / "no-folder", say=lines.append)

        assert list(selection.folders) == ["qwen3", "tinyllama"]
        log = "\n".join(lines)
        qwen_size = human_size((tokenizers_dir / "qwen3" / "tokenizer.json").stat().st_size)
        [progress] = [line for line in lines if "Qwen3-0.6B@main tokenizer.json" in line]
        assert qwen_size in progress  # one progress line per file, with its size
        assert "skipping llama3 (meta-llama/Meta-Llama-3-8B-Instruct): gated" in log
        [failure] = [line for line in lines if line.startswith("skipping smollm2")]
        assert "HTTP 404" in failure and "set HF_ENDPOINT" in failure
        assert f"model qwen3: tokenizer from Hub {hub.url}/Qwen/Qwen3-0.6B@main" in log
        assert all(auth is None for _, auth in hub.requests)
        downloads = len(hub.requests)

        sim = SimConfig(
            tokenizers_dir=selection.tokenizers_dir, models=tuple(sim_args(selection)[3].split(","))
        )
        with (
            serve_asgi(create_app(sim)) as sim_url,
            running_gateway(
                None,  # type: ignore[arg-type]  # no TOKENIZERS_DIR: only the cache
                sim_url,
                models_config=selection.models_config(sim_url),
                **{k.lower(): v for k, v in selection.gateway_env().items()},
                hf_endpoint=hub.url,
            ) as gateway,
        ):
            key = gateway.new_key()
            for model_id, folder in (
                ("qwen3", "qwen3"),
                ("tinyllama", SHARED["TinyLlama/TinyLlama-1.1B-Chat-v1.0"]),
            ):
                response = httpx.post(
                    gateway.base_url + "/chat/completions",
                    json={"model": model_id, "messages": MESSAGES, "max_tokens": 5},
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                )
                assert response.status_code == 200, response.text
                expected = reference.prompt_tokens(tokenizers_dir / folder, MESSAGES)
                assert response.json()["usage"]["prompt_tokens"] == expected
            # the embedding model make run adds is served by the sim under its folder name
            response = httpx.post(
                gateway.base_url + "/embeddings",
                json={"model": "qwen3-embedding", "input": "Hello!"},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            assert response.json()["data"][0]["embedding"]
            records = [r for r in gateway.records(key) if r.model != "qwen3-embedding"]
            assert len(records) == 2
            assert all(r.gateway_prompt_tokens == r.upstream_prompt_tokens for r in records)
        assert hub.requests[downloads:] == [], "the gateway used the cache, not the Hub"

        # A second start: everything from the cache, no request to the Hub
        again: list[str] = []
        second = select(env, default_dir=tmp_path / "no-folder", say=again.append)
        assert second.folders == selection.folders
        # only the tokenizer that failed is tried again
        assert {p.split("/")[2] for p, _ in hub.requests[downloads:]} == {"SmolLM2-360M-Instruct"}
        downloads = len(hub.requests)
        assert any(line.startswith("model qwen3: tokenizer from cache ") for line in again)

        # With HF_TOKEN, the gated families come too, and the token goes to the Hub
        gated = select({**env, "HF_TOKEN": "hf_test"}, default_dir=tmp_path / "x", say=again.append)
        assert {"llama3", "mistral"} <= set(gated.folders)
        assert {auth for _, auth in hub.requests[downloads:]} == {"Bearer hf_test"}


def test_a_tokenizer_folder_wins_and_is_reported(tokenizers_dir: Path) -> None:
    lines: list[str] = []
    selection = select(
        {"TOKENIZERS_DIR": str(tokenizers_dir)}, default_dir=Path("/x"), say=lines.append
    )
    assert selection == from_folder(tokenizers_dir)
    assert "gpt2" not in selection.folders  # no chat template
    assert f"model qwen3: tokenizer from folder {tokenizers_dir / 'qwen3'}" in lines
    assert selection.gateway_env() == {"TOKENIZERS_DIR": str(tokenizers_dir)}


def test_nothing_available_is_one_clear_line(tmp_path: Path) -> None:
    import pytest

    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "TOKENIZER_CACHE_DIR": str(tmp_path)}
    lines: list[str] = []
    with pytest.raises(SystemExit) as exc:
        select(env, default_dir=tmp_path / "none", say=lines.append)
    assert "set TOKENIZERS_DIR" in str(exc.value) and "\n" not in str(exc.value)
    assert all("\n" not in line for line in lines)
    assert any(line.startswith("skipping qwen3: download failed") for line in lines)


def test_make_run_declares_each_context_length_to_the_gateway_and_the_replicas(
    tokenizers_dir: Path,
) -> None:
    import json

    from gpusim.__main__ import parse_args
    from gpusim.config import parse_max_model_len

    selection = from_folder(tokenizers_dir)
    config = json.loads(selection.models_config("http://127.0.0.1:9"))
    declared = {m["upstream"]["model"]: m["max_model_len"] for m in config["models"]
                if "routes" not in m}  # fmt: skip
    assert declared["qwen3"] == 40960 and declared["tinyllama-1.1b-chat-v1.0"] == 2048
    args = parse_args(sim_args(selection))
    default, per_model = parse_max_model_len(args.max_model_len)
    assert default is None and dict(per_model) == declared
    # cached tokens reported, and a KV cache a few dozen conversations of ~2k tokens fill
    assert args.enable_prompt_tokens_details is True
    assert 24 <= args.num_gpu_blocks * args.block_size // 2048 <= 64
    assert args.num_gpu_blocks * args.block_size >= max(declared.values())
