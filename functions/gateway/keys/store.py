"""The keys table: items keyed by the secret's hash, indexed by key_id and owner."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.aws import botocore_errors, items
from gateway.keys.apikey import ApiKey, KeyStatus, hash_key, new_key_id, new_secret
from gateway.keys.secret import is_well_formed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY_ID_INDEX = "key_id-index"
OWNER_INDEX = "owner-index"


class KeyNotFoundError(LookupError):
    pass


class KeyStore:
    def __init__(self, *, client: DynamoDBClient, table: str) -> None:
        self._client = client
        self._table = table

    def lookup(self, *, secret: str) -> ApiKey | None:
        """The key whose secret this is, or None. One strongly consistent GetItem."""
        with botocore_errors("DynamoDB"):
            response = self._client.get_item(
                TableName=self._table,
                Key={"key_hash": {"S": hash_key(secret)}},
                ConsistentRead=True,
            )
        item = response.get("Item")
        return ApiKey.from_item(item) if item else None

    def create(
        self,
        *,
        name: str,
        owner: str,
        models: tuple[str, ...] = (),
        expires_at: datetime | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        monthly_tokens: int | None = None,
        priority: int | None = None,
        secret: str | None = None,
        mac_secret_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key; returns it with its secret (which is never stored). Without
        `secret`, a checksummed (sk-gw2_) one is made; the CLI passes one minted by
        KeyMac.mint() with the id of the MAC secret that tagged it."""
        if secret and not is_well_formed(secret):  # it could never authenticate
            raise ValueError("malformed secret: use gateway.keys.new_secret()")
        secret = secret or new_secret()
        key = ApiKey(
            key_id=new_key_id(),
            key_hash=hash_key(secret),
            name=name,
            owner=owner,
            expires_at=expires_at,
            models=tuple(sorted(set(models))),
            rpm=rpm,
            tpm=tpm,
            monthly_tokens=monthly_tokens,
            priority=priority,
            mac_secret_id=mac_secret_id,
        )
        with botocore_errors("DynamoDB"):
            self._client.put_item(
                TableName=self._table,
                Item=key.to_item(),
                ConditionExpression="attribute_not_exists(key_hash)",
            )
        return key, secret

    def get(self, *, key_id: str) -> ApiKey:
        with botocore_errors("DynamoDB"):
            response = self._client.query(
                TableName=self._table,
                IndexName=KEY_ID_INDEX,
                KeyConditionExpression="key_id = :k",
                ExpressionAttributeValues={":k": {"S": key_id}},
            )
        items = response.get("Items", [])
        if not items:
            raise KeyNotFoundError(key_id)
        return ApiKey.from_item(items[0])

    def list(self, *, owner: str | None = None) -> list[ApiKey]:
        kwargs: dict[str, Any] = {"TableName": self._table}
        if owner is not None:
            kwargs |= {
                "IndexName": OWNER_INDEX,
                "KeyConditionExpression": "#o = :o",
                "ExpressionAttributeNames": {"#o": "owner"},
                "ExpressionAttributeValues": {":o": {"S": owner}},
            }
        found = items(self._client, "query" if owner is not None else "scan", **kwargs)
        keys = [ApiKey.from_item(i) for i in found]
        return sorted(keys, key=lambda k: k.created_at)

    def revoke(self, *, key_id: str) -> ApiKey:
        key = self.get(key_id=key_id)
        with botocore_errors("DynamoDB"):
            self._client.update_item(
                TableName=self._table,
                Key={"key_hash": {"S": key.key_hash}},
                UpdateExpression="SET #s = :r",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":r": {"S": KeyStatus.REVOKED.value}},
            )
        return replace(key, status=KeyStatus.REVOKED)

    def save(self, *, key: ApiKey) -> None:
        """Overwrite a key's settings (limits, models, expiry) in place."""
        with botocore_errors("DynamoDB"):
            self._client.put_item(
                TableName=self._table,
                Item=key.to_item(),
                ConditionExpression="attribute_exists(key_hash)",
            )

    def rotate(
        self, *, key_id: str, secret: str | None = None, mac_secret_id: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new secret for the same key_id (`secret`, as for create, or a checksummed one).
        Lookups refuse the old secret from now on; a gateway instance that cached it
        accepts it for up to KEY_CACHE_TTL_SECONDS."""
        if secret and not is_well_formed(secret):
            raise ValueError("malformed secret: use KeyMac.mint()")
        key = self.get(key_id=key_id)
        secret = secret or new_secret()
        rotated = replace(key, key_hash=hash_key(secret), mac_secret_id=mac_secret_id)
        with botocore_errors("DynamoDB"):
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": rotated.to_item(),
                            "ConditionExpression": "attribute_not_exists(key_hash)",
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": {"key_hash": {"S": key.key_hash}},
                            "ConditionExpression": "attribute_exists(key_hash)",
                        }
                    },
                ]
            )
        return rotated, secret
