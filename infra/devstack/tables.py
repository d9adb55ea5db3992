"""DynamoDB tables as template.yaml defines them, for the local stack and the tests.

The SAM template is the single source of truth for the tables' keys and indexes. This
module reads its `AWS::DynamoDB::Table` resources and turns them into boto3
`create_table` arguments, so a local DynamoDB (moto) always has the deployed schema.

    from devstack.tables import LOCAL_TABLE_NAMES, TEMPLATE_PATH, create_tables
    create_tables(client, template_path=TEMPLATE_PATH, names=LOCAL_TABLE_NAMES)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = [
    "LOCAL_TABLE_NAMES",
    "TEMPLATE_PATH",
    "create_tables",
    "load_template",
    "table_definitions",
    "ttl_attributes",
]

# The repository's template.yaml (infra/devstack/tables.py -> repository root).
TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"

# Logical id in template.yaml -> table name used by the local stack and the tests.
LOCAL_TABLE_NAMES: dict[str, str] = {
    "KeysTable": "gateway-keys",
    "UsageTable": "gateway-usage",
    "ResponsesTable": "gateway-responses",
}

_TABLE_TYPE = "AWS::DynamoDB::Table"
# Table properties copied verbatim into create_table's arguments.
_COPIED = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
)


class _CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that also reads CloudFormation's short-form tags (!Ref, !Sub...).

    `!Ref X` becomes `{"Ref": "X"}`, `!GetAtt A.B` becomes `{"Fn::GetAtt": ["A", "B"]}`,
    and every other `!Name v` becomes `{"Fn::Name": v}`, as CloudFormation reads them.
    """


def _construct_cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - PyYAML has no other node kinds
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_cfn_tag)


def load_template(template_path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template, short-form intrinsic tags included."""
    with template_path.open(encoding="utf-8") as f:
        document = yaml.load(f, Loader=_CfnLoader)  # a SafeLoader subclass: safe
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise ValueError(f"{template_path}: not a CloudFormation template (no Resources)")
    return document


def _tables(template_path: Path) -> dict[str, dict[str, Any]]:
    resources: dict[str, Any] = load_template(template_path)["Resources"]
    return {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in resources.items()
        if isinstance(resource, dict) and resource.get("Type") == _TABLE_TYPE
    }


def _check_literal(where: str, value: Any) -> None:
    """Refuse intrinsic functions in key schemas: a local table cannot resolve them."""
    if isinstance(value, dict):
        if any(k == "Ref" or k.startswith("Fn::") for k in value):
            raise ValueError(f"{where}: intrinsic function {value!r} cannot be used locally")
        for k, v in value.items():
            _check_literal(f"{where}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_literal(f"{where}[{i}]", v)


def table_definitions(template_path: Path) -> dict[str, dict[str, Any]]:
    """The template's DynamoDB tables as boto3 `create_table` keyword arguments.

    Returns logical id -> kwargs with AttributeDefinitions, KeySchema, BillingMode and,
    where the template has them, GlobalSecondaryIndexes, LocalSecondaryIndexes and
    ProvisionedThroughput. `TableName` is not included: the caller chooses the name.
    """
    definitions: dict[str, dict[str, Any]] = {}
    for logical_id, properties in _tables(template_path).items():
        kwargs = {k: copy.deepcopy(properties[k]) for k in _COPIED if k in properties}
        kwargs.setdefault("BillingMode", "PROVISIONED")
        if "StreamSpecification" in kwargs:  # CloudFormation's has no StreamEnabled; boto3's must
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **kwargs["StreamSpecification"]}
        _check_literal(logical_id, kwargs)
        if "KeySchema" not in kwargs or "AttributeDefinitions" not in kwargs:
            raise ValueError(f"{logical_id}: KeySchema and AttributeDefinitions are required")
        definitions[logical_id] = kwargs
    return definitions


def ttl_attributes(template_path: Path) -> dict[str, str]:
    """Logical id -> TTL attribute name, for each table whose template enables TTL."""
    result: dict[str, str] = {}
    for logical_id, properties in _tables(template_path).items():
        spec = properties.get("TimeToLiveSpecification")
        if isinstance(spec, dict) and spec.get("Enabled") is True:
            attribute = spec.get("AttributeName")
            if not isinstance(attribute, str):
                raise ValueError(f"{logical_id}: TimeToLiveSpecification needs an AttributeName")
            result[logical_id] = attribute
    return result


def create_tables(
    client: DynamoDBClient,
    *,
    template_path: Path,
    names: Mapping[str, str],
) -> None:
    """Create every table of the template under `names[logical_id]`, then enable its TTL.

    `names` must name exactly the template's tables (e.g. `LOCAL_TABLE_NAMES`), so a table
    added to the template cannot be silently missing locally. Waits until each table is
    ACTIVE. Raises the client's ResourceInUseException if a table already exists.
    """
    definitions = table_definitions(template_path)
    unknown = sorted(set(names) - set(definitions))
    missing = sorted(set(definitions) - set(names))
    if unknown or missing:
        raise ValueError(
            f"table names do not match {template_path.name}: "
            f"unknown logical ids {unknown}, tables without a name {missing}"
        )
    ttl = ttl_attributes(template_path)
    for logical_id, kwargs in definitions.items():
        table_name = names[logical_id]
        client.create_table(TableName=table_name, **kwargs)
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        if logical_id in ttl:
            client.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl[logical_id]},
            )
