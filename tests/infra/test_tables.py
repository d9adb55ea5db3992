"""The local tables come from template.yaml's own definitions, and match the contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from devstack.tables import (
    LOCAL_TABLE_NAMES,
    TEMPLATE_PATH,
    create_tables,
    load_template,
    table_definitions,
    ttl_attributes,
)
from moto import mock_aws


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


def _keys(schema: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def _indexes(description: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["IndexName"]: i for i in description.get("GlobalSecondaryIndexes", [])}


def test_definitions_cover_both_tables() -> None:
    definitions = table_definitions(TEMPLATE_PATH)
    assert (
        set(definitions)
        == set(LOCAL_TABLE_NAMES)
        == {
            "KeysTable",
            "UsageTable",
            "ResponsesTable",
        }
    )
    for kwargs in definitions.values():
        assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
        assert "TableName" not in kwargs
    assert ttl_attributes(TEMPLATE_PATH) == {
        "UsageTable": "expires_at",
        "ResponsesTable": "expires_at",
    }


def test_create_tables_in_moto(ddb: Any) -> None:
    create_tables(ddb, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)

    keys = ddb.describe_table(TableName="gateway-keys")["Table"]
    assert _keys(keys["KeySchema"]) == [("key_hash", "HASH")]
    assert keys["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = _indexes(keys)
    assert set(indexes) == {"key_id-index", "owner-index"}
    assert _keys(indexes["key_id-index"]["KeySchema"]) == [("key_id", "HASH")]
    assert _keys(indexes["owner-index"]["KeySchema"]) == [
        ("owner", "HASH"),
        ("created_at", "RANGE"),
    ]
    assert all(i["Projection"]["ProjectionType"] == "ALL" for i in indexes.values())
    keys_ttl = ddb.describe_time_to_live(TableName="gateway-keys")
    assert keys_ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"

    usage = ddb.describe_table(TableName="gateway-usage")["Table"]
    assert _keys(usage["KeySchema"]) == [("pk", "HASH"), ("sk", "RANGE")]
    indexes = _indexes(usage)
    assert set(indexes) == {"request_id-index"}
    assert _keys(indexes["request_id-index"]["KeySchema"]) == [("request_id", "HASH")]
    assert indexes["request_id-index"]["Projection"]["ProjectionType"] == "ALL"
    ttl = ddb.describe_time_to_live(TableName="gateway-usage")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_usage_index_is_sparse(ddb: Any) -> None:
    create_tables(ddb, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
    ddb.put_item(
        TableName="gateway-usage",
        Item={"pk": {"S": "k#1"}, "sk": {"S": "r#1"}, "request_id": {"S": "req-1"}},
    )
    ddb.put_item(TableName="gateway-usage", Item={"pk": {"S": "k#1"}, "sk": {"S": "d#1"}})
    found = ddb.query(
        TableName="gateway-usage",
        IndexName="request_id-index",
        KeyConditionExpression="request_id = :r",
        ExpressionAttributeValues={":r": {"S": "req-1"}},
    )
    assert [i["sk"]["S"] for i in found["Items"]] == ["r#1"]


def test_names_must_match_the_template(ddb: Any) -> None:
    with pytest.raises(ValueError, match="tables without a name"):
        create_tables(ddb, template_path=TEMPLATE_PATH, names={"KeysTable": "k"})
    with pytest.raises(ValueError, match="unknown logical ids"):
        create_tables(ddb, template_path=TEMPLATE_PATH, names={**LOCAL_TABLE_NAMES, "Nope": "n"})
    assert ddb.list_tables()["TableNames"] == []


def test_short_form_tags_parse(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text(
        "Resources:\n"
        "  T:\n"
        "    Type: AWS::DynamoDB::Table\n"
        "    Properties:\n"
        "      TableName: !Sub '${AWS::StackName}-t'\n"
        "      AttributeDefinitions: [{AttributeName: a, AttributeType: S}]\n"
        "      KeySchema: [{AttributeName: a, KeyType: HASH}]\n"
        "  F:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      Environment: {Variables: {T: !Ref T, A: !GetAtt T.Arn}}\n"
        "      Policies: !If [C, [], !Ref AWS::NoValue]\n"
    )
    document = load_template(template)
    variables = document["Resources"]["F"]["Properties"]["Environment"]["Variables"]
    assert variables == {"T": {"Ref": "T"}, "A": {"Fn::GetAtt": ["T", "Arn"]}}
    assert table_definitions(template) == {
        "T": {
            "AttributeDefinitions": [{"AttributeName": "a", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "a", "KeyType": "HASH"}],
            "BillingMode": "PROVISIONED",
        }
    }
