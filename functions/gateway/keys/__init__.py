"""API keys: stored hashed in DynamoDB, checked on every request through a short cache."""

from gateway.keys.apikey import ApiKey, KeyStatus, hash_key, new_secret
from gateway.keys.store import KeyStore

__all__ = ["ApiKey", "KeyStatus", "KeyStore", "hash_key", "new_secret"]
