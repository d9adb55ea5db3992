"""vLLM's Responses store (``response_store`` and ``msg_store`` in responses/serving.py),
kept as vLLM keeps it: in this one process's memory. Another replica, or a restart, knows
none of it. vLLM never evicts; gpusim keeps the newest ``limit`` responses."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoredResponse:
    response: dict[str, Any]  # the response object, as returned
    messages: list[dict[str, Any]]  # the chat messages its prompt was rendered from


class ResponsesStore:
    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()

    def get(self, response_id: str) -> StoredResponse | None:
        return self._items.get(response_id)

    def put(self, *, response: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self._items[str(response["id"])] = StoredResponse(response=response, messages=messages)
        if len(self._items) > self._limit:
            self._items.popitem(last=False)
