"""Consistent hashing with bounded loads, and the prefix key (backends/affinity.py)."""

from __future__ import annotations

import random
from collections import Counter

from gateway.backends.affinity import BALANCE, BLOCK_SIZE, Ring, bounded_pick, prefix_key

NAMES = ["r0", "r1", "r2"]


def _key(n: int) -> bytes:
    return prefix_key([n] * BLOCK_SIZE) or b""


def _pick(ring: Ring, key: bytes, loads: list[float]) -> int | None:
    return bounded_pick(ring, key, loads=loads, weights=[1, 1, 1], allowed=lambda i: True)


def test_the_ring_is_the_same_in_every_process_and_order_of_building() -> None:
    # Built from names alone (never Python's salted hash()): every instance agrees.
    a, b = Ring(NAMES, [1, 1, 1]), Ring(list(NAMES), [1.0, 1.0, 1.0])
    for n in range(200):
        assert list(a.walk(_key(n))) == list(b.walk(_key(n)))


def test_keys_spread_evenly_and_by_weight() -> None:
    even = Counter(_pick(Ring(NAMES, [1, 1, 1]), _key(n), [0, 0, 0]) for n in range(3000))
    assert all(abs(even[i] - 1000) <= 150 for i in range(3)), even
    ring = Ring(NAMES, [2, 1, 1])
    heavy = Counter(
        bounded_pick(ring, _key(n), loads=[0, 0, 0], weights=[2, 1, 1], allowed=lambda i: True)
        for n in range(3000)
    )
    assert abs(heavy[0] - 1500) <= 200, heavy


def test_a_key_stays_on_its_endpoint_while_it_has_room() -> None:
    ring = Ring(NAMES, [1, 1, 1])
    home = _pick(ring, _key(7), [0, 0, 0])
    assert home is not None
    loads = [3.0, 3.0, 3.0]
    assert _pick(ring, _key(7), loads) == home


def test_a_hot_prefix_spills_to_the_next_endpoint_on_the_ring() -> None:
    ring = Ring(NAMES, [1, 1, 1])
    order = list(ring.walk(_key(7)))
    loads = [0.0, 0.0, 0.0]
    loads[order[0]] = 10  # capacity: ceil(1.5 * 11 / 3) = 6
    assert _pick(ring, _key(7), loads) == order[1]
    loads[order[1]] = 8  # capacity: ceil(1.5 * 19 / 3) = 10: the owner is over, the next not
    assert _pick(ring, _key(7), loads) == order[1]
    loads[order[1]] = 10  # two equally busy and one idle: both within 1.5 x the mean
    assert _pick(ring, _key(7), loads) == order[0]


def test_one_hot_key_never_loads_an_endpoint_above_the_bound() -> None:
    # Every request has the same prefix (one system prompt for everyone) and none ends:
    # the loads stay within ceil(BALANCE x the mean), as the paper bounds them.
    ring = Ring(NAMES, [1, 1, 1])
    loads = [0.0, 0.0, 0.0]
    for _ in range(300):
        chosen = _pick(ring, _key(1), loads)
        assert chosen is not None
        loads[chosen] += 1
    assert max(loads) <= BALANCE * 100 + 1


def test_endpoints_not_allowed_are_skipped_in_ring_order() -> None:
    ring = Ring(NAMES, [1, 1, 1])
    order = list(ring.walk(_key(3)))
    chosen = bounded_pick(
        ring, _key(3), loads=[0, 0, 0], weights=[1, 1, 1], allowed=lambda i: i != order[0]
    )
    assert chosen == order[1]
    none = bounded_pick(ring, _key(3), loads=[0, 0, 0], weights=[1, 1, 1], allowed=lambda i: False)
    assert none is None


def test_the_prefix_key_covers_full_blocks_only() -> None:
    rng = random.Random(2)
    ids = [rng.randrange(50_000) for _ in range(40)]
    assert prefix_key(ids[:15]) is None  # no full block: nothing would be cached
    assert prefix_key(ids[:16]) == prefix_key(ids[:31])  # the partial block is left out
    assert prefix_key(ids[:32]) != prefix_key(ids[:16])
    changed = [ids[0] + 1, *ids[1:]]
    assert prefix_key(changed[:32]) != prefix_key(ids[:32])  # chained from the first block


def test_the_salt_keys_the_same_tokens_apart() -> None:
    ids = list(range(48))
    assert prefix_key(ids, salt="a") != prefix_key(ids, salt="b")
    assert prefix_key(ids, salt="a") == prefix_key(ids, salt="a")


def test_the_tail_keys_apart_prefixes_that_differ_after_the_last_full_block() -> None:
    shared = list(range(32))
    assert prefix_key([*shared, 1]) == prefix_key([*shared, 2])
    assert prefix_key([*shared, 1], tail=True) != prefix_key([*shared, 2], tail=True)
    assert prefix_key(shared, tail=True) == prefix_key(shared)
