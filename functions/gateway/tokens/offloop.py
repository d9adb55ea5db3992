"""A model's tokenizer for code on the event loop: loading (0.1-1 s) or downloading it
runs in a worker thread, once; a loaded one is returned at once."""

from __future__ import annotations

import anyio.to_thread

from gateway.tokens.store import ChatTokenizer, TokenizerStore


async def tokenizer_for(store: TokenizerStore, spec: str) -> ChatTokenizer:
    loaded = store.loaded(spec)
    if loaded is not None:
        return loaded
    return await anyio.to_thread.run_sync(store.get, spec)
