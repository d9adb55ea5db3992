"""A model's endpoints in the models config: one `upstream` (as before) or several
`endpoints` with weights, names, concurrency and headers; and `fallbacks`."""

from __future__ import annotations

import json

import pytest
from gateway.errors import ConfigurationError
from gateway.models.registry import ModelRegistry, OpenAIEndpoint, SageMakerEndpoint


def _registry(*models: dict[str, object]) -> ModelRegistry:
    return ModelRegistry.from_json(json.dumps({"models": list(models)}))


def test_a_single_upstream_is_one_endpoint_named_by_its_url() -> None:
    registry = _registry(
        {"id": "m", "tokenizer": "t",
         "upstream": {"type": "openai", "base_url": "http://gpu:8000", "model": "M"}}
    )  # fmt: skip
    model = registry.get("m")
    assert model is not None
    [endpoint] = model.endpoints
    assert endpoint == model.upstream and isinstance(endpoint, OpenAIEndpoint)
    assert (endpoint.label, endpoint.weight, endpoint.max_concurrency) == (
        "http://gpu:8000",
        1,
        None,
    )
    assert model.upstream_model == "M" and model.fallbacks == ()


def test_several_endpoints_with_weights_names_headers_and_fallbacks() -> None:
    registry = _registry(
        {"id": "small", "tokenizer": "t",
         "upstream": {"type": "openai", "base_url": "http://small:8000"}},
        {"id": "m", "tokenizer": "t", "fallbacks": ["small"], "endpoints": [
            {"name": "a", "type": "openai", "base_url": "http://a:8000", "weight": 3,
             "max_concurrency": 256, "headers": {"X-Pool": "blue"}, "api_key_env": "A_KEY"},
            {"name": "sm", "type": "sagemaker", "endpoint_name": "m-endpoint", "weight": 0.5},
        ]},
    )  # fmt: skip
    model = registry.get("m")
    assert model is not None
    a, sm = model.endpoints
    assert isinstance(a, OpenAIEndpoint) and isinstance(sm, SageMakerEndpoint)
    assert (a.label, a.weight, a.max_concurrency, a.headers) == ("a", 3, 256, {"X-Pool": "blue"})
    assert (sm.label, sm.weight, sm.endpoint) == ("sm", 0.5, "sagemaker:m-endpoint")
    assert model.upstream == a and model.fallbacks == ("small",)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"upstream": {"type": "openai", "base_url": "http://a"},
          "endpoints": [{"type": "openai", "base_url": "http://b"}]}, "not both"),
        ({"endpoints": [{"type": "openai", "base_url": "http://a"},
                        {"type": "openai", "base_url": "http://a"}]}, "names must differ"),
        ({"endpoints": [{"type": "openai", "base_url": "http://a", "weight": 0}]}, "weight"),
        ({"endpoints": [{"type": "openai", "base_url": "http://a", "max_concurrency": 0}]},
         "max_concurrency"),
        ({"endpoints": []}, "upstream"),
        ({"upstream": {"type": "openai", "base_url": "http://a"}, "fallbacks": ["m"]},
         "itself"),
        ({"upstream": {"type": "openai", "base_url": "http://a"}, "fallbacks": ["nope"]},
         "unknown fallbacks"),
    ],
)  # fmt: skip
def test_invalid_endpoint_configs_are_refused_at_start(
    model: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _registry({"id": "m", "tokenizer": "t", **model})
