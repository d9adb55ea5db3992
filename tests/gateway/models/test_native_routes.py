"""`native_routes` in the models config: which APIs a model's upstreams serve themselves,
and the combinations refused at load with a message that names the model and the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gateway.errors import ConfigurationError
from gateway.models.registry import ModelRegistry

UPSTREAM = {"type": "openai", "base_url": "http://gpu:8000"}


def registry(*models: dict[str, Any]) -> ModelRegistry:
    return ModelRegistry.from_json(json.dumps({"models": list(models)}))


def model(model_id: str = "m", **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "tokenizer": "t", "upstream": UPSTREAM, **extra}


def test_by_default_every_route_is_translated() -> None:
    config = registry(model()).get("m")
    assert config is not None
    assert config.native_routes == ()
    assert config.serves("responses") and config.serves("messages")


def test_a_native_route_is_served_natively_and_the_other_translated() -> None:
    config = registry(model(native_routes=["responses"])).get("m")
    assert config is not None
    assert config.native_routes == ("responses",)
    assert config.serves("responses") and config.serves("messages")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"native_routes": ["chat"]}, "native_routes"),
        ({"native_routes": ["responses"], "prefix_cache_isolation": "owner"}, "cache_salt"),
        ({"native_routes": ["messages"], "priority_scheduling": True}, "priority"),
        ({"native_routes": ["messages"], "routes": ["embeddings"]}, "`chat`"),
        (
            {
                "native_routes": ["responses"],
                "upstream": None,
                "endpoints": [UPSTREAM, {"type": "sagemaker", "endpoint_name": "e"}],
            },
            "`openai`",
        ),
    ],
)
def test_combinations_the_native_apis_cannot_carry_are_refused(
    extra: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        registry({k: v for k, v in model(**extra).items() if v is not None})
    assert named in str(refused.value)


def test_a_fallback_must_serve_the_route_natively_too() -> None:
    with pytest.raises(ConfigurationError) as refused:
        registry(model("a", native_routes=["responses"], fallbacks=["b"]), model("b"))
    assert "fallbacks ['b']" in str(refused.value) and "native_routes" in str(refused.value)
    both = registry(
        model("a", native_routes=["responses"], fallbacks=["b"]),
        model("b", native_routes=["responses", "messages"]),
    )
    assert len(both) == 2
