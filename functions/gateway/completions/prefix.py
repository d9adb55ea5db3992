"""A completions request's route hint: the key of its prompt's leading blocks.

A text prompt has no structure to mark a stable part (chat has its first user message),
so the key is made from a fixed window: the prompt's leading full 16-token blocks up to
KEY_TOKENS (backends/affinity.py, prefix_key), from its token ids (given, or encoded from
the head of its text only). A prompt that grows (a conversation kept as text, a file
being completed) keeps its key once it is past the window; prompts that share a longer
preamble (few-shot examples) share a key, and bounded loads spread them. Several prompts
in one request run on one replica: the first one's key routes them.

Embeddings send no key. vLLM caches prefixes for a pooling model only when its attention
is causal and it pools the last token (or every token): encoder-only models (BERT, BGE,
E5) and MEAN or CLS pooling never reuse a block (vllm/config/model.py,
`is_prefix_caching_supported`), and the gateway cannot tell which kind a model is. Where
the cache does apply, embedding inputs are independent texts that share at most a short
instruction, which every replica caches after its first request. docs/ROUTING.md.
"""

from __future__ import annotations

import logging

from gateway.backends.affinity import NO_HINT, RouteHint, prefix_key
from gateway.completions.protocol import CompletionRequest
from gateway.prompts import one_by_one
from gateway.tokens import ChatTokenizer

logger = logging.getLogger(__name__)

# The window the key covers: 16 blocks. Long enough to tell apart prompts that begin
# differently, short enough that a growing prompt soon has a key it keeps.
KEY_TOKENS = 256


def route_hint(tokenizer: ChatTokenizer, request: CompletionRequest) -> RouteHint:
    """The request's hint; NO_HINT when its first prompt fills no block. Encoding at most
    the text's first 2 KB (KEY_TOKENS x 8 characters) costs well under a millisecond."""
    texts, token_ids = one_by_one(request.prompt)
    try:
        if texts:
            ids = tokenizer.leading_ids(texts[0], tokens=KEY_TOKENS)
        else:
            ids = token_ids[0][:KEY_TOKENS]
    except Exception:  # a hint only steers: its failure must never fail the request
        logger.warning("prefix key failed; routing without it", exc_info=True)
        return NO_HINT
    key = prefix_key(ids)
    return NO_HINT if key is None else RouteHint(prefix=key)
