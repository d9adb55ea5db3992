"""Prefix affinity without a shared index: consistent hashing with bounded loads.

A conversation's stable prefix (its leading full blocks of 16 token ids, chained as vLLM
hashes them for its prefix cache) is hashed to a point on a ring of the model's endpoints.
The request goes to the first endpoint clockwise from that point whose load is within
`c` times the mean (BALANCE) (Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded
Loads", 2018): the same prefix reaches the same replica from every Lambda instance, since
the ring is a pure function of the endpoints' names and weights, and a hot prefix spills
to the next replica on the ring instead of overloading one. docs/ROUTING.md.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

# vLLM's default --block-size: only full blocks are hashed and cached.
BLOCK_SIZE = 16
# The key looks at most this many leading blocks: a prompt's stable prefix (system prompt
# and first turn) rarely needs more to tell conversations apart, and the hash stays cheap.
MAX_KEY_BLOCKS = 256
# Points per unit of weight on the ring: enough that three endpoints split keys evenly
# (the standard deviation of a share falls as 1/sqrt(points)).
POINTS_PER_WEIGHT = 160
# The bound: an endpoint takes a key while its load is below c x the mean load (counting
# the new request). Not the paper's 1.25 (a web cache's): a spill costs the GPU the whole
# prompt's prefill, while a few more sequences in a replica's batch cost it a few percent
# of decode speed, and at the few requests per replica of a real batch (3 to 6) 1.25
# allowed one above the mean, which arrival noise alone exceeds: 13-20 % of a bench
# run's turns spilled, at 1.5 about 7 % (docs/BENCHMARKS.md, "Routing by what the GPUs
# hold"). A hot key still spreads, and a slowed replica still sheds load.
BALANCE = 1.5


@dataclass(frozen=True)
class RouteHint:
    """What routing may use of the request: the key of its stable prefix (None: no
    affinity; the request goes by weighted power of two choices, as before)."""

    prefix: bytes | None = None


NO_HINT = RouteHint()


def prefix_key(
    token_ids: Sequence[int],
    *,
    salt: str | None = None,
    tail: bool = False,
    block_size: int = BLOCK_SIZE,
) -> bytes | None:
    """The chained hash of the leading full blocks of `token_ids` (at most MAX_KEY_BLOCKS),
    each block's hash taking its parent's, as vLLM's prefix cache chains them, with the
    cache salt in the first; None when not one block is full (nothing would be cached).
    `tail`: the ids after the last full block (within the limit) are hashed in last, so two
    conversations whose stable prefixes differ only there (a short first question after
    a shared system prompt) still have keys of their own."""
    blocks = min(len(token_ids) // block_size, MAX_KEY_BLOCKS)
    if blocks == 0:
        return None
    digest = hashlib.blake2b((salt or "").encode(), digest_size=16).digest()
    for index in range(blocks):
        chunk = array("I", token_ids[index * block_size : (index + 1) * block_size])
        digest = hashlib.blake2b(digest + chunk.tobytes(), digest_size=16).digest()
    rest = token_ids[blocks * block_size : MAX_KEY_BLOCKS * block_size] if tail else ()
    if rest:
        digest = hashlib.blake2b(digest + array("I", rest).tobytes(), digest_size=16).digest()
    return digest


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Ring:
    """The endpoints' points on the ring: a pure function of their names and weights, so
    every process builds the same one."""

    def __init__(self, names: Sequence[str], weights: Sequence[float]) -> None:
        points: list[tuple[int, int]] = []
        for index, (name, weight) in enumerate(zip(names, weights, strict=True)):
            count = max(1, round(POINTS_PER_WEIGHT * weight))
            points.extend((_point(f"{name}#{n}".encode()), index) for n in range(count))
        points.sort()
        self._points = [p for p, _ in points]
        self._owners = [i for _, i in points]
        self.size = len(names)

    def walk(self, key: bytes) -> Iterator[int]:
        """Endpoint indices in ring order from the key's point, each once."""
        start = bisect.bisect_left(self._points, _point(key))
        seen: set[int] = set()
        total = len(self._owners)
        for step in range(total):
            owner = self._owners[(start + step) % total]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == self.size:
                    return


def bounded_pick(
    ring: Ring,
    key: bytes,
    *,
    loads: Sequence[float],
    weights: Sequence[float],
    allowed: Callable[[int], bool],
    balance: float = BALANCE,
) -> int | None:
    """The first allowed endpoint on the ring from `key` whose load, with this request,
    stays within `balance` x its weighted share of the total (the paper's capacity
    ceil(c * (m + 1) / n), weighted); the least loaded allowed one if none does."""
    candidates = [i for i in ring.walk(key) if allowed(i)]
    if not candidates:
        return None
    total_weight = sum(weights[i] for i in candidates) or 1.0
    total = sum(loads[i] for i in candidates) + 1
    for index in candidates:
        capacity = math.ceil(balance * total * weights[index] / total_weight)
        if loads[index] + 1 <= capacity:
            return index
    return min(candidates, key=lambda i: loads[i] / max(weights[i], 1e-9))
