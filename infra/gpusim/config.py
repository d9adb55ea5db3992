"""Configuration of the simulated endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SimConfig:
    """How the simulated endpoint behaves; per-request ``sim`` options override the delays."""

    tokenizers_dir: Path
    ttft_ms: float = 0.0
    tpot_ms: float = 0.0
    completion_tokens: int = 48
    models: tuple[str, ...] | None = None
    # Models served as multimodal (they accept image_url / input_audio parts).
    multimodal: tuple[str, ...] = ()
    # /v1/embeddings: the vectors' dimension, and the most inputs one request may carry
    # (None: any number), as TEI's --max-client-batch-size.
    embedding_dimensions: int = 64
    max_batch_size: int | None = None
    # Guard models (gpusim/guard.py): they answer in Llama Guard's format, flagging the
    # trigger words (word, category) found in the conversation's last message.
    guard_models: tuple[str, ...] = ()
    guard_triggers: tuple[tuple[str, str], ...] = ()
    # /v1/responses keeps responses in this process's memory (vLLM with
    # VLLM_ENABLE_RESPONSES_API_STORE=1); off, store is ignored, as vLLM's default.
    responses_store: bool = False

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.tpot_ms < 0:
            raise ValueError("ttft_ms and tpot_ms must be >= 0")
        if self.completion_tokens < 1:
            raise ValueError("completion_tokens must be >= 1")


def discover_models(config: SimConfig) -> tuple[str, ...]:
    """Model ids served: the folder names holding a tokenizer.json, sorted."""
    root = Path(config.tokenizers_dir)
    if config.models is None:
        if not root.is_dir():
            raise ValueError(f"tokenizers_dir {root} is not a directory")
        return tuple(sorted(p.parent.name for p in root.glob("*/tokenizer.json")))
    missing = [m for m in config.models if not (root / m / "tokenizer.json").is_file()]
    if missing:
        raise ValueError(f"no tokenizer.json under {root} for: {', '.join(missing)}")
    return tuple(config.models)
