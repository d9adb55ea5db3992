"""Command line: ``python -m gpusim --port 8002 --tokenizers-dir DIR``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpusim", description="Simulated vLLM-like OpenAI-compatible GPU endpoint."
    )
    parser.add_argument("--host", default=os.environ.get("SIM_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIM_PORT") or 8002))
    parser.add_argument(
        "--tokenizers-dir",
        type=Path,
        default=os.environ.get("TOKENIZERS_DIR") or None,
        help="folder of <model>/tokenizer.json (env TOKENIZERS_DIR)",
    )
    parser.add_argument("--ttft-ms", type=float, default=_env_float("SIM_TTFT_MS", 0.0))
    parser.add_argument("--tpot-ms", type=float, default=_env_float("SIM_TPOT_MS", 0.0))
    parser.add_argument(
        "--completion-tokens",
        type=int,
        default=int(os.environ.get("SIM_COMPLETION_TOKENS") or 48),
    )
    parser.add_argument("--models", help="comma-separated model ids (default: all folders)")
    parser.add_argument(
        "--multimodal",
        default=os.environ.get("SIM_MULTIMODAL", ""),
        help="comma-separated model ids served as multimodal (accept image/audio parts)",
    )
    parser.add_argument(
        "--embedding-dimensions",
        type=int,
        default=int(os.environ.get("SIM_EMBEDDING_DIMENSIONS") or 64),
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=int(os.environ.get("SIM_MAX_BATCH_SIZE") or 0) or None,
        help="most inputs per /v1/embeddings request (413 above, as TEI)",
    )
    parser.add_argument(
        "--guard-models",
        default=os.environ.get("SIM_GUARD_MODELS", ""),
        help="comma-separated model ids served as guards (Llama Guard's output format)",
    )
    parser.add_argument(
        "--guard-triggers",
        default=os.environ.get("SIM_GUARD_TRIGGERS", ""),
        help="what the guards flag: word=CATEGORY,... (e.g. detonate=S9,poison=S1)",
    )
    parser.add_argument(
        "--preload", action="store_true", help="load every tokenizer before serving"
    )
    engine = parser.add_argument_group("engine (vLLM's flags and defaults)")
    engine.add_argument(
        "--max-model-len",
        default=os.environ.get("SIM_MAX_MODEL_LEN", ""),
        help="context length: N for every model, or model=N,... per model (default: none)",
    )
    engine.add_argument(
        "--max-num-seqs",
        type=int,
        default=int(os.environ.get("SIM_MAX_NUM_SEQS") or 256),
        help="most sequences running at once; the others wait (default 256)",
    )
    engine.add_argument(
        "--scheduling-policy",
        choices=("fcfs", "priority"),
        default=os.environ.get("SIM_SCHEDULING_POLICY") or "fcfs",
        help="the waiting queue's order: arrival, or the request's priority (lower first)",
    )
    engine.add_argument(
        "--num-gpu-blocks-override",
        dest="num_gpu_blocks",
        type=int,
        default=int(os.environ.get("SIM_NUM_GPU_BLOCKS") or 8192),
        help="KV-cache size in blocks, per model (default 8192)",
    )
    engine.add_argument(
        "--block-size",
        type=int,
        default=int(os.environ.get("SIM_BLOCK_SIZE") or 16),
        help="tokens per KV-cache block (default 16)",
    )
    engine.add_argument(
        "--enable-prefix-caching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="automatic prefix caching (default on)",
    )
    engine.add_argument(
        "--enable-prompt-tokens-details",
        action="store_true",
        default=os.environ.get("SIM_ENABLE_PROMPT_TOKENS_DETAILS", "") == "true",
        help="report usage.prompt_tokens_details.cached_tokens",
    )
    engine.add_argument(
        "--prefill-ms-per-token",
        type=float,
        default=_env_float("SIM_PREFILL_MS_PER_TOKEN", 0.0),
        help="simulated prefill time per uncached prompt token (default 0)",
    )
    engine.add_argument(
        "--decode-ms-per-seq",
        type=float,
        default=_env_float("SIM_DECODE_MS_PER_SEQ", 0.0),
        help="what each further running sequence adds to a decode step (default 0)",
    )
    args = parser.parse_args(argv)
    if args.tokenizers_dir is None:
        parser.error("--tokenizers-dir (or env TOKENIZERS_DIR) is required")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from gpusim.app import create_app
    from gpusim.config import SimConfig, parse_max_model_len
    from gpusim.guard import parse_triggers

    args = parse_args(argv)
    # transformers without torch prints an advisory on import; it is noise for a simulator
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else None
    max_model_len, model_max_len = parse_max_model_len(args.max_model_len)
    config = SimConfig(
        tokenizers_dir=Path(args.tokenizers_dir),
        ttft_ms=args.ttft_ms,
        tpot_ms=args.tpot_ms,
        completion_tokens=args.completion_tokens,
        models=models,
        multimodal=tuple(m.strip() for m in args.multimodal.split(",") if m.strip()),
        embedding_dimensions=args.embedding_dimensions,
        max_batch_size=args.max_batch_size,
        guard_models=tuple(m.strip() for m in args.guard_models.split(",") if m.strip()),
        guard_triggers=parse_triggers(args.guard_triggers),
        max_model_len=max_model_len,
        model_max_len=model_max_len,
        max_num_seqs=args.max_num_seqs,
        scheduling_policy=args.scheduling_policy,
        num_gpu_blocks=args.num_gpu_blocks,
        block_size=args.block_size,
        enable_prefix_caching=args.enable_prefix_caching,
        # vLLM seeds its first block's parent hash from PYTHONHASHSEED
        prefix_hash_seed=os.environ.get("PYTHONHASHSEED"),
        prefill_ms_per_token=args.prefill_ms_per_token,
        decode_ms_per_seq=args.decode_ms_per_seq,
        enable_prompt_tokens_details=args.enable_prompt_tokens_details,
    )
    app = create_app(config)
    if args.preload:
        app.state.sim.registry.preload()
    names = ", ".join(app.state.sim.registry.names)
    sys.stdout.write(f"gpusim listening on http://{args.host}:{args.port} (models: {names})\n")
    sys.stdout.flush()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="auto",
        http="auto",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
