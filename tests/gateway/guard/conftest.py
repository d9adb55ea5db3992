"""Fixtures for the guardrail tests: a tokenizers folder with a Llama Guard 3 model
(devstack.guard), the guarded models' simulated endpoint, guard endpoints (answering,
slow) and a gateway whose models config attaches them by policy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devstack.guard import GUARD_FOLDER, LLAMA3_FOLDER, build_guard_tokenizer

from tests.conftest import Gateway, running_gateway
from tests.support.servers import free_port, serve_asgi

# What the simulated guard flags (gpusim.guard), in the triggers' order. "coffee" is in
# the simulated completion (its 23rd word): output screening flags it.
TRIGGERS = (("detonate", "S9"), ("poison", "S1"), ("coffee", "S6"))
# The slow guard's time to answer, far past the deadlines below.
SLOW_GUARD_MS = 5000


@pytest.fixture(scope="session")
def guard_tokenizers(tokenizers_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qwen3's folder and a Llama Guard 3 folder, side by side."""
    root = tmp_path_factory.mktemp("guard-tokenizers")
    (root / "qwen3").symlink_to(tokenizers_dir / "qwen3")
    build_guard_tokenizer(tokenizers_dir / LLAMA3_FOLDER, root / GUARD_FOLDER)
    return root


def _sim(tokenizers: Path, **config: Any) -> Iterator[str]:
    from gpusim import SimConfig, create_app

    app = create_app(SimConfig(tokenizers_dir=tokenizers, **config))
    app.state.sim.registry.preload()  # transformers' first load takes seconds here
    with serve_asgi(app) as url:
        yield url


@pytest.fixture(scope="session")
def model_sim(guard_tokenizers: Path) -> Iterator[str]:
    yield from _sim(guard_tokenizers, models=("qwen3",))


@pytest.fixture(scope="session")
def guard_sim(guard_tokenizers: Path) -> Iterator[str]:
    guards = (GUARD_FOLDER,)
    yield from _sim(guard_tokenizers, models=guards, guard_models=guards, guard_triggers=TRIGGERS)


@pytest.fixture(scope="session")
def slow_guard_sim(guard_tokenizers: Path) -> Iterator[str]:
    guards = (GUARD_FOLDER,)
    yield from _sim(
        guard_tokenizers,
        models=guards,
        guard_models=guards,
        guard_triggers=TRIGGERS,
        ttft_ms=SLOW_GUARD_MS,
    )


def _model(model_id: str, url: str, folder: str, **extra: Any) -> dict[str, Any]:
    upstream = {"type": "openai", "base_url": url, "model": folder}
    return {"id": model_id, "tokenizer": folder, "upstream": upstream, **extra}


def guard_config(model_sim: str, guard_sim: str, slow_guard_sim: str) -> str:
    guard = {"guard": {"format": "llama_guard"}}
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    guarded = ("qwen3", "qwen3-input", "qwen3-open", "qwen3-closed", "qwen3-slow-open")
    names = (*guarded, "qwen3-output-closed")
    models = [_model(name, model_sim, "qwen3") for name in names]
    # A model served by two replicas, screened on input and output by a guard of its own
    # two replicas: the record's endpoint and attempts are the model's, the guard's apart.
    replicas = [
        {"name": f"replica-{n}", "type": "openai", "base_url": model_sim, "model": "qwen3"}
        for n in ("a", "b")
    ]
    guards = [
        {"name": f"guard-{n}", "type": "openai", "base_url": guard_sim, "model": GUARD_FOLDER}
        for n in ("a", "b")
    ]
    models += [
        {"id": "qwen3-replicated", "tokenizer": "qwen3", "endpoints": replicas},
        {"id": "llama-guard-replicated", "tokenizer": GUARD_FOLDER, "endpoints": guards, **guard},
        _model("llama-guard", guard_sim, GUARD_FOLDER, **guard),
        _model("guard-down", down, GUARD_FOLDER, **guard),
        _model("guard-slow", slow_guard_sim, GUARD_FOLDER, **guard),
    ]
    policies = [
        {"id": "strict", "guard": "llama-guard", "models": ["qwen3"], "output": True,
         "window_tokens": 8, "deadline_seconds": 10},
        {"id": "input-only", "guard": "llama-guard", "models": ["qwen3-input"],
         "block": ["S9"], "deadline_seconds": 10},
        {"id": "down-open", "guard": "guard-down", "models": ["qwen3-open"],
         "on_error": "open", "deadline_seconds": 1},
        {"id": "slow-closed", "guard": "guard-slow", "models": ["qwen3-closed"],
         "on_error": "closed", "deadline_seconds": 0.5},
        {"id": "slow-open", "guard": "guard-slow", "models": ["qwen3-slow-open"],
         "on_error": "open", "deadline_seconds": 0.5},
        {"id": "output-closed", "guard": "guard-slow", "models": ["qwen3-output-closed"],
         "input": False, "output": True, "on_error": "closed", "deadline_seconds": 0.5},
        {"id": "replicated", "guard": "llama-guard-replicated", "models": ["qwen3-replicated"],
         "output": True, "window_tokens": 8, "deadline_seconds": 10},
    ]  # fmt: skip
    return json.dumps({"models": models, "guard_policies": policies})


@pytest.fixture(scope="session")
def guarded(
    dynamodb: str, guard_tokenizers: Path, model_sim: str, guard_sim: str, slow_guard_sim: str
) -> Iterator[Gateway]:
    config = guard_config(model_sim, guard_sim, slow_guard_sim)
    with running_gateway(guard_tokenizers, model_sim, models_config=config) as gateway:
        yield gateway


@pytest.fixture(scope="session")
def tmp_guard_counts(guard_tokenizers: Path) -> Any:
    """The guard prompt tokens of an input screening plus an output screening, as the
    gateway counts them over the guard's template (gateway.guard.prompt)."""
    from gateway.guard.prompt import conversation, prompt_tokens
    from gateway.tokens import ChatTokenizer

    tokenizer = ChatTokenizer(guard_tokenizers / GUARD_FOLDER)

    def count(messages: list[dict[str, str]], completion: str) -> int:
        return prompt_tokens(tokenizer, conversation(messages)) + prompt_tokens(
            tokenizer, conversation(messages, completion)
        )

    return count
