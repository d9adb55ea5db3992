"""Guard policies: which one applies, which categories block, how the models config
declares them, and what a request's screenings write into its usage record."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gateway.errors import ConfigurationError
from gateway.guard.policy import blocking, select_policy
from gateway.guard.prompt import Verdict
from gateway.metering.guard_ledger import GuardAction, GuardLedger
from gateway.models.registry import GuardPolicy, ModelRegistry

from tests.support.records import usage_record


def policy(**kw: Any) -> GuardPolicy:
    kw.setdefault("id", "p")
    kw.setdefault("guard", "g")
    kw.setdefault("models", ("m",))
    return GuardPolicy(**kw)


def test_a_policy_naming_the_key_wins_over_one_for_every_key() -> None:
    everyone = policy(id="all", models=("*",))
    partner = policy(id="partner", models=("m",), keys=("k1",))
    other = policy(id="other-model", models=("x",), keys=("k1",))
    policies = [everyone, other, partner]
    assert select_policy(policies, model_id="m", key_id="k1") is partner
    assert select_policy(policies, model_id="m", key_id="k2") is everyone
    assert select_policy(policies, model_id="x", key_id="k2") is everyone
    assert select_policy([partner], model_id="m", key_id="k2") is None
    assert select_policy([], model_id="m", key_id="k1") is None


def test_blocking_categories() -> None:
    unsafe = Verdict(safe=False, categories=("S1", "S10"))
    assert blocking(policy(), unsafe) == ("S1", "S10")
    assert blocking(policy(block=("S10", "S3")), unsafe) == ("S10",)
    assert blocking(policy(block=("S3",)), unsafe) == ()
    assert blocking(policy(), Verdict(safe=True)) == ()


def _config(policies: list[dict[str, Any]], guard: bool = True) -> str:
    guard_model: dict[str, Any] = {
        "id": "lg", "tokenizer": "lg", "upstream": {"type": "openai", "base_url": "http://g"},
    }  # fmt: skip
    if guard:
        guard_model["guard"] = {"format": "llama_guard"}
    models = [
        {"id": "m", "tokenizer": "t", "upstream": {"type": "sagemaker", "endpoint_name": "e"}}
    ]
    return json.dumps({"models": [*models, guard_model], "guard_policies": policies})


def test_the_models_config_declares_guards_and_policies() -> None:
    registry = ModelRegistry.from_json(
        _config([{"id": "p", "guard": "lg", "models": ["m"], "output": True, "on_error": "open"}])
    )
    [loaded] = registry.guard_policies
    assert loaded.output and loaded.input and loaded.on_error == "open"
    assert loaded.window_tokens == 64 and loaded.deadline_seconds == 2.0
    guard = registry.get("lg")
    assert guard is not None and guard.guard is not None and guard.guard.format == "llama_guard"
    assert ModelRegistry.from_json(_config([])).guard_policies == ()


@pytest.mark.parametrize(
    ("policies", "guard", "words"),
    [
        ([{"id": "p", "guard": "lg", "models": ["m"]}], False, "not a model declared with"),
        ([{"id": "p", "guard": "nope", "models": ["m"]}], True, "not a model declared with"),
        ([{"id": "p", "guard": "lg", "models": ["zz"]}], True, "unknown models"),
        ([{"id": "p", "guard": "lg", "models": ["m"], "on_error": "maybe"}], True, "on_error"),
        ([{"id": "p", "guard": "lg", "models": ["m"], "window_tokens": 0}], True, "window"),
        ([{"id": "p", "guard": "lg", "models": ["m"], "deadline_seconds": 0}], True, "deadline"),
        ([{"id": "p", "guard": "lg", "models": []}], True, "models"),
    ],
)
def test_invalid_guard_config_is_refused(
    policies: list[dict[str, Any]], guard: bool, words: str
) -> None:
    with pytest.raises(ConfigurationError, match=words):
        ModelRegistry.from_json(_config(policies, guard=guard))


def test_the_ledger_writes_the_decision_into_the_record() -> None:
    ledger = GuardLedger(guard_model="lg")
    ledger.add_call(prompt_tokens=200, completion_tokens=6, latency_ms=12.5)
    ledger.input_latency_ms = 12.5
    ledger.add_call(prompt_tokens=230, completion_tokens=3, latency_ms=10.0)
    ledger.note(Verdict(safe=False, categories=("S6", "S2")).categories, ("S6",))
    ledger.action = GuardAction.BLOCKED_OUTPUT
    record = usage_record()
    ledger.apply(record)
    assert record.guard_model == "lg" and record.guard_action == "blocked_output"
    assert (record.guard_calls, record.guard_prompt_tokens, record.guard_completion_tokens) == (
        2, 430, 9
    )  # fmt: skip
    assert record.guard_categories == "S6,S2" and record.guard_blocked == "S6"
    assert record.guard_latency_ms == 22.5 and record.guard_input_latency_ms == 12.5
    assert record.billed_tokens == record.total_tokens + 439
    item = record.to_item(retention_days=1)
    assert item["guard_blocked"] == {"S": "S6"} and item["guard_prompt_tokens"] == {"N": "430"}
    assert type(record).from_item(item) == record


def test_blocks_are_counted_per_model_and_category_in_emf(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.guard.metrics import BlockMetrics

    BlockMetrics("Test", enabled=False).blocked(model="qwen3", categories=["S1"])
    assert capsys.readouterr().out == ""
    BlockMetrics("Test").blocked(model="qwen3", categories=["S1", "S10"])
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["model"], d["category"], d["GuardBlocks"]) for d in documents] == [
        ("qwen3", "S1", [1.0]),
        ("qwen3", "S10", [1.0]),
    ]
    assert documents[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Test"
