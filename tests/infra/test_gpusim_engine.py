"""gpusim's scheduler (gpusim/engine.py) as vLLM's: a max_num_seqs batch, a waiting queue
served first come first served or by priority (lower first), prefill on uncached tokens
only, decode steps that grow with the batch. Event order, not time, is what is checked."""

from __future__ import annotations

import asyncio

import pytest
from gpusim.engine import Admission, Engine, EngineConfig, SeqSpec


def _seq(start: int, n: int = 40, out: int = 8) -> SeqSpec:
    ids = list(range(start, start + n))
    return SeqSpec(prompt_ids=ids, prompt_tokens=n, output_tokens=out)


async def _admit_in_order(engine: Engine, priorities: list[int]) -> list[int]:
    """Fill the batch, queue one request per priority, then free one place at a time;
    return the priorities in the order they were admitted."""
    order: list[int] = []
    blocker = await engine.admit([_seq(1000)])

    async def one(priority: int, start: int) -> None:
        admission = await engine.admit([_seq(start)], priority=priority)
        order.append(priority)
        await asyncio.sleep(0)  # let the test see it running before it ends
        engine.release(admission)

    tasks = []
    for i, priority in enumerate(priorities):
        tasks.append(asyncio.create_task(one(priority, 100 * (i + 1))))
        await asyncio.sleep(0)  # arrival order = list order
    assert engine.waiting == len(priorities)
    assert order == []
    engine.release(blocker)
    await asyncio.gather(*tasks)
    return order


def test_priority_scheduling_serves_lower_priority_values_first() -> None:
    engine = Engine(EngineConfig(max_num_seqs=1, scheduling_policy="priority", hash_seed="0"))
    order = asyncio.run(_admit_in_order(engine, [5, 1, 3, 1]))
    assert order == [1, 1, 3, 5]


def test_fcfs_ignores_priority_order() -> None:
    engine = Engine(EngineConfig(max_num_seqs=1, hash_seed="0"))
    assert asyncio.run(_admit_in_order(engine, [0, 0, 0])) == [0, 0, 0]
    # and refuses a priority, as vLLM does without --scheduling-policy priority
    assert engine.validate_priority(3) == ("Got priority 3 but Priority scheduling is not enabled.")
    assert engine.validate_priority(0) is None


def test_requests_queue_when_max_num_seqs_are_running() -> None:
    async def scenario() -> None:
        engine = Engine(EngineConfig(max_num_seqs=2, hash_seed="0"))
        first = await engine.admit([_seq(1)])
        second = await engine.admit([_seq(100)])
        third = asyncio.create_task(engine.admit([_seq(200)]))
        await asyncio.sleep(0)
        assert (engine.running, engine.waiting) == (2, 1)
        assert not third.done()
        engine.release(first)
        admitted = await third
        assert (engine.running, engine.waiting) == (2, 0)
        # a request with n=3 choices is 3 sequences: it waits for 3 places
        group = asyncio.create_task(engine.admit([_seq(300)] * 3))
        await asyncio.sleep(0)
        assert engine.waiting == 3
        engine.release(second)
        await asyncio.sleep(0)
        assert not group.done()  # one place is not enough
        engine.release(admitted)
        done: Admission = await group
        assert engine.running == 3
        engine.release(done)
        assert engine.running == 0

    asyncio.run(scenario())


def test_a_client_that_leaves_the_queue_frees_its_turn() -> None:
    async def scenario() -> None:
        engine = Engine(EngineConfig(max_num_seqs=1, hash_seed="0"))
        blocker = await engine.admit([_seq(1)])
        gone = asyncio.create_task(engine.admit([_seq(100)]))
        stays = asyncio.create_task(engine.admit([_seq(200)]))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert engine.waiting == 1
        engine.release(blocker)
        admission = await stays
        assert engine.running == 1
        engine.release(admission)

    asyncio.run(scenario())


def test_a_full_kv_cache_makes_the_head_of_the_queue_wait() -> None:
    async def scenario() -> None:
        # 8 usable blocks of 16 tokens; each sequence takes 40 + 8 tokens = 3 blocks
        engine = Engine(EngineConfig(num_gpu_blocks=9, hash_seed="0"))
        a = await engine.admit([_seq(1)])
        b = await engine.admit([_seq(100)])
        c = asyncio.create_task(engine.admit([_seq(200)]))
        await asyncio.sleep(0)
        assert engine.waiting == 1  # 2 blocks left, 3 needed
        engine.release(a)
        engine.release(await c)
        engine.release(b)

    asyncio.run(scenario())


def test_prefill_costs_only_the_uncached_tokens() -> None:
    async def scenario() -> tuple[Admission, Admission]:
        engine = Engine(EngineConfig(prefill_ms_per_token=1.0, hash_seed="0"))
        first = await engine.admit([_seq(1, n=100)])
        engine.release(first, [[7, 8, 9]])
        second = await engine.admit([_seq(1, n=100)])
        engine.release(second)
        return first, second

    first, second = asyncio.run(scenario())
    assert first.cached_tokens == [0]
    assert first.prefill_seconds == pytest.approx(0.100)
    assert second.cached_tokens == [96]  # (100 - 1) // 16 full blocks
    assert second.prefill_seconds == pytest.approx(0.004)


def test_decode_steps_grow_with_the_running_batch() -> None:
    async def scenario() -> list[float]:
        engine = Engine(EngineConfig(decode_ms_per_seq=2.0, hash_seed="0"))
        steps = [engine.decode_seconds(10.0)]
        admissions = [await engine.admit([_seq(100 * i)]) for i in range(1, 5)]
        steps.append(engine.decode_seconds(10.0))
        for admission in admissions:
            engine.release(admission)
        return steps

    alone, four = asyncio.run(scenario())
    assert alone == pytest.approx(0.010)
    assert four == pytest.approx(0.016)  # 10 ms + 3 more sequences x 2 ms
