"""A replica's KV cache as vLLM's V1 engine keeps it (vllm/v1/core/kv_cache_utils.py,
block_pool.py, kv_cache_manager.py), without the tensors: which blocks hold which tokens.

- The prompt is cut into blocks of ``block_size`` tokens; only full blocks are hashed and
  cached. Block i's hash is ``sha256(pickle((parent, tuple(token_ids), extra_keys)))``
  (vLLM's default ``--prefix-caching-hash-algo sha256``), where ``parent`` is block i-1's
  hash, or for the first block ``NONE_HASH`` (``sha256(pickle(PYTHONHASHSEED))`` when a seed
  is set, else 32 random bytes), and ``extra_keys`` is ``None`` or a tuple: here only the
  request's ``cache_salt``, which enters the first block alone (LoRA names and multimodal
  hashes, vLLM's other extra keys, do not exist in the simulator).
- A lookup takes the longest run of leading block hashes found in the cache, but at most
  ``(num_tokens - 1) // block_size`` blocks: with every token cached, vLLM still computes
  the last one to get its logits.
- A cached block whose reference count falls to 0 stays cached in the free queue. Blocks are
  allocated from the queue's head, evicting the hash they held; a request's blocks are
  freed tail first, so the least recently used block (and, among one request's blocks, the
  end of its chain) is evicted first. A hit on a free block takes it out of the queue.
- Block 0 is vLLM's null block, never handed out; usage is ``1 - free / (num_blocks - 1)``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

BlockHash = bytes
_HASH_MEMO_SIZE = 1024


def sha256_pickle(value: object) -> BlockHash:
    """vLLM's ``sha256`` hash function: SHA-256 of the highest-protocol pickle."""
    return hashlib.sha256(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).digest()


def none_hash(seed: str | None) -> BlockHash:
    """The parent hash of every first block (vLLM's ``init_none_hash``)."""
    return os.urandom(32) if seed is None else sha256_pickle(seed)


def hash_block_tokens(
    parent: BlockHash, token_ids: Sequence[int], extra_keys: tuple[object, ...] | None
) -> BlockHash:
    return sha256_pickle((parent, tuple(token_ids), extra_keys))


def block_hashes(
    token_ids: Sequence[int],
    *,
    block_size: int,
    root: BlockHash,
    cache_salt: str | None = None,
    known: Sequence[BlockHash] = (),
) -> list[BlockHash]:
    """The chained hashes of the full blocks of ``token_ids``; ``known``: the hashes of its
    first blocks, already computed."""
    hashes = list(known)
    parent = hashes[-1] if hashes else root
    for start in range(len(hashes) * block_size, len(token_ids) - block_size + 1, block_size):
        extra = (cache_salt,) if start == 0 and cache_salt else None
        parent = hash_block_tokens(parent, token_ids[start : start + block_size], extra)
        hashes.append(parent)
    return hashes


@dataclass(eq=False)
class Block:
    block_id: int
    ref_cnt: int = 0
    block_hash: BlockHash | None = None


class BlockPool:
    """Blocks, the free queue in eviction order, and the hash -> cached block map."""

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 2:
            raise ValueError("num_gpu_blocks must be at least 2 (block 0 is the null block)")
        self.num_blocks = num_blocks
        self.blocks = [Block(i) for i in range(num_blocks)]
        # An OrderedDict is the doubly linked list of vLLM's FreeKVCacheBlockQueue: O(1)
        # popleft, append and removal from the middle.
        self._free: OrderedDict[int, Block] = OrderedDict((b.block_id, b) for b in self.blocks)
        self._cached: dict[BlockHash, Block] = {}
        self._free.popitem(last=False)  # the null block

    @property
    def num_free(self) -> int:
        return len(self._free)

    def usage(self) -> float:
        return 1.0 - self.num_free / (self.num_blocks - 1)

    def cached(self, block_hash: BlockHash) -> Block | None:
        return self._cached.get(block_hash)

    def allocate(self, n: int) -> list[Block]:
        if n > self.num_free:
            raise ValueError(f"cannot get {n} free blocks from the pool")
        out = []
        for _ in range(n):
            _, block = self._free.popitem(last=False)
            if block.block_hash is not None:  # evict what it held
                if self._cached.get(block.block_hash) is block:
                    del self._cached[block.block_hash]
                block.block_hash = None
            block.ref_cnt = 1
            out.append(block)
        return out

    def touch(self, blocks: Iterable[Block]) -> None:
        for block in blocks:
            if block.ref_cnt == 0:
                del self._free[block.block_id]
            block.ref_cnt += 1

    def cache(self, block: Block, block_hash: BlockHash) -> None:
        if block.block_hash is None:
            block.block_hash = block_hash
            self._cached.setdefault(block_hash, block)

    def free(self, ordered: Iterable[Block]) -> None:
        """Release blocks, the first to be evicted first."""
        for block in ordered:
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self._free[block.block_id] = block


@dataclass
class Allocation:
    """One sequence's blocks: the cache hits first, then its own."""

    blocks: list[Block]
    hashes: list[BlockHash]
    cached_tokens: int
    freed: bool = field(default=False)


class KVCache:
    """A replica's prefix cache: lookups, allocation and freeing of whole sequences, and
    vLLM's prefix-cache counters (``queries``: prompt tokens looked up, ``hits``: tokens
    found)."""

    def __init__(
        self,
        *,
        num_blocks: int,
        block_size: int = 16,
        enable_caching: bool = True,
        hash_seed: str | None = None,
    ) -> None:
        if block_size < 1:
            raise ValueError("block_size must be at least 1")
        self.pool = BlockPool(num_blocks)
        self.block_size = block_size
        self.enable_caching = enable_caching
        self.root = none_hash(hash_seed)
        self.queries = 0
        self.hits = 0
        self._memo: OrderedDict[tuple[tuple[int, ...], str | None], list[BlockHash]] = OrderedDict()

    @property
    def usable_blocks(self) -> int:
        return self.pool.num_blocks - 1

    def hashes(
        self, token_ids: Sequence[int], cache_salt: str | None, known: Sequence[BlockHash] = ()
    ) -> list[BlockHash]:
        if not self.enable_caching:
            return []
        if known:
            return block_hashes(
                token_ids,
                block_size=self.block_size,
                root=self.root,
                cache_salt=cache_salt,
                known=known,
            )
        # a prompt's hashes, memoized: vLLM spends this CPU per request, the simulator need not
        key = (tuple(token_ids), cache_salt)
        found = self._memo.get(key)
        if found is None:
            found = block_hashes(
                token_ids, block_size=self.block_size, root=self.root, cache_salt=cache_salt
            )
            self._memo[key] = found
            if len(self._memo) > _HASH_MEMO_SIZE:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return list(found)

    def longest_hit(self, hashes: Sequence[BlockHash], num_tokens: int) -> list[Block]:
        most = max(num_tokens - 1, 0) // self.block_size
        hit: list[Block] = []
        for block_hash in hashes[:most]:
            block = self.pool.cached(block_hash)
            if block is None:
                break
            hit.append(block)
        return hit

    def blocks_needed(self, num_tokens: int) -> int:
        return min(-(-num_tokens // self.block_size), self.usable_blocks)

    def allocate(
        self, hashes: Sequence[BlockHash], num_tokens: int, total_tokens: int
    ) -> Allocation:
        """Take the cache hits and new blocks for the whole sequence, and cache the prompt's
        full blocks at once (vLLM caches blocks as they are computed, so a concurrent request
        with the same prefix hits them)."""
        hit = self.longest_hit(hashes, num_tokens)
        self.pool.touch(hit)
        # the scheduler admits a sequence that does not fit only when it runs alone: it then
        # gets every free block (vLLM would refuse to start with such a max_model_len)
        want = max(self.blocks_needed(total_tokens) - len(hit), 0)
        new = self.pool.allocate(min(want, self.pool.num_free))
        blocks = hit + new
        for block, block_hash in zip(blocks[len(hit) :], hashes[len(hit) :], strict=False):
            self.pool.cache(block, block_hash)
        cached_tokens = len(hit) * self.block_size
        self.queries += num_tokens
        self.hits += cached_tokens
        return Allocation(blocks=blocks, hashes=list(hashes), cached_tokens=cached_tokens)

    def free(
        self, allocation: Allocation, computed: Sequence[int] = (), salt: str | None = None
    ) -> None:
        """Release a sequence's blocks, tail first. ``computed``: every token whose KV was
        computed (prompt and generated tokens but the last); its full blocks are cached."""
        if allocation.freed:
            return
        allocation.freed = True
        if self.enable_caching and len(computed) >= self.block_size:
            full = self.hashes(computed, salt, known=allocation.hashes)
            for block, block_hash in zip(allocation.blocks, full, strict=False):
                self.pool.cache(block, block_hash)
        self.pool.free(reversed(allocation.blocks))
