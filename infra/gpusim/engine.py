"""One model's simulated engine: vLLM's scheduler, reduced to what a router can observe.

As vllm/v1/core/sched/scheduler.py: at most ``max_num_seqs`` sequences run at once; the
others wait in a queue served first come first served, or with ``--scheduling-policy
priority`` by ``(priority, arrival)`` (lower priority first). The head of the queue waits
while it does not fit (no sequence behind it overtakes it), either for a batch slot or for
KV-cache blocks. A request with ``n`` choices is ``n`` sequences, all admitted together.

Time, per request: ``ttft = sim ttft_ms + prefill_ms_per_token x uncached prompt tokens``
(cached blocks cost nothing to prefill), then each further token takes ``tpot_ms +
decode_ms_per_seq x (running sequences - 1)``: a decode step grows with the batch.

Simplifications (documented in gpusim's module docstring): a sequence's blocks (prompt and
its whole planned generation) are taken at admission, so nothing is ever preempted; vLLM
allocates as it generates and preempts when it runs out. A long prefill does not slow the
other sequences' decode steps (vLLM's chunked prefill shares steps).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from gpusim.kvcache import Allocation, BlockHash, KVCache

SCHEDULING_POLICIES = ("fcfs", "priority")


@dataclass(frozen=True)
class EngineConfig:
    """vLLM's defaults: ``--max-num-seqs 256``, ``--block-size 16``, prefix caching on,
    ``--scheduling-policy fcfs``. ``num_gpu_blocks`` stands for what vLLM profiles from GPU
    memory (``--num-gpu-blocks-override``)."""

    max_num_seqs: int = 256
    scheduling_policy: str = "fcfs"
    num_gpu_blocks: int = 8192
    block_size: int = 16
    enable_prefix_caching: bool = True
    hash_seed: str | None = None
    prefill_ms_per_token: float = 0.0
    decode_ms_per_seq: float = 0.0

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be at least 1")
        if self.scheduling_policy not in SCHEDULING_POLICIES:
            raise ValueError(f"scheduling_policy must be one of {SCHEDULING_POLICIES}")
        if self.prefill_ms_per_token < 0 or self.decode_ms_per_seq < 0:
            raise ValueError("prefill_ms_per_token and decode_ms_per_seq must be >= 0")


@dataclass(frozen=True)
class SeqSpec:
    """One sequence to run: the prompt's token ids (hashed for the prefix cache), its
    counted length (media placeholders included) and how many tokens it will generate."""

    prompt_ids: Sequence[int]
    prompt_tokens: int
    output_tokens: int


@dataclass
class Admission:
    """Admitted sequences: their blocks, cached tokens and the prefill they cost."""

    specs: list[SeqSpec]
    allocations: list[Allocation]
    cache_salt: str | None
    queued_seconds: float
    cached_tokens: list[int]
    prefill_seconds: float
    released: bool = False


@dataclass(order=True)
class _Waiting:
    key: tuple[int, int]
    specs: list[SeqSpec] = field(compare=False)
    hashes: list[list[BlockHash]] = field(compare=False)
    cache_salt: str | None = field(compare=False)
    arrival: float = field(compare=False)
    future: asyncio.Future[Admission] = field(compare=False)


class Engine:
    """The batch, the waiting queue and the KV cache of one served model."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.kv = KVCache(
            num_blocks=config.num_gpu_blocks,
            block_size=config.block_size,
            enable_caching=config.enable_prefix_caching,
            hash_seed=config.hash_seed,
        )
        self.running = 0
        self._queue: list[_Waiting] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(len(w.specs) for w in self._queue if not w.future.done())

    def validate_priority(self, priority: int) -> str | None:
        """vLLM's refusal of a priority without priority scheduling (an HTTP 400)."""
        if priority != 0 and self.config.scheduling_policy != "priority":
            return f"Got priority {priority} but Priority scheduling is not enabled."
        return None

    async def admit(
        self, specs: Sequence[SeqSpec], *, priority: int = 0, cache_salt: str | None = None
    ) -> Admission:
        """Wait for a place in the batch; cancellation (a departed client) leaves the queue."""
        loop = asyncio.get_running_loop()
        key = (priority if self.config.scheduling_policy == "priority" else 0, next(self._order))
        hashes = [self.kv.hashes(s.prompt_ids, cache_salt) for s in specs]
        now = loop.time()
        if not self._queue and self._fits(specs, hashes):  # nobody waits and it fits
            return self._start(list(specs), hashes, cache_salt, 0.0)
        waiting = _Waiting(key, list(specs), hashes, cache_salt, now, loop.create_future())
        heapq.heappush(self._queue, waiting)
        self._schedule()
        try:
            return await waiting.future
        except asyncio.CancelledError:
            if waiting.future.done() and not waiting.future.cancelled():
                self.release(waiting.future.result())
            else:
                waiting.future.cancel()
                self._schedule()
            raise

    def _fits(self, specs: Sequence[SeqSpec], hashes: Sequence[list[BlockHash]]) -> bool:
        """Room in the batch and in the cache (a sequence alone always runs)."""
        if not self.running:
            return True
        if self.running + len(specs) > self.config.max_num_seqs:
            return False
        kv = self.kv
        need, idle_hits = 0, set[int]()
        for spec, seq_hashes in zip(specs, hashes, strict=True):
            hit = kv.longest_hit(seq_hashes, spec.prompt_tokens)
            need += kv.blocks_needed(spec.prompt_tokens + spec.output_tokens) - len(hit)
            idle_hits.update(b.block_id for b in hit if b.ref_cnt == 0)
        free = kv.pool.num_free - len(idle_hits)
        return need <= free

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled while waiting
                heapq.heappop(self._queue)
                continue
            if not self._fits(head.specs, head.hashes):
                return
            heapq.heappop(self._queue)
            queued = loop.time() - head.arrival
            head.future.set_result(self._start(head.specs, head.hashes, head.cache_salt, queued))

    def _start(
        self,
        specs: list[SeqSpec],
        hashes: Sequence[list[BlockHash]],
        cache_salt: str | None,
        queued: float,
    ) -> Admission:
        allocations, cached = [], []
        for spec, seq_hashes in zip(specs, hashes, strict=True):
            total = spec.prompt_tokens + spec.output_tokens
            allocation = self.kv.allocate(seq_hashes, spec.prompt_tokens, total)
            allocations.append(allocation)
            cached.append(allocation.cached_tokens)
        self.running += len(specs)
        uncached = sum(s.prompt_tokens - c for s, c in zip(specs, cached, strict=True))
        return Admission(
            specs=specs,
            allocations=allocations,
            cache_salt=cache_salt,
            queued_seconds=queued,
            cached_tokens=cached,
            prefill_seconds=uncached * self.config.prefill_ms_per_token / 1000,
        )

    def decode_seconds(self, tpot_ms: float) -> float:
        """The time of the next decode step for a sequence of the running batch."""
        extra = self.config.decode_ms_per_seq * max(self.running - 1, 0)
        return (tpot_ms + extra) / 1000

    @property
    def delays(self) -> bool:
        return self.config.prefill_ms_per_token > 0 or self.config.decode_ms_per_seq > 0

    def release(
        self, admission: Admission, generated: Sequence[Sequence[int]] | None = None
    ) -> None:
        """End the admitted sequences: free their blocks (caching the full blocks of what
        was computed, given the generated ids per sequence) and admit the next ones."""
        if admission.released:
            return
        admission.released = True
        for i, (spec, allocation) in enumerate(
            zip(admission.specs, admission.allocations, strict=True)
        ):
            out = generated[i] if generated is not None and i < len(generated) else ()
            # the last generated token's KV is never computed
            computed = [*spec.prompt_ids, *out[:-1]] if out else list(spec.prompt_ids)
            self.kv.free(allocation, computed, admission.cache_salt)
        self.running -= len(admission.specs)
        self._schedule()
