"""Stored responses on moto, with the table built from template.yaml: owner scoping,
chained expansion, TTL on read, large conversations in parts, and DynamoDB faults."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError
from devstack.tables import LOCAL_TABLE_NAMES
from gateway.aws import ConditionFailed
from gateway.conversations import ConversationStore, ConversationTooLargeError, response_not_found
from gateway.conversations.store import DAY, MAX_PARTS, PART_BYTES
from gateway.errors import DependencyError, NotFoundError

TABLE = LOCAL_TABLE_NAMES["ResponsesTable"]
NOW = 1_765_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(mock_dynamodb: Any, clock: Clock) -> ConversationStore:
    return ConversationStore(client=mock_dynamodb, table=TABLE, retention_days=30, clock=clock)


def noise(size: int) -> str:
    """Text whose compressed form is at least `size` bytes (an image's base64, say)."""
    return base64.b64encode(os.urandom(size)).decode()


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def reply(text: str) -> dict[str, Any]:
    return {
        "id": f"msg_{text}",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def test_put_get_round_trip(store: ConversationStore, mock_dynamodb: Any) -> None:
    response = {"id": "resp_1", "object": "response", "status": "completed"}
    store.put(
        response_id="resp_1",
        owner="alice",
        input_items=[user("hi")],
        output_items=[reply("hello")],
        response=response,
    )
    stored = store.get(response_id="resp_1", owner="alice")
    assert stored is not None
    assert stored.input_items == [user("hi")]
    assert stored.output_items == [reply("hello")]
    assert stored.response == response
    assert stored.created_at == int(NOW)
    [item] = mock_dynamodb.scan(TableName=TABLE)["Items"]
    assert item["owner"] == {"S": "alice"}
    assert item["expires_at"] == {"N": str(int(NOW) + 30 * DAY)}
    assert b"hello" not in item["data"]["B"]  # compressed


def test_another_owners_response_is_unknown(store: ConversationStore) -> None:
    store.put(response_id="resp_1", owner="alice", input_items=[user("secret")], output_items=[])
    assert store.get(response_id="resp_1", owner="mallory") is None
    assert store.get(response_id="resp_nope", owner="alice") is None
    for owner, response_id in (("mallory", "resp_1"), ("alice", "resp_nope")):
        with pytest.raises(NotFoundError) as caught:
            store.expand(previous_response_id=response_id, owner=owner)
        assert caught.value.status_code == 404
        assert caught.value.param == "previous_response_id"
        assert caught.value.code == "previous_response_not_found"
        assert caught.value.message == f"Previous response with id '{response_id}' not found."
    assert store.delete(response_id="resp_1", owner="mallory") is False
    assert store.get(response_id="resp_1", owner="alice") is not None


def test_expansion_chains_three_turns(store: ConversationStore) -> None:
    history: list[dict[str, Any]] = []
    for turn in range(3):
        response_id = f"resp_{turn}"
        if turn:
            history = store.expand(previous_response_id=f"resp_{turn - 1}", owner="alice")
        store.put(
            response_id=response_id,
            owner="alice",
            input_items=[*history, user(f"q{turn}")],
            output_items=[reply(f"a{turn}")],
        )
    assert store.expand(previous_response_id="resp_2", owner="alice") == [
        user("q0"),
        reply("a0"),
        user("q1"),
        reply("a1"),
        user("q2"),
        reply("a2"),
    ]


def test_expired_responses_are_gone_before_dynamodb_deletes_them(
    store: ConversationStore, clock: Clock
) -> None:
    store.put(response_id="resp_1", owner="alice", input_items=[user("hi")], output_items=[])
    clock.now += 30 * DAY - 1
    assert store.get(response_id="resp_1", owner="alice") is not None
    clock.now += 1
    assert store.get(response_id="resp_1", owner="alice") is None
    assert store.delete(response_id="resp_1", owner="alice") is False


def test_delete(store: ConversationStore, mock_dynamodb: Any) -> None:
    store.put(response_id="resp_1", owner="alice", input_items=[user("hi")], output_items=[])
    assert store.delete(response_id="resp_1", owner="alice") is True
    assert store.get(response_id="resp_1", owner="alice") is None
    assert store.delete(response_id="resp_1", owner="alice") is False
    assert mock_dynamodb.scan(TableName=TABLE)["Items"] == []


def test_large_conversations_are_stored_in_parts(
    store: ConversationStore, mock_dynamodb: Any
) -> None:
    big = [user(noise(2 * PART_BYTES))]
    store.put(response_id="resp_big", owner="alice", input_items=big, output_items=[reply("ok")])
    items = mock_dynamodb.scan(TableName=TABLE)["Items"]
    assert len(items) == 3  # random bytes do not compress: 2 * PART_BYTES and a bit
    assert all(len(item["data"]["B"]) <= PART_BYTES for item in items)
    assert store.expand(previous_response_id="resp_big", owner="alice") == [*big, reply("ok")]
    assert store.get(response_id="resp_big", owner="mallory") is None
    assert store.delete(response_id="resp_big", owner="alice") is True
    assert mock_dynamodb.scan(TableName=TABLE)["Items"] == []


def test_too_large_is_a_clear_400(store: ConversationStore, mock_dynamodb: Any) -> None:
    huge = [user(noise(PART_BYTES * MAX_PARTS))]
    with pytest.raises(ConversationTooLargeError) as caught:
        store.put(response_id="resp_huge", owner="alice", input_items=huge, output_items=[])
    assert caught.value.status_code == 400
    assert mock_dynamodb.scan(TableName=TABLE)["Items"] == []


def test_a_response_id_is_written_once(store: ConversationStore) -> None:
    store.put(response_id="resp_1", owner="alice", input_items=[user("a")], output_items=[])
    with pytest.raises(ConditionFailed):
        store.put(response_id="resp_1", owner="mallory", input_items=[user("b")], output_items=[])
    stored = store.get(response_id="resp_1", owner="alice")
    assert stored is not None and stored.input_items == [user("a")]


class Failing:
    """A DynamoDB client whose every call fails as DynamoDB does when it is unavailable."""

    def __getattr__(self, name: str) -> Any:
        def call(**_: Any) -> Any:
            error = {"Error": {"Code": "InternalServerError", "Message": "boom"}}
            raise ClientError(error, name)  # type: ignore[arg-type]

        return call

    def get_paginator(self, name: str) -> Any:
        failing = self

        class Paginator:
            def paginate(self, **_: Any) -> Any:
                return failing.query()

        return Paginator()


def test_dynamodb_faults_are_dependency_errors() -> None:
    store = ConversationStore(client=Failing(), table=TABLE, retention_days=30)  # type: ignore[arg-type]
    with pytest.raises(DependencyError):
        store.put(response_id="resp_1", owner="alice", input_items=[], output_items=[])
    with pytest.raises(DependencyError):
        store.expand(previous_response_id="resp_1", owner="alice")
    with pytest.raises(DependencyError):
        store.delete(response_id="resp_1", owner="alice")


def test_response_not_found_is_openais_404() -> None:
    error = response_not_found("resp_x")
    assert (error.status_code, error.code, error.param) == (
        404,
        "response_not_found",
        "response_id",
    )
    assert error.to_dict()["error"]["message"] == "No response found with id 'resp_x'."
