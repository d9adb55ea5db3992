"""Stored responses (`store`, `previous_response_id`) for the Responses API: the
conversation state that vLLM keeps in one server's memory, kept here in DynamoDB, scoped
to the key's owner (store.py)."""

from gateway.conversations.store import (
    ConversationStore,
    ConversationTooLargeError,
    StoredResponse,
    previous_response_not_found,
    response_not_found,
)

__all__ = [
    "ConversationStore",
    "ConversationTooLargeError",
    "StoredResponse",
    "previous_response_not_found",
    "response_not_found",
]
