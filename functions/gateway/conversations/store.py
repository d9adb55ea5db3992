"""The responses table: each stored response's conversation, scoped to its key's owner.

Table design (template.yaml `ResponsesTable`): partition key `response_id` (S), sort key
`part` (N). A response is one item, or several when its data is large:

    response_id  part  owner  created_at  expires_at  parts  data
    resp_...     0     alice  1765000000  1767592000  2      <zlib JSON, bytes 0..N>
    resp_...     1                        1767592000         <bytes N..>

- `data` is zlib-compressed JSON `{"input": [...], "output": [...], "response": {...}}`:
  `input` is the whole conversation up to this turn (the expanded history plus the
  turn's own input, as OpenAI's `input_items` lists it), `output` the turn's output
  items, `response` the response object `GET /v1/responses/{id}` returns. So the next
  turn's history is one response's `input + output`: one Query, however long the chain.
- Parts keep each item under DynamoDB's 400 KB item limit; a response's parts are
  written in one transaction (all or none) and read with one strongly consistent Query
  (a follow-up turn may come milliseconds after the write).
- Items are spread over partitions by response id (random), never one partition per
  owner. `owner` is checked on every read and delete: another owner's response is
  reported exactly as an unknown one (None / False), so ids leak nothing.
- `expires_at` is DynamoDB's TTL (`RESPONSES_RETENTION_DAYS` after the write). TTL
  deletion lags, and moto never does it, so reads also drop expired items themselves.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from gateway.aws import ConditionFailed, botocore_errors, items
from gateway.errors import InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DAY = 86_400
# Bytes of compressed data per item: under the 400 KB item limit with the other
# attributes; a transaction takes at most 100 items and 4 MB.
PART_BYTES = 350_000
MAX_PARTS = 10
# DynamoDB's BatchWriteItem limit.
_BATCH = 25


class ConversationTooLargeError(InvalidRequestError):
    """A conversation whose stored form would exceed MAX_PARTS parts."""

    code = "conversation_too_large"


def previous_response_not_found(response_id: str) -> NotFoundError:
    """OpenAI's 404 for an unknown (or another owner's) previous_response_id."""
    return NotFoundError(
        f"Previous response with id '{response_id}' not found.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def response_not_found(response_id: str) -> NotFoundError:
    """OpenAI's 404 for `GET` / `DELETE /v1/responses/{id}` of an unknown (or another
    owner's) response."""
    return NotFoundError(
        f"No response found with id '{response_id}'.",
        param="response_id",
        code="response_not_found",
    )


@dataclass(frozen=True)
class StoredResponse:
    response_id: str
    owner: str
    created_at: int
    input_items: list[dict[str, Any]] = field(default_factory=list)
    output_items: list[dict[str, Any]] = field(default_factory=list)
    response: dict[str, Any] | None = None

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """The items a follow-up turn continues from: this turn's input and output."""
        return [*self.input_items, *self.output_items]


class ConversationStore:
    def __init__(
        self,
        *,
        client: DynamoDBClient,
        table: str,
        retention_days: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table
        self._retention = retention_days * DAY
        self._clock = clock

    def put(
        self,
        *,
        response_id: str,
        owner: str,
        input_items: Sequence[Mapping[str, Any]],
        output_items: Sequence[Mapping[str, Any]],
        response: Mapping[str, Any] | None = None,
    ) -> None:
        """Store a response: `input_items` the whole conversation input of this turn
        (expand()'s history plus the turn's own input), `output_items` its output.
        One PutItem, or one transaction for a large conversation; a response id is
        written once (a second put of the same id is a ConditionFailed)."""
        data = zlib.compress(
            orjson.dumps(
                {"input": list(input_items), "output": list(output_items), "response": response}
            )
        )
        chunks = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
        if len(chunks) > MAX_PARTS:
            raise ConversationTooLargeError(
                "This conversation is too long to store; start a new one (without "
                "previous_response_id) or send it with store: false.",
                param="input",
            )
        self._write(
            _part_items(
                chunks,
                response_id=response_id,
                owner=owner,
                now=int(self._clock()),
                retention=self._retention,
            )
        )

    def _write(self, puts: Sequence[dict[str, Any]]) -> None:
        """The parts, all or none, each only where no part of that response stands."""
        condition = "attribute_not_exists(response_id)"
        with botocore_errors("DynamoDB"):
            if len(puts) == 1:
                self._client.put_item(
                    TableName=self._table, Item=puts[0], ConditionExpression=condition
                )
            else:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self._table,
                                "Item": item,
                                "ConditionExpression": condition,
                            }
                        }
                        for item in puts
                    ]
                )

    def get(self, *, response_id: str, owner: str) -> StoredResponse | None:
        """The owner's stored response, or None: unknown, expired and another owner's
        alike. One strongly consistent Query."""
        found = list(
            items(
                self._client,
                "query",
                TableName=self._table,
                KeyConditionExpression="response_id = :id",
                ExpressionAttributeValues={":id": {"S": response_id}},
                ConsistentRead=True,
            )
        )
        if not found:
            return None
        head = found[0]
        if (
            int(head.get("part", {}).get("N", "-1")) != 0
            or head.get("owner", {}).get("S") != owner
            or int(head["expires_at"]["N"]) <= self._clock()
            or int(head["parts"]["N"]) != len(found)
        ):
            return None
        data = orjson.loads(zlib.decompress(b"".join(item["data"]["B"] for item in found)))
        return StoredResponse(
            response_id=response_id,
            owner=owner,
            created_at=int(head["created_at"]["N"]),
            input_items=data["input"],
            output_items=data["output"],
            response=data.get("response"),
        )

    def expand(self, *, previous_response_id: str, owner: str) -> list[dict[str, Any]]:
        """The conversation a turn naming `previous_response_id` continues: the previous
        response's input and output items, in order. A 404 (OpenAI's
        `previous_response_not_found`) when the owner has no such response."""
        stored = self.get(response_id=previous_response_id, owner=owner)
        if stored is None:
            raise previous_response_not_found(previous_response_id)
        return stored.conversation

    def delete(self, *, response_id: str, owner: str) -> bool:
        """Delete the owner's stored response; False when there is none (unknown,
        expired, or another owner's: nothing is deleted)."""
        try:
            with botocore_errors("DynamoDB"):
                self._client.delete_item(
                    TableName=self._table,
                    Key={"response_id": {"S": response_id}, "part": {"N": "0"}},
                    ConditionExpression="#owner = :owner AND expires_at > :now",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={
                        ":owner": {"S": owner},
                        ":now": {"N": str(int(self._clock()))},
                    },
                )
        except ConditionFailed:
            return False
        # The other parts: without part 0 they are unreadable already; one left behind by
        # a failed batch expires with its TTL.
        rest: list[Any] = [
            {"DeleteRequest": {"Key": {"response_id": item["response_id"], "part": item["part"]}}}
            for item in items(
                self._client,
                "query",
                TableName=self._table,
                KeyConditionExpression="response_id = :id AND part > :zero",
                ExpressionAttributeValues={":id": {"S": response_id}, ":zero": {"N": "0"}},
                ProjectionExpression="response_id, part",
                ConsistentRead=True,
            )
        ]
        for start in range(0, len(rest), _BATCH):
            with botocore_errors("DynamoDB"):
                self._client.batch_write_item(
                    RequestItems={self._table: rest[start : start + _BATCH]}
                )
        return True


def _part_items(
    chunks: Sequence[bytes], *, response_id: str, owner: str, now: int, retention: int
) -> list[dict[str, Any]]:
    """The table items of a stored response's parts; the first carries the owner, the
    creation time and the number of parts."""
    expires = str(now + retention)
    puts: list[dict[str, Any]] = []
    for number, chunk in enumerate(chunks):
        item: dict[str, Any] = {
            "response_id": {"S": response_id},
            "part": {"N": str(number)},
            "expires_at": {"N": expires},
            "data": {"B": chunk},
        }
        if number == 0:
            item["owner"] = {"S": owner}
            item["created_at"] = {"N": str(now)}
            item["parts"] = {"N": str(len(chunks))}
        puts.append(item)
    return puts
