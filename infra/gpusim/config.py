"""Configuration of the simulated endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpusim.engine import SCHEDULING_POLICIES, EngineConfig


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
    # Each model's context length (vLLM's --max-model-len): `max_model_len` for every model,
    # `model_max_len` per model id (it wins); None: unbounded.
    max_model_len: int | None = None
    model_max_len: tuple[tuple[str, int], ...] = ()
    # The engine of each model (gpusim/engine.py), with vLLM's defaults.
    max_num_seqs: int = 256
    scheduling_policy: str = "fcfs"
    num_gpu_blocks: int = 8192
    block_size: int = 16
    enable_prefix_caching: bool = True
    prefix_hash_seed: str | None = None  # vLLM: PYTHONHASHSEED
    prefill_ms_per_token: float = 0.0
    decode_ms_per_seq: float = 0.0
    # usage.prompt_tokens_details.cached_tokens (vLLM's --enable-prompt-tokens-details)
    enable_prompt_tokens_details: bool = False

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.tpot_ms < 0:
            raise ValueError("ttft_ms and tpot_ms must be >= 0")
        if self.completion_tokens < 1:
            raise ValueError("completion_tokens must be >= 1")
        if self.scheduling_policy not in SCHEDULING_POLICIES:
            raise ValueError(f"scheduling_policy must be one of {SCHEDULING_POLICIES}")
        lengths = [self.max_model_len, *(n for _, n in self.model_max_len)]
        if any(n is not None and n < 1 for n in lengths):
            raise ValueError("max_model_len must be at least 1")
        self.engine_config()  # validates the engine's fields

    def context_length(self, model: str) -> int | None:
        """The model's max_model_len, or None when it has none."""
        return dict(self.model_max_len).get(model, self.max_model_len)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            max_num_seqs=self.max_num_seqs,
            scheduling_policy=self.scheduling_policy,
            num_gpu_blocks=self.num_gpu_blocks,
            block_size=self.block_size,
            enable_prefix_caching=self.enable_prefix_caching,
            hash_seed=self.prefix_hash_seed,
            prefill_ms_per_token=self.prefill_ms_per_token,
            decode_ms_per_seq=self.decode_ms_per_seq,
        )


def parse_max_model_len(spec: str) -> tuple[int | None, tuple[tuple[str, int], ...]]:
    """`--max-model-len`: `8192` for every model, `qwen3=40960,tinyllama=2048` per model, or
    both (`4096,qwen3=40960`)."""
    default: int | None = None
    per_model: list[tuple[str, int]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, value = item.rpartition("=")
        try:
            length = int(value)
        except ValueError:
            raise ValueError(f"--max-model-len {item!r}: expected N or model=N") from None
        if sep:
            per_model.append((name.strip(), length))
        else:
            default = length
    return default, tuple(per_model)


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
