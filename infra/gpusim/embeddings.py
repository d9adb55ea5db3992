"""POST /v1/embeddings as vLLM's pooling runner serves it (serving_embedding.py): each
input tokenized with the tokenizer's special tokens (token-id inputs as they are), usage
{prompt_tokens, total_tokens, completion_tokens: 0}; vectors deterministic (a hash of
the token ids), unit length, of the configured dimension; `encoding_format` base64 is
little-endian float32, as vLLM (and OpenAI) encode it. A batch larger than the
configured `max_batch_size` is refused with 413, as TEI refuses one."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import os
import random
import struct
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gpusim.completions import prompt_ids
from gpusim.config import SimConfig
from gpusim.errors import RequestError
from gpusim.models import ModelRegistry
from gpusim.stats import Stats


def vector(ids: list[int], dimensions: int) -> list[float]:
    seed = hashlib.sha256(orjson.dumps(ids)).digest()
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def inputs_of(body: Any) -> list[str] | list[list[int]]:
    value = body.get("input") if isinstance(body, dict) else None
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [value]
        if all(isinstance(v, str) and v for v in value):
            return value
        if all(isinstance(v, list) and v and all(isinstance(t, int) for t in v) for v in value):
            return value
    raise RequestError(400, "input must be a string, array of strings or token ids", param="input")


class EmbeddingsEndpoint:
    def __init__(self, config: SimConfig, registry: ModelRegistry, stats: Stats) -> None:
        self.config = config
        self.registry = registry
        self.stats = stats

    async def handle(self, request: Request) -> Response:
        self.stats.requests += 1
        try:
            body = await self._answer(orjson.loads(await request.body()))
        except orjson.JSONDecodeError:
            body, status = RequestError(400, "Invalid JSON body").body(), 400
        except RequestError as exc:
            body, status = exc.body(), exc.status
        else:
            status = 200
            self.stats.completed += 1
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    async def _answer(self, body: Any) -> dict[str, Any]:
        inputs = inputs_of(body)
        most = self.config.max_batch_size
        if most is not None and len(inputs) > most:
            raise RequestError(413, f"batch size {len(inputs)} > maximum allowed batch size {most}")
        name = str(body.get("model"))
        model = self.registry.get(name)
        if model is None:
            raise RequestError(404, f"The model `{name}` does not exist.", param="model")
        full = self.config.embedding_dimensions
        dimensions = body.get("dimensions") or full
        if not isinstance(dimensions, int) or not 0 < dimensions <= full:
            message = "Model does not support matryoshka representation"
            raise RequestError(400, message, param="dimensions")
        token_ids = await asyncio.to_thread(lambda: [prompt_ids(model, item) for item in inputs])
        prompt_tokens = sum(len(ids) for ids in token_ids)
        base64_out = body.get("encoding_format") == "base64"
        data = []
        for index, ids in enumerate(token_ids):
            values = vector(ids, self.config.embedding_dimensions)[:dimensions]
            encoded: Any = values
            if base64_out:
                encoded = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            data.append({"index": index, "object": "embedding", "embedding": encoded})
        return {
            "id": "embd-" + os.urandom(16).hex(),
            "object": "list",
            "created": int(time.time()),
            "model": model.name,
            "data": data,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens,
                "completion_tokens": 0,
                "prompt_tokens_details": None,
            },
        }
