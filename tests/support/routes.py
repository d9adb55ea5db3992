"""A gateway serving every tokenizer family on the completions and embeddings routes, in
front of its own simulated GPU endpoint (which refuses embeddings batches over 2 inputs,
as TEI refuses batches over its --max-client-batch-size)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import openai

from tests.conftest import Gateway, running_gateway
from tests.support.sdk import openai_client
from tests.support.servers import serve_asgi

SIM_MAX_BATCH = 2
DIMENSIONS = 64
# A small context, so over-long inputs are easy to write.
SHORT_LIMIT = 8


def families(tokenizers_dir: Path) -> list[str]:
    return sorted(p.parent.name for p in tokenizers_dir.glob("*/tokenizer.json"))


def _model(model_id: str, folder: str, sim_url: str, **extra: Any) -> dict[str, Any]:
    upstream = {"type": "openai", "base_url": sim_url, "model": folder}
    return {"id": model_id, "tokenizer": folder, "upstream": upstream, **extra}


def models_config(tokenizers_dir: Path, sim_url: str) -> str:
    models = []
    for folder in families(tokenizers_dir):
        models.append(_model(folder, folder, sim_url, max_model_len=4096))
        models.append(
            _model(
                f"embed-{folder}",
                folder,
                sim_url,
                routes=["embeddings"],
                max_batch_size=SIM_MAX_BATCH,
                max_model_len=512,
            )
        )
    models.append(_model("short", "qwen3", sim_url, max_model_len=SHORT_LIMIT))
    models.append(
        _model("embed-short", "qwen3", sim_url, routes=["embeddings"], max_input_tokens=SHORT_LIMIT)
    )
    return json.dumps({"models": models})


@contextmanager
def routes_gateway(tokenizers_dir: Path) -> Iterator[tuple[Gateway, str]]:
    """(gateway, simulator URL), both running until the block ends."""
    from gpusim import SimConfig, create_app

    sim = SimConfig(
        tokenizers_dir=tokenizers_dir, embedding_dimensions=DIMENSIONS, max_batch_size=SIM_MAX_BATCH
    )
    with serve_asgi(create_app(sim)) as sim_url:
        config = models_config(tokenizers_dir, sim_url)
        with running_gateway(tokenizers_dir, sim_url, models_config=config) as gateway:
            yield gateway, sim_url


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai_client(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


@cache
def _auto_tokenizer(folder: Path) -> Any:
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def reference_prompt_tokens(folder: Path, text: str) -> int:
    """transformers' own count, special tokens added: what vLLM reports on these routes."""
    return len(_auto_tokenizer(folder)(text)["input_ids"])


def schema_path(shared_schemas: Path) -> Path:
    return shared_schemas.parent / "openai-completions-embeddings-schemas.json"


@cache
def _chunk_validator(path: Path) -> Any:
    """CreateCompletionResponse for streamed chunks. OpenAI's description has no chunk
    schema for this route ("each chunk is a CreateCompletionResponse"), yet OpenAI and vLLM
    send `finish_reason: null` until a choice ends: that one field may be null here."""
    import copy

    import jsonschema

    defs = copy.deepcopy(json.loads(path.read_text())["$defs"])
    choice = defs["CreateCompletionResponse"]["properties"]["choices"]["items"]
    finish = choice["properties"]["finish_reason"]
    choice["properties"]["finish_reason"] = {"anyOf": [finish, {"type": "null"}]}
    return jsonschema.Draft202012Validator(
        {"$ref": "#/$defs/CreateCompletionResponse", "$defs": defs}
    )


def validate_chunk(path: Path, chunk: Any) -> None:
    _chunk_validator(path).validate(chunk)
