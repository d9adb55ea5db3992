"""template.yaml's routing pieces: the settings' variables, and the scheduled probe."""

from __future__ import annotations

import importlib

from devstack.tables import TEMPLATE_PATH, load_template
from gateway.settings import Settings

ROUTING_VARIABLES = {
    "ROUTING_MAX_ATTEMPTS", "ROUTING_BUDGET_SECONDS", "UPSTREAM_FIRST_TOKEN_TIMEOUT",
    "ENDPOINT_ALLOWED_FAILS", "ENDPOINT_FAILURE_WINDOW_SECONDS", "ENDPOINT_COOLDOWN_SECONDS",
    "ENDPOINT_STATE_CACHE_SECONDS",
}  # fmt: skip


def test_every_function_gets_the_routing_settings() -> None:
    template = load_template(TEMPLATE_PATH)
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(env) >= ROUTING_VARIABLES
    assert {name.upper() for name in Settings.model_fields} >= ROUTING_VARIABLES
    assert env["ENDPOINT_ALLOWED_FAILS"] == {"Ref": "EndpointAllowedFails"}
    assert template["Parameters"]["EndpointAllowedFails"]["Default"] == 3
    assert template["Parameters"]["EndpointCooldownSeconds"]["Default"] == 60


def test_the_probe_runs_on_a_schedule_and_may_only_read_and_update_cooldowns() -> None:
    template = load_template(TEMPLATE_PATH)
    probe = template["Resources"]["EndpointProbeFunction"]["Properties"]
    module, _, name = probe["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    [event] = probe["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"]["Fn::If"][1] == {"Ref": "EndpointProbeSchedule"}
    statement = probe["Policies"][0]["Statement"][0]
    assert sorted(statement["Action"]) == ["dynamodb:Query", "dynamodb:UpdateItem"]
    assert statement["Resource"] == {"Fn::GetAtt": ["UsageTable", "Arn"]}
