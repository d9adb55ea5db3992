"""The `gateway` command against moto's DynamoDB server (the tables of template.yaml)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import gateway.cli
import pytest
from botocore.config import Config
from gateway.aws import AwsClients
from gateway.cli import KEY_COLUMNS, main
from gateway.cli.common import EXIT_BROKEN_PIPE, EXIT_CODES, EXIT_FAILED, EXIT_USAGE, Progress
from gateway.keys import KeyStore
from gateway.keys.mac import KeyMac
from gateway.settings import Settings
from gateway.usage import UsageRecord, UsageStatus, UsageStore

from tests.conftest import models_config
from tests.gateway.usage.test_replay import unwritten_log_lines
from tests.support.records import usage_record
from tests.support.servers import free_port
from tests.support.usage import drain

MAC_SECRETS = [
    "cli-tests-newest-mac-secret-" + "n" * 20,
    "cli-tests-previous-mac-secret-" + "p" * 20,
]


@pytest.fixture(autouse=True)
def mac_secrets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The gateway's MAC secrets, as a local stack sets them (KEY_MAC_SECRETS)."""
    monkeypatch.setenv("KEY_MAC_SECRETS", json.dumps(MAC_SECRETS))
    return MAC_SECRETS


@pytest.fixture
def stores(dynamodb: str) -> Iterator[tuple[KeyStore, UsageStore]]:
    settings = Settings()
    client = boto3.client("dynamodb")
    yield (
        KeyStore(client=client, table=settings.keys_table),
        UsageStore(client=client, table=settings.usage_table, retention_days=90),
    )
    client.close()  # its pooled socket, else left to the garbage collector


def cli(
    capsys: pytest.CaptureFixture[str], *argv: str, aggregated: bool = True
) -> tuple[int, str, str]:
    if aggregated:
        drain(boto3.client("dynamodb"))  # the aggregator has caught up (rollups lag seconds)
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def record(key_id: str, created_at: datetime, **kw: Any) -> UsageRecord:
    return usage_record(
        **{
            "request_id": unique("req"),
            "key_id": key_id,
            "created_at": created_at,
            "latency_ms": 20.5,
            **kw,
        }
    )


def at(day: int, hour: int = 12, minute: int = 0, second: float = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


# -- keys ------------------------------------------------------------------------------


def test_keys_create_with_limits_then_update(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    keys, _ = stores
    code, out, _ = cli(
        capsys, "keys", "create", "--name", "ci", "--owner", unique("o"), "--models",
        "qwen3,llama3", "--rpm", "60", "--tpm", "1000", "--monthly-tokens", "50000",
    )  # fmt: skip
    assert code == 0
    created = json.loads(out)
    assert created["key"].startswith("sk-gw3_")  # tagged (gateway.keys.mac)
    assert KeyMac.of(MAC_SECRETS).signer_id(created["key"]) == created["mac_secret_id"]
    assert (created["rpm"], created["tpm"], created["monthly_tokens"]) == (60, 1000, 50000)
    key_id = created["key_id"]
    assert keys.lookup(secret=created["key"]) == keys.get(key_id=key_id)

    code, out, _ = cli(
        capsys, "keys", "update", key_id, "--name", "renamed", "--all-models",
        "--rpm", "none", "--tpm", "2000", "--no-expiry",
    )  # fmt: skip
    assert code == 0
    stored = keys.get(key_id=key_id)
    assert json.loads(out) == stored.public_dict()
    assert (stored.name, stored.models, stored.rpm, stored.tpm) == ("renamed", (), None, 2000)
    assert (stored.monthly_tokens, stored.expires_at) == (50000, None)  # left alone
    assert keys.lookup(secret=created["key"]) == stored  # same secret, new settings

    before = datetime.now(UTC)
    code, out, _ = cli(
        capsys, "keys", "update", key_id, "--models", "b, a", "--expires-in-days", "3",
        "--monthly-tokens", "none",
    )  # fmt: skip
    stored = keys.get(key_id=key_id)
    assert (code, stored.models, stored.monthly_tokens) == (0, ("a", "b"), None)
    assert stored.expires_at is not None
    assert before + timedelta(days=3) - timedelta(seconds=2) <= stored.expires_at
    assert stored.expires_at <= datetime.now(UTC) + timedelta(days=3)

    assert cli(capsys, "keys", "update", key_id) == (
        1,
        "",
        "gateway: nothing to update: give --name, --models/--all-models, "
        "--expires-in-days/--no-expiry, --rpm, --tpm, --monthly-tokens or --priority\n",
    )
    with pytest.raises(SystemExit) as exited:
        main(["keys", "update", key_id, "--rpm", "0"])
    assert exited.value.code == 2


def test_keys_priority_is_set_shown_and_listed(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    keys, _ = stores
    owner = unique("o")
    code, out, _ = cli(capsys, "keys", "create", "--name", "p", "--owner", owner, "--priority", "5")
    key_id = json.loads(out)["key_id"]
    assert (code, keys.get(key_id=key_id).priority) == (0, 5)
    code, out, _ = cli(capsys, "keys", "update", key_id, "--priority", "-1")
    assert (code, json.loads(out)["priority"]) == (0, -1)
    assert json.loads(cli(capsys, "keys", "show", key_id)[1])["priority"] == -1
    code, out, _ = cli(capsys, "keys", "list", "--owner", owner)
    assert code == 0 and "priority" in out.splitlines()[0] and "-1" in out
    with pytest.raises(SystemExit):
        main(["keys", "update", key_id, "--models", "a", "--all-models"])


def test_main_closes_the_aws_clients_it_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dynamodb: str
) -> None:
    """A command's DynamoDB connection is closed when it returns, not left to gc."""
    built: list[AwsClients] = []

    class Recorded(AwsClients):
        closed = False

        def close_connections(self) -> None:
            self.closed = True
            super().close_connections()

    monkeypatch.setattr(gateway.cli, "AwsClients", lambda: built.append(Recorded()) or built[-1])
    assert cli(capsys, "keys", "list", "--owner", unique("o"))[0] == 0
    assert [getattr(clients, "closed", False) for clients in built] == [True]


def test_keys_rotate_prints_the_new_secret_once(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    keys, _ = stores
    key, old_secret = keys.create(name="r", owner=unique("o"), rpm=7)
    code, out, _ = cli(capsys, "keys", "rotate", key.key_id)
    assert code == 0
    rotated = json.loads(out)
    assert rotated["key_id"] == key.key_id and rotated["rpm"] == 7
    assert rotated["key"] != old_secret
    assert keys.lookup(secret=old_secret) is None
    new = keys.lookup(secret=rotated["key"])
    assert new is not None and new.key_id == key.key_id
    # an old-format key moves to the MAC format, tagged by the newest secret
    assert old_secret.startswith("sk-gw2_") and rotated["key"].startswith("sk-gw3_")
    assert new.mac_secret_id == rotated["mac_secret_id"] == KeyMac.of(MAC_SECRETS).newest_id


def test_keys_create_and_rotate_need_the_mac_secrets(
    capsys: pytest.CaptureFixture[str],
    stores: tuple[KeyStore, UsageStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys, _ = stores
    key, secret = keys.create(name="r", owner=unique("o"))
    monkeypatch.delenv("KEY_MAC_SECRETS")
    for argv in (["create", "--name", "x"], ["rotate", key.key_id], ["secrets"]):
        code, out, err = cli(capsys, "keys", *argv, aggregated=False)
        assert (code, out) == (EXIT_FAILED, "")
        assert "KEY_MAC_SECRETS_PARAMETER" in err and len(err.splitlines()) == 1
    assert keys.get(key_id=key.key_id) == keys.lookup(secret=secret)  # nothing rotated
    monkeypatch.setenv("KEY_MAC_SECRETS", "too-short")
    code, _, err = cli(capsys, "keys", "create", "--name", "x", aggregated=False)
    assert code == EXIT_FAILED and "shorter than 32" in err and "too-short" not in err


def test_keys_secrets_counts_the_keys_of_each_mac_secret(
    capsys: pytest.CaptureFixture[str],
    stores: tuple[KeyStore, UsageStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys, _ = stores
    before = json.loads(cli(capsys, "keys", "secrets", aggregated=False)[1])
    # one key under the previous secret (minted before the rotation), one legacy key
    monkeypatch.setenv("KEY_MAC_SECRETS", json.dumps(MAC_SECRETS[1:]))
    assert cli(capsys, "keys", "create", "--name", "old", aggregated=False)[0] == 0
    monkeypatch.setenv("KEY_MAC_SECRETS", json.dumps(MAC_SECRETS))
    keys.create(name="legacy", owner=unique("o"))
    assert cli(capsys, "keys", "create", "--name", "new", aggregated=False)[0] == 0
    code, out, _ = cli(capsys, "keys", "secrets", aggregated=False)
    assert code == 0
    shown = json.loads(out)
    newest, previous = KeyMac.of(MAC_SECRETS).ids
    assert [(s["id"], s["mints"]) for s in shown["secrets"]] == [(newest, True), (previous, False)]
    counts = {s["id"]: s["keys"] for s in shown["secrets"]}
    old_counts = {s["id"]: s["keys"] for s in before["secrets"]}
    assert counts == {newest: old_counts[newest] + 1, previous: old_counts[previous] + 1}
    assert shown["legacy_keys"] == before["legacy_keys"] + 1
    assert any("retire" in step for step in shown["rotation"])
    assert not any(secret in out for secret in MAC_SECRETS)
    code, out, _ = cli(capsys, "keys", "secrets", "--generate", aggregated=False)
    assert code == 0 and len(out.strip()) >= 43 and out.strip() not in MAC_SECRETS


def test_keys_show_sums_this_month(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    keys, usage = stores
    key, _ = keys.create(name="s", owner=unique("o"), monthly_tokens=100, tpm=500)
    now = datetime.now(UTC)
    last_month = now.replace(day=1, hour=0, minute=0) - timedelta(hours=1)
    usage.write(record(key.key_id, now))
    usage.write(record(key.key_id, now, model="llama3", status=UsageStatus.UPSTREAM_ERROR))
    usage.write(record(key.key_id, last_month, prompt_tokens=1000))

    code, out, _ = cli(capsys, "keys", "show", key.key_id)
    assert code == 0
    shown = json.loads(out)
    assert {k: v for k, v in shown.items() if k != "usage_this_month"} == key.public_dict()
    assert shown["usage_this_month"] == {
        "month": now.strftime("%Y-%m"),
        "requests": 2, "prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
        "errors": 1, "rate_limited": 0, "cached_tokens": 0, "used_tokens": 30,
        "remaining_tokens": 70,
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "show", "key_nope"],
        ["keys", "update", "key_nope", "--name", "x"],
        ["keys", "rotate", "key_nope"],
        ["keys", "revoke", "key_nope"],
    ],
)
def test_unknown_key_id_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], dynamodb: str, argv: list[str]
) -> None:
    assert cli(capsys, *argv) == (1, "", "gateway: no key with key_id key_nope\n")


def test_revoking_a_revoked_key_is_refused(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    code, out, _ = cli(capsys, "keys", "create", "--name", "r", "--owner", unique("revoke"))
    key_id = json.loads(out)["key_id"]
    code, out, _ = cli(capsys, "keys", "revoke", key_id)
    assert code == 0 and json.loads(out)["status"] == "revoked"
    again = cli(capsys, "keys", "revoke", key_id)
    assert again == (1, "", f"gateway: key {key_id} is already revoked; nothing changed\n")


@pytest.mark.parametrize(
    "argv",
    [["keys", "show", "key_x"], ["keys", "list"], ["usage", "--key-id", "key_x", "--daily"]],
)
def test_unreachable_dynamodb_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # No retries: the test needs the failure, not botocore's backoff.
    monkeypatch.setattr("gateway.aws._DYNAMODB_CONFIG", Config(retries={"max_attempts": 1}))
    code, out, err = cli(capsys, *argv, aggregated=False)
    assert (code, out) == (1, "")
    assert err.startswith("gateway: DynamoDB is unavailable (")
    assert err.count("\n") == 1


# -- usage -----------------------------------------------------------------------------


def test_usage_records_as_json_csv_and_table(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    _, usage = stores
    key_id = unique("key")
    records = [
        record(key_id, at(20, 8)),
        record(key_id, at(21, 0)),
        record(key_id, at(21, 23, 59, 59.999), model="llama3", finish_reason="length"),
        record(key_id, at(22, 0)),
    ]
    for rec in records:
        usage.write(rec)
    day21 = ["--key-id", key_id, "--since", "2026-11-21", "--until", "2026-11-21"]

    code, out, _ = cli(capsys, "usage", *day21, "--json")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [r.to_json() for r in records[1:3]]

    code, out, _ = cli(capsys, "usage", *day21, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["request_id"] for r in rows] == [r.request_id for r in records[1:3]]
    assert rows[1]["model"] == "llama3" and rows[1]["finish_reason"] == "length"
    assert rows[1]["created_at"] == "2026-11-21T23:59:59.999Z"
    assert rows[0]["total_tokens"] == "15" and rows[0]["ttft_ms"] == ""

    # ISO times: --until is inclusive to the millisecond.
    code, out, _ = cli(
        capsys, "usage", "--key-id", key_id, "--since", "2026-11-21T00:00:00.001Z",
        "--until", "2026-11-22T00:00:00Z", "--json",
    )  # fmt: skip
    assert [json.loads(line)["request_id"] for line in out.splitlines()] == [
        records[2].request_id,
        records[3].request_id,
    ]

    code, out, _ = cli(capsys, "usage", "--key-id", key_id)
    lines = out.splitlines()
    assert lines[0].split() == ["created_at", "request_id", "model", "status", "stream",
                                "prompt_tokens", "completion_tokens", "total_tokens",
                                "latency_ms"]  # fmt: skip
    assert len(lines) == 1 + 4 + 1 and lines[-1] == "4 requests, 60 tokens"


def test_usage_daily_for_a_key(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    _, usage = stores
    key_id = unique("key")
    for rec in (
        record(key_id, at(1)),
        record(key_id, at(2)),
        record(key_id, at(2, 23), status=UsageStatus.UPSTREAM_TIMEOUT, completion_tokens=0),
        record(key_id, at(3)),
        record(key_id, at(3, 9), status=UsageStatus.RATE_LIMITED, http_status=429,
               prompt_tokens=0, completion_tokens=0),
    ):  # fmt: skip
        usage.write(rec)

    code, out, _ = cli(
        capsys, "usage", "--key-id", key_id, "--daily", "--since", "2026-11-02T15:00:00Z",
        "--until", "2026-11-03", "--json",
    )  # fmt: skip
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"key_id": key_id, "date": "2026-11-02", "requests": 2, "prompt_tokens": 20,
         "completion_tokens": 5, "total_tokens": 25, "errors": 1, "rate_limited": 0, "cached_tokens": 0},
        {"key_id": key_id, "date": "2026-11-03", "requests": 2, "prompt_tokens": 10,
         "completion_tokens": 5, "total_tokens": 15, "errors": 1, "rate_limited": 1, "cached_tokens": 0},
    ]  # fmt: skip

    code, out, _ = cli(capsys, "usage", "--key-id", key_id, "--daily", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["date"], r["requests"], r["errors"], r["rate_limited"]) for r in rows] == [
        ("2026-11-01", "1", "0", "0"),
        ("2026-11-02", "2", "1", "0"),
        ("2026-11-03", "2", "1", "1"),
    ]
    assert list(rows[0]) == ["key_id", "date", "requests", "prompt_tokens",
                             "completion_tokens", "total_tokens", "errors",
                             "rate_limited", "cached_tokens"]  # fmt: skip

    code, out, _ = cli(capsys, "usage", "--key-id", key_id, "--daily")
    assert out.splitlines()[0].split() == [
        "date",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "errors",
        "rate_limited",
        "cached_tokens",
    ]  # one key: no key_id column
    assert out.splitlines()[-1] == "5 requests, 55 tokens"


def test_usage_of_a_model_needs_no_key(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    _, usage = stores
    model = unique("model")
    usage.write(record(unique("key"), at(10), model=model))
    usage.write(record(unique("key"), at(10), model=model, prompt_tokens=90))
    usage.write(record(unique("key"), at(12), model=model))
    usage.write(record(unique("key"), at(10)))  # another model

    code, out, _ = cli(capsys, "usage", "--model", model, "--until", "2026-11-11", "--csv")
    assert code == 0
    assert list(csv.DictReader(io.StringIO(out))) == [
        {"model": model, "date": "2026-11-10", "requests": "2", "prompt_tokens": "100",
         "completion_tokens": "10", "total_tokens": "110", "errors": "0", "rate_limited": "0", "cached_tokens": "0"},
    ]  # fmt: skip
    code, out, _ = cli(capsys, "usage", "--model", model)
    assert out.splitlines()[-1] == "3 requests, 125 tokens"


def test_usage_of_an_owner_lists_every_key(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    keys, usage = stores
    owner = unique("owner")
    first, _ = keys.create(name="a", owner=owner)
    second, _ = keys.create(name="b", owner=owner)
    other, _ = keys.create(name="c", owner=unique("owner"))
    for key, day in ((first, 5), (second, 5), (second, 6), (other, 5)):
        usage.write(record(key.key_id, at(day)))

    code, out, _ = cli(capsys, "usage", "--owner", owner, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["key_id"], r["created_at"][:10]) for r in rows) == sorted(
        [(first.key_id, "2026-11-05"), (second.key_id, "2026-11-05"),
         (second.key_id, "2026-11-06")]
    )  # fmt: skip

    code, out, _ = cli(capsys, "usage", "--owner", owner, "--daily", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted((r["key_id"], r["date"], r["requests"]) for r in rows) == sorted(
        [(first.key_id, "2026-11-05", "1"), (second.key_id, "2026-11-05", "1"),
         (second.key_id, "2026-11-06", "1")]
    )  # fmt: skip

    code, out, _ = cli(capsys, "usage", "--owner", owner)
    header = out.splitlines()[0].split()
    assert header[:2] == ["key_id", "created_at"]
    assert out.splitlines()[-1] == "3 requests, 45 tokens"


def test_usage_of_an_owner_by_model_and_by_route(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    keys, usage = stores
    owner = unique("owner")
    first, _ = keys.create(name="a", owner=owner)
    second, _ = keys.create(name="b", owner=owner)
    for key, day, model, route in (
        (first, 5, "m1", "chat"), (first, 6, "m1", "completions"), (first, 6, "m2", "chat"),
        (second, 5, "e1", "embeddings"), (second, 9, "m1", "chat"),
    ):  # fmt: skip
        completion = 0 if route == "embeddings" else 5
        usage.write(record(key.key_id, at(day), model=model, route=route,
                           completion_tokens=completion))  # fmt: skip

    code, out, _ = cli(capsys, "usage", "--owner", owner, "--by", "route", "--until", "2026-11-08",
                       "--csv")  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["key_id", "route", "requests", "prompt_tokens",
                             "completion_tokens", "total_tokens", "errors",
                             "rate_limited", "cached_tokens"]  # fmt: skip
    assert sorted((r["key_id"], r["route"], r["requests"], r["total_tokens"]) for r in rows) == sorted(
        [(first.key_id, "chat", "2", "30"), (first.key_id, "completions", "1", "15"),
         (second.key_id, "embeddings", "1", "10")]
    )  # fmt: skip

    code, out, _ = cli(capsys, "usage", "--key-id", first.key_id, "--by", "model", "--json")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"key_id": first.key_id, "model": "m1", "requests": 2, "prompt_tokens": 20,
         "completion_tokens": 10, "total_tokens": 30, "errors": 0, "rate_limited": 0, "cached_tokens": 0},
        {"key_id": first.key_id, "model": "m2", "requests": 1, "prompt_tokens": 10,
         "completion_tokens": 5, "total_tokens": 15, "errors": 0, "rate_limited": 0, "cached_tokens": 0},
    ]  # fmt: skip
    code, out, _ = cli(capsys, "usage", "--owner", owner, "--by", "route")
    assert out.splitlines()[0].split()[:2] == ["key_id", "route"]
    assert out.splitlines()[-1] == "5 requests, 70 tokens"


@pytest.mark.parametrize(
    "argv",
    [
        ["usage"],
        ["usage", "--daily"],
        ["usage", "--key-id", "a", "--owner", "b"],
        ["usage", "--key-id", "a", "--json", "--csv"],
        ["usage", "--key-id", "a", "--since", "last week"],
        ["usage", "--model", "m", "--by", "route"],
        ["usage", "--key-id", "a", "--daily", "--by", "model"],
    ],
)
def test_usage_arguments_are_checked(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


# -- usage replay ----------------------------------------------------------------------


def test_usage_replay_from_a_file_and_stdin(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stores: tuple[KeyStore, UsageStore],
    tmp_path: Path,
) -> None:
    _, usage = stores
    key_id = unique("key")
    lost = record(key_id, at(15))
    logged = unwritten_log_lines(lost)
    log = tmp_path / "gateway.log"
    log.write_text("\n".join(["not json", *logged]) + "\n")
    skipped = len(logged)  # "not json" and any other line that is not a lost record

    assert cli(capsys, "usage", "replay", str(log)) == (
        0,
        f"replayed 1, already present 0, failed 0, unreadable 0, skipped {skipped}\n",
        "",
    )
    assert usage.query(key_id=key_id) == [lost]

    monkeypatch.setattr("sys.stdin", io.StringIO(log.read_text()))
    assert cli(capsys, "usage", "replay", "-")[1] == (
        f"replayed 0, already present 1, failed 0, unreadable 0, skipped {skipped}\n"
    )
    code, out, _ = cli(capsys, "usage", "--key-id", key_id, "--daily", "--json")
    assert json.loads(out)["requests"] == 1  # not doubled

    broken = tmp_path / "broken.log"
    broken.write_text(json.dumps({"message": "usage_record_unwritten", "usage_record": {}}))
    code, out, err = cli(capsys, "usage", "replay", str(broken))
    assert (code, out) == (1, "replayed 0, already present 0, failed 0, unreadable 1, skipped 1\n")
    assert err.startswith("gateway: line 1: usage_record_unwritten with unreadable usage_record")

    code, out, err = cli(capsys, "usage", "replay", str(tmp_path / "missing.log"))
    assert (code, out) == (1, "")
    assert err.startswith("gateway: cannot read ") and err.count("\n") == 1


# -- rough edges: pipes, --json, ranges, model ids, completion, progress, exit codes ----


def _gateway_process(*argv: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        **kw,
    )


def test_a_closed_pipe_is_silent_and_exits_141() -> None:
    process = _gateway_process("completion", "bash")
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the command writes a byte
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (EXIT_BROKEN_PIPE, "")


def test_piped_to_head_prints_no_traceback(stores: tuple[KeyStore, UsageStore]) -> None:
    keys, _ = stores
    owner = unique("pipe")
    for i in range(40):
        keys.create(name=f"pipe-{i}-" + "x" * 200, owner=owner)
    result = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m gateway.cli keys list --owner {owner} | head -n 2'],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=True,
    )
    assert result.stderr == ""
    assert result.stdout.splitlines()[0].split()[:2] == ["key_id", "name"]


def test_keys_list_json_and_json_accepted_everywhere(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore]
) -> None:
    owner = unique("json")
    code, out, _ = cli(capsys, "keys", "create", "--name", "a", "--owner", owner, "--json")
    assert code == 0
    key_id = json.loads(out)["key_id"]
    code, out, _ = cli(capsys, "keys", "list", "--owner", owner, "--json")
    assert code == 0
    [listed] = json.loads(out)
    assert listed["key_id"] == key_id and "key" not in listed and "hash" not in listed
    code, out, _ = cli(capsys, "keys", "list", "--owner", owner)
    assert out.splitlines()[0].split() == list(KEY_COLUMNS)
    for argv in (["show", key_id], ["update", key_id, "--name", "b"], ["revoke", key_id]):
        code, out, _ = cli(capsys, "keys", *argv, "--json")
        assert code == 0 and json.loads(out)["key_id"] == key_id


def test_replay_summary_as_json(
    capsys: pytest.CaptureFixture[str], stores: tuple[KeyStore, UsageStore], tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("\n".join(unwritten_log_lines(record(unique("key"), at(16)))) + "\n")
    code, out, err = cli(capsys, "usage", "replay", str(log), "--json")
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert (summary["replayed"], summary["already_present"]) == (1, 0)


@pytest.mark.parametrize(
    "argv",
    [
        ["--since", "2026-11-20", "--until", "2026-11-01"],
        ["--since", "2026-11-20T10:00:00Z", "--until", "2026-11-20T09:59:59Z", "--daily"],
    ],
)
def test_an_inverted_range_is_an_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["usage", "--key-id", "key_x", *argv])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "is after --until" in err and "nothing can match" in err


def test_model_ids_are_checked_against_the_models_config(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stores: tuple[KeyStore, UsageStore],
) -> None:
    monkeypatch.setenv("MODELS_CONFIG", models_config("http://127.0.0.1:9"))
    owner = unique("models")
    code, out, err = cli(
        capsys, "keys", "create", "--name", "m", "--owner", owner, "--models", "qwen3,qwen-3,gpt9"
    )
    assert (code, out) == (EXIT_FAILED, "")
    assert err == (
        "gateway: unknown model id(s): gpt9, qwen-3; the models config has llama3, mistral, "
        "qwen3, tinyllama "
        "(--allow-unknown-models to allow them anyway)\n"
    )
    assert cli(capsys, "keys", "list", "--owner", owner, "--json")[1] == "[]\n"  # nothing made

    code, out, _ = cli(capsys, "keys", "create", "--name", "m", "--owner", owner,
                       "--models", "qwen3,gpt9", "--allow-unknown-models")  # fmt: skip
    assert code == 0
    key_id = json.loads(out)["key_id"]
    code, _, err = cli(capsys, "keys", "update", key_id, "--models", "llama3,qwen3")
    assert (code, err) == (0, "")

    monkeypatch.delenv("MODELS_CONFIG")
    code, _, err = cli(capsys, "keys", "update", key_id, "--models", "anything")
    assert code == 0
    assert err.startswith("gateway: warning: model ids not checked: no models config")


def _complete(script: str, line: str) -> list[str]:
    """What bash offers for `line` (the cursor at its end) with the generated script."""
    words = line.split(" ")
    program = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n_gateway_complete\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile"], input=program, capture_output=True, text=True,
        timeout=30, check=True,
    )  # fmt: skip
    return sorted(filter(None, result.stdout.splitlines()))


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_from_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    code, script, _ = cli(capsys, "completion", "bash")
    assert code == 0 and "complete -o default -F _gateway_complete gateway" in script
    commands = ["completion", "dashboard", "endpoints", "keys", "tokens", "usage"]
    assert _complete(script, "gateway ") == commands
    assert _complete(script, "gateway ke") == ["keys"]
    assert "list" in _complete(script, "gateway keys ")
    assert _complete(script, "gateway keys list --") == ["--help", "--json", "--owner"]
    assert _complete(script, "gateway usage --s") == ["--since"]
    assert _complete(script, "gateway usage --key-id k --daily --j") == ["--json"]
    assert _complete(script, "gateway usage ") == ["rebuild-rollups", "replay"]
    zsh = cli(capsys, "completion", "zsh")[1]
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_logs_lines_elsewhere() -> None:
    now = [0.0]
    terminal = _Terminal()
    progress = Progress("replay", err=terminal, unit="lines read", clock=lambda: now[0])
    for _ in range(3):
        now[0] += 0.25
        progress.advance(100)
    progress.finish()
    shown = terminal.getvalue()
    assert shown.count("\r\x1b[K") == 4 and shown.endswith("replay: 300 lines read, 1s, done\n")
    assert "replay: 100 lines read, 0s" in shown

    log = io.StringIO()
    total = Progress("rebuild", err=log, unit="days", total=10, clock=lambda: now[0])
    for _ in total.track(range(10)):
        now[0] += 1.0
    assert log.getvalue().splitlines() == [
        "rebuild: 5/10 days (50%), 5s",
        "rebuild: 10/10 days (100%), 10s",
        "rebuild: 10/10 days (100%), 10s, done",
    ]
    quick = io.StringIO()
    Progress("quick", err=quick).finish()
    assert quick.getvalue() == ""  # a quick run says nothing


def test_exit_codes_are_documented() -> None:
    usage_doc = (Path(__file__).resolve().parents[2] / "docs" / "USAGE.md").read_text()
    section = usage_doc.split("## Exit codes", 1)[1]
    for code in EXIT_CODES:
        assert f"| {code} |" in section
