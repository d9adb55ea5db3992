"""gpusim's KV cache against vLLM's documented scheme (docs/design/prefix_caching.md,
vllm/v1/core/kv_cache_utils.py): hash(parent hash, block token ids, extra keys) over full
blocks, with the default hash function sha256 over a highest-protocol pickle.

The expected hashes are worked out by hand: the pickle bytes are written opcode by opcode
below (and checked once against the pickle module), then hashed with hashlib. Nothing here
calls the simulator to compute what the simulator should return."""

from __future__ import annotations

import hashlib
import pickle
import struct

from gpusim.kvcache import KVCache, block_hashes, none_hash

ROOT = bytes(range(32))  # a fixed NONE_HASH for the examples


def _frame(body: bytes) -> bytes:
    # PROTO 5, then one FRAME (0x95, 8-byte little-endian length), the body, STOP
    return b"\x80\x05\x95" + struct.pack("<Q", len(body) + 1) + body + b"."


def _short_str(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw + b"\x94"  # SHORT_BINUNICODE, MEMOIZE


def pickled_block(parent: bytes, tokens: tuple[int, ...], salt: str | None) -> bytes:
    """pickle.dumps((parent, tokens, extra_keys), protocol=5) by hand, for token ids < 256:
    SHORT_BINBYTES parent, MARK BININT1... TUPLE, then None or a 1-tuple (the salt),
    TUPLE3; each container MEMOIZEd."""
    body = b"C" + bytes([len(parent)]) + parent + b"\x94"
    body += b"(" + b"".join(b"K" + bytes([t]) for t in tokens) + b"t\x94"
    body += b"N" if salt is None else _short_str(salt) + b"\x85\x94"
    body += b"\x87\x94"
    return _frame(body)


def expected_hash(parent: bytes, tokens: tuple[int, ...], salt: str | None = None) -> bytes:
    return hashlib.sha256(pickled_block(parent, tokens, salt)).digest()


def test_the_hand_pickle_is_python_pickle() -> None:
    tokens = tuple(range(1, 17))
    for extra in (None, ("tenant-a",)):
        salt = extra[0] if extra else None
        assert pickled_block(ROOT, tokens, salt) == pickle.dumps((ROOT, tokens, extra), 5)


def test_block_hash_chain_matches_the_hand_worked_example() -> None:
    tokens = list(range(1, 41))  # 40 tokens: two full blocks of 16, 8 left over (not hashed)
    first = expected_hash(ROOT, tuple(range(1, 17)))
    second = expected_hash(first, tuple(range(17, 33)))
    assert block_hashes(tokens, block_size=16, root=ROOT) == [first, second]


def test_cache_salt_enters_the_first_block_only() -> None:
    tokens = list(range(1, 33))
    first = expected_hash(ROOT, tuple(range(1, 17)), "tenant-a")
    second = expected_hash(first, tuple(range(17, 33)))  # no extra keys after block 0
    salted = block_hashes(tokens, block_size=16, root=ROOT, cache_salt="tenant-a")
    assert salted == [first, second]
    plain = block_hashes(tokens, block_size=16, root=ROOT)
    assert not set(salted) & set(plain)  # the chain carries the salt into every block


def test_none_hash_is_the_seed_hashed() -> None:
    # vLLM: NONE_HASH = hash_fn(PYTHONHASHSEED) when it is set
    assert none_hash("0") == hashlib.sha256(_frame(_short_str("0"))).digest()
    assert none_hash(None) != none_hash(None)  # else 32 random bytes


def _ids(start: int, n: int) -> list[int]:
    return list(range(start, start + n))


def test_a_repeated_prompt_hits_its_full_blocks_but_the_last_token() -> None:
    kv = KVCache(num_blocks=64, block_size=16, hash_seed="0")
    prompt = _ids(1, 48)  # exactly 3 blocks
    first = kv.allocate(kv.hashes(prompt, None), 48, 50)
    assert first.cached_tokens == 0
    kv.free(first, prompt)
    again = kv.allocate(kv.hashes(prompt, None), 48, 50)
    # all 48 are cached, but vLLM recomputes the last token: at most (48 - 1) // 16 blocks
    assert again.cached_tokens == 32
    longer = kv.allocate(kv.hashes([*prompt, 99], None), 49, 60)
    assert longer.cached_tokens == 48
    assert (kv.queries, kv.hits) == (48 + 48 + 49, 0 + 32 + 48)


def test_generated_tokens_are_cached_when_the_sequence_ends() -> None:
    kv = KVCache(num_blocks=64, block_size=4, hash_seed="0")
    prompt, generated = _ids(1, 6), _ids(100, 5)
    allocation = kv.allocate(kv.hashes(prompt, None), 6, 11)
    kv.free(allocation, [*prompt, *generated[:-1]])  # the last token's KV is never computed
    follow_up = [*prompt, *generated[:-1], 7, 8, 9]  # next turn: the answer, then more
    hit = kv.allocate(kv.hashes(follow_up, None), len(follow_up), len(follow_up) + 1)
    assert hit.cached_tokens == 8  # two full blocks of 4: prompt and answer tokens


def test_free_blocks_are_evicted_least_recently_used_first() -> None:
    kv = KVCache(num_blocks=7, block_size=4, hash_seed="0")  # 6 usable blocks
    a, b, c = _ids(1, 9), _ids(50, 9), _ids(100, 9)  # 2 full blocks each (+1 token)

    def run(prompt: list[int]) -> int:
        allocation = kv.allocate(kv.hashes(prompt, None), 9, 9)  # 3 blocks
        kv.free(allocation, prompt)
        return allocation.cached_tokens

    run(a)
    run(b)  # the cache is full: a's and b's blocks wait in the free queue, a's first
    assert run(a) == 8  # a is hit, and so becomes the most recently used
    run(c)  # needs 3 blocks: evicts b's (least recently used), not a's
    assert run(a) == 8
    assert run(b) == 0


def test_two_salts_never_share_a_block_and_one_salt_does() -> None:
    kv = KVCache(num_blocks=64, block_size=16, hash_seed="0")
    prompt = _ids(1, 40)
    for salt, expected in (("owner-a", 0), ("owner-b", 0), ("owner-a", 32), (None, 0)):
        allocation = kv.allocate(kv.hashes(prompt, salt), 40, 41)
        assert allocation.cached_tokens == expected, salt
        kv.free(allocation, prompt, salt)
    salted_a = set(kv.hashes(prompt, "owner-a"))
    salted_b = set(kv.hashes(prompt, "owner-b"))
    assert not salted_a & salted_b


def test_usage_counts_blocks_in_use_without_the_null_block() -> None:
    kv = KVCache(num_blocks=11, block_size=4, hash_seed="0")
    allocation = kv.allocate(kv.hashes(_ids(1, 8), None), 8, 20)  # 5 blocks of 10
    assert kv.pool.usage() == 0.5
    kv.free(allocation, _ids(1, 8))
    assert kv.pool.usage() == 0.0  # cached but free blocks count as free, as in vLLM
