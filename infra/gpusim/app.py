"""The Starlette application."""

from __future__ import annotations

import time

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gpusim.chat import ChatEndpoint
from gpusim.completions import CompletionsEndpoint
from gpusim.config import SimConfig, discover_models
from gpusim.embeddings import EmbeddingsEndpoint
from gpusim.messages import MessagesEndpoint
from gpusim.metrics import CONTENT_TYPE
from gpusim.models import ModelRegistry
from gpusim.replica import Replica
from gpusim.responses import ResponsesEndpoint
from gpusim.stats import Stats


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class SimState:
    """Everything one app instance owns: config, models and counters."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.registry = ModelRegistry(config.tokenizers_dir, discover_models(config))
        self.stats = Stats()
        self.replica = Replica(self.registry.names, config.engine_config())
        created = int(time.time())
        self._models_body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {
                        "id": name,
                        "object": "model",
                        "created": created,
                        "owned_by": "gpusim",
                        "root": name,
                        "parent": None,
                    }
                    for name in self.registry.names
                ],
            }
        )

    async def models(self, _request: Request) -> Response:
        return Response(self._models_body, media_type="application/json")

    async def health(self, _request: Request) -> Response:
        return _json({"status": "ok"})

    async def metrics(self, _request: Request) -> Response:
        return Response(self.replica.metrics.render(), media_type=CONTENT_TYPE)

    async def get_stats(self, _request: Request) -> Response:
        return _json(self.stats.snapshot())

    async def reset_stats(self, _request: Request) -> Response:
        self.stats.reset()
        return _json(self.stats.snapshot())


def create_app(config: SimConfig) -> Starlette:
    """An ASGI app that behaves like vLLM's OpenAI server for the configured models."""
    state = SimState(config)
    chat = ChatEndpoint(config, state.registry, state.stats, state.replica)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route(
                "/v1/completions",
                CompletionsEndpoint(config, state.registry, state.stats, state.replica),
                methods=["POST"],
            ),
            Route(
                "/v1/embeddings",
                EmbeddingsEndpoint(config, state.registry, state.stats).handle,
                methods=["POST"],
            ),
            *ResponsesEndpoint(chat, config, state.registry.names).routes(),
            *MessagesEndpoint(chat, config, state.registry).routes(),
            Route("/v1/models", state.models, methods=["GET"]),
            Route("/health", state.health, methods=["GET"]),
            Route("/metrics", state.metrics, methods=["GET"]),
            Route("/sim/stats", state.get_stats, methods=["GET"]),
            Route("/sim/reset", state.reset_stats, methods=["POST"]),
        ]
    )
    app.state.sim = state
    return app
