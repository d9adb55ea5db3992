"""Which models `make run` serves, and where their tokenizer files come from.

A tokenizer folder (TOKENIZERS_DIR, else ../shared/tokenizers beside the checkout) is used
when there is one. Otherwise the tokenizers of a few public models are fetched once from
the Hugging Face Hub ($HF_ENDPOINT, default huggingface.co) into the tokenizer cache
($TOKENIZER_CACHE_DIR, default ~/.cache/gpu-gateway/tokenizers). Gated families are
included only when HF_TOKEN is set. The simulated GPU endpoint and the gateway both read
the same cached folders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.tokens.hub import (
    REQUIRED_FILE,
    HubDownloadError,
    download_tokenizer,
    folder_name,
    human_size,
    split_repo,
)

DEFAULT_HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class HubModel:
    id: str
    repo: str  # org/name[@revision]
    license: str
    gated: bool = False


# What `make run` serves without a tokenizer folder (README "Quick start" lists sizes).
HUB_MODELS = (
    HubModel("qwen3", "Qwen/Qwen3-0.6B", "Apache-2.0"),
    HubModel("tinyllama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "Apache-2.0"),
    HubModel("smollm2", "HuggingFaceTB/SmolLM2-360M-Instruct", "Apache-2.0"),
    HubModel("llama3", "meta-llama/Meta-Llama-3-8B-Instruct", "Llama 3 Community", gated=True),
    HubModel("mistral", "mistralai/Mistral-7B-Instruct-v0.1", "Apache-2.0", gated=True),
)


# Each model's context length, declared to the gateway (models config `max_model_len`) and to
# the simulated replicas (--max-model-len): vLLM's default, the model's config.json
# max_position_embeddings. Keys: `make run`'s model ids and the shared tokenizer folders.
CONTEXT_LENGTHS = {
    "qwen3": 40960,  # Qwen/Qwen3-0.6B
    "tinyllama": 2048,  # TinyLlama/TinyLlama-1.1B-Chat-v1.0
    "tinyllama-1.1b-chat-v1.0": 2048,
    "smollm2": 8192,  # HuggingFaceTB/SmolLM2-360M-Instruct
    "llama3": 8192,  # meta-llama/Meta-Llama-3-8B-Instruct
    "llama-3-8b-instruct": 8192,
    "mistral": 32768,  # mistralai/Mistral-7B-Instruct-v0.1
    "mistral-7b-instruct-v0.1": 32768,
}
# Another folder: its tokenizer_config.json's model_max_length when it is a real length
# (transformers writes 1e30 for "none"), else this.
DEFAULT_CONTEXT_LENGTH = 8192
_MOST_PLAUSIBLE_LENGTH = 1 << 21
# Each replica's KV cache per model: 4,096 blocks of 16 tokens (65,536 tokens), a few dozen
# conversations of a couple of thousand tokens, and at least one max_model_len sequence.
SIM_KV_BLOCKS = 4096


def context_length(model_id: str, folder: Path) -> int:
    known = CONTEXT_LENGTHS.get(model_id) or CONTEXT_LENGTHS.get(folder.name)
    if known:
        return known
    config = folder / "tokenizer_config.json"
    if config.is_file():
        declared = json.loads(config.read_text()).get("model_max_length")
        if isinstance(declared, int) and 0 < declared <= _MOST_PLAUSIBLE_LENGTH:
            return declared
    return DEFAULT_CONTEXT_LENGTH


@dataclass
class Selection:
    """The served models: id -> tokenizer folder name under `tokenizers_dir`."""

    tokenizers_dir: Path
    from_hub: bool
    folders: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def context_lengths(self) -> dict[str, int]:
        """Model id -> max_model_len."""
        return {
            model_id: context_length(model_id, self.tokenizers_dir / folder)
            for model_id, folder in self.folders.items()
        }

    def models_config(self, sim_url: str) -> str:
        lengths = self.context_lengths()
        models: list[dict[str, Any]] = [
            {
                "id": model_id,
                "tokenizer": folder,
                "upstream": {"type": "openai", "base_url": sim_url, "model": folder},
                "max_model_len": lengths[model_id],
            }
            for model_id, folder in self.folders.items()
        ]
        if "qwen3" in self.folders:
            # qwen3 again, forwarded natively on the Responses and Messages APIs: the sim
            # serves /v1/responses and /v1/messages as vLLM does (README, docs/APIS.md).
            models.append(
                {
                    "id": "qwen3-native",
                    "tokenizer": self.folders["qwen3"],
                    "upstream": {
                        "type": "openai",
                        "base_url": sim_url,
                        "model": self.folders["qwen3"],
                    },
                    "max_model_len": lengths["qwen3"],
                    "native_routes": ["responses", "messages"],
                }
            )
            # An embedding model (as vLLM --runner pooling or TEI would serve it) on the
            # sim's /v1/embeddings, counted with qwen3's tokenizer. The sim knows the model by
            # its folder name, as it knows the chat models.
            models.append(
                {
                    "id": "qwen3-embedding",
                    "tokenizer": self.folders["qwen3"],
                    "upstream": {
                        "type": "openai",
                        "base_url": sim_url,
                        "model": self.folders["qwen3"],
                    },
                    "routes": ["embeddings"],
                    "max_input_tokens": 8192,
                    "max_batch_size": 32,
                }
            )
        return json.dumps({"models": models})

    def gateway_env(self) -> dict[str, str]:
        """Where the gateway finds the same files (the cache needs no TOKENIZERS_DIR)."""
        key = "TOKENIZER_CACHE_DIR" if self.from_hub else "TOKENIZERS_DIR"
        return {key: str(self.tokenizers_dir)}


def default_cache(env: Mapping[str, str]) -> Path:
    if env.get("TOKENIZER_CACHE_DIR"):
        return Path(env["TOKENIZER_CACHE_DIR"]).expanduser()
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gpu-gateway" / "tokenizers"


def from_folder(tokenizers_dir: Path) -> Selection:
    """Every folder with tokenizer.json and a chat template, served under its own name."""
    selection = Selection(tokenizers_dir=tokenizers_dir, from_hub=False)
    for folder in sorted(p for p in tokenizers_dir.iterdir() if (p / REQUIRED_FILE).is_file()):
        config = folder / "tokenizer_config.json"
        has_template = (folder / "chat_template.jinja").is_file() or (
            config.is_file() and "chat_template" in json.loads(config.read_text())
        )
        if has_template:  # a model without a chat template cannot serve chat completions
            selection.folders[folder.name] = folder.name
            selection.sources[folder.name] = f"folder {folder}"
    return selection


def from_hub(
    env: Mapping[str, str],
    *,
    say: Callable[[str], None],
    catalog: tuple[HubModel, ...] = HUB_MODELS,
) -> Selection:
    """The catalog's tokenizers from the cache, downloading the missing ones once."""
    cache = default_cache(env)
    endpoint = env.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT
    token = env.get("HF_TOKEN") or None
    selection = Selection(tokenizers_dir=cache, from_hub=True)
    for model in catalog:
        repo, revision = split_repo(model.repo)
        if model.gated and not token:
            say(f"skipping {model.id} ({repo}): gated on the Hub, set HF_TOKEN to include it")
            continue
        name = folder_name(model.repo)
        dest = cache / name
        if (dest / REQUIRED_FILE).is_file():
            source = f"cache {dest} (Hub {repo}@{revision}, {model.license})"
        else:
            say(f"downloading the {model.id} tokenizer from {endpoint}/{repo}@{revision}")
            try:
                size = download_tokenizer(
                    model.repo, dest=dest, endpoint=endpoint, token=token, progress=say
                )
            except HubDownloadError as exc:
                say(
                    f"skipping {model.id}: download failed ({exc}); set HF_ENDPOINT to a "
                    "reachable mirror, or TOKENIZERS_DIR to local tokenizer folders"
                )
                continue
            source = f"Hub {endpoint}/{repo}@{revision}, {human_size(size)} ({model.license})"
        selection.folders[model.id] = name
        selection.sources[model.id] = source
    return selection


def select(env: Mapping[str, str], *, default_dir: Path, say: Callable[[str], None]) -> Selection:
    """A tokenizer folder if there is one, else the Hub; never an empty selection."""
    configured = env.get("TOKENIZERS_DIR")
    folder = Path(configured).expanduser().resolve() if configured else default_dir.resolve()
    if configured and not folder.is_dir():
        raise SystemExit(f"TOKENIZERS_DIR={configured} is not a directory")
    selection = from_folder(folder) if folder.is_dir() else from_hub(env, say=say)
    if not selection.folders:
        where = selection.tokenizers_dir
        raise SystemExit(
            f"no tokenizer with a chat template in {where}: set TOKENIZERS_DIR to local "
            "tokenizer folders, or HF_ENDPOINT to a reachable Hugging Face Hub (mirror)"
        )
    for model_id, source in selection.sources.items():
        say(f"model {model_id}: tokenizer from {source}")
    return selection


def sim_args(selection: Selection) -> list[str]:
    """gpusim's arguments: the same folders, only the selected ones, each with the
    max_model_len the gateway is told; KV caches sized for a few dozen conversations;
    cached tokens reported in usage (vLLM's --enable-prompt-tokens-details)."""
    folders = ",".join(dict.fromkeys(selection.folders.values()))
    lengths = selection.context_lengths()
    per_folder = {selection.folders[m]: n for m, n in lengths.items()}
    return [
        "--tokenizers-dir", str(selection.tokenizers_dir),
        "--models", folders,
        "--max-model-len", ",".join(f"{folder}={n}" for folder, n in per_folder.items()),
        "--num-gpu-blocks-override", str(SIM_KV_BLOCKS),
        "--enable-prompt-tokens-details",
    ]  # fmt: skip
