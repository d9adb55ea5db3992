"""The weighted power-of-two-choices pick and the failure-window rule (unit level)."""

from __future__ import annotations

import random
from collections import Counter

from gateway.backends.health import EndpointState, choose


def _states(*weights: float) -> list[EndpointState]:
    return [EndpointState("m", f"e{i}", w) for i, w in enumerate(weights)]


def test_weights_hold_over_1000_choices_when_loads_are_equal() -> None:
    states = _states(5, 3, 2)
    rng = random.Random(11)
    counts = Counter(choose(states, rng, now=0.0).name for _ in range(1000))
    # Binomial standard deviations at n=1000: 15.8, 14.5, 12.6; allow about 4 of them.
    assert abs(counts["e0"] - 500) <= 60
    assert abs(counts["e1"] - 300) <= 56
    assert abs(counts["e2"] - 200) <= 50


def test_weights_hold_with_equal_latency_history() -> None:
    states = _states(1, 3)
    for state in states:
        state.observe_ttft(0.2, 0.0)
    rng = random.Random(3)
    counts = Counter(choose(states, rng, now=0.0).name for _ in range(1000))
    assert abs(counts["e1"] - 750) <= 55


def test_requests_in_flight_steer_away_from_a_busy_endpoint() -> None:
    busy, idle = _states(1, 1)
    busy.in_flight = 4
    rng = random.Random(5)
    counts = Counter(choose([busy, idle], rng, now=0.0).name for _ in range(1000))
    # with two endpoints P2C always compares both: the idle one wins every time
    assert counts[idle.name] == 1000


def test_a_slow_first_token_steers_traffic_away() -> None:
    slow, fast, other = _states(1, 1, 1)
    slow.observe_ttft(2.0, 0.0)
    fast.observe_ttft(0.1, 0.0)
    other.observe_ttft(0.1, 0.0)
    rng = random.Random(9)
    counts = Counter(choose([slow, fast, other], rng, now=0.0).name for _ in range(3000))
    # slow is only chosen when both draws are slow, which distinct draws never are
    assert counts[slow.name] == 0
    assert abs(counts[fast.name] - 1500) <= 120


def test_ewma_moves_toward_new_samples() -> None:
    [state] = _states(1)
    state.observe_ttft(1.0, 0.0)
    state.observe_ttft(0.0, 0.0)
    assert state.ttft_ewma is not None and 0.6 < state.ttft_ewma < 0.8


def test_one_slow_first_token_does_not_starve_an_endpoint_for_ever() -> None:
    """A cold start's 20 s first token fades, and is forgotten after 30 s: the endpoint is
    drawn by weight again (found with `make run`: without this it never was)."""
    cold, warm = _states(1, 1)
    cold.observe_ttft(20.0, 0.0)
    warm.observe_ttft(0.05, 59.0)
    rng = random.Random(2)
    assert Counter(choose([cold, warm], rng, now=1.0).name for _ in range(200))[cold.name] == 0
    assert cold.ttft(31.0) is None
    later = Counter(choose([cold, warm], rng, now=31.0).name for _ in range(1000))
    assert abs(later[cold.name] - 500) <= 63


def test_failures_trip_only_within_the_window() -> None:
    [state] = _states(1)
    assert not state.failed(0.0, window=60, allowed=3, witness="k1")
    assert not state.failed(10.0, window=60, allowed=3, witness="k2")
    assert not state.failed(100.0, window=60, allowed=3, witness="k3")  # the first two fell out
    assert not state.failed(110.0, window=60, allowed=3, witness="k4")
    assert state.failed(120.0, window=60, allowed=3, witness="k5")
    state.succeeded()
    assert not state.failures


def test_one_witness_counts_once_however_often_it_fails() -> None:
    [state] = _states(1)
    for second in range(10):
        assert not state.failed(float(second), window=60, allowed=3, witness="k1")
    assert not state.failed(10.0, window=60, allowed=3, witness="k2")
    assert state.failed(11.0, window=60, allowed=3, witness="k3")
    assert not state.failures  # counting starts again


def test_the_servers_report_counts_this_instances_requests_once() -> None:
    """The report (running + waiting) already counts the requests this instance had in
    flight when it arrived: those are taken out and the ones in flight now put in, so a
    request sent since the report counts, and one that ended since does not."""
    from gateway.backends.health import LOAD_FRESH_SECONDS, EndpointLoad

    state = EndpointState("m", "e", 1.0, in_flight=3)
    state.load = EndpointLoad(running=8, waiting=2, kv_usage=0.5, at=100.0, mine=2)
    assert state.queue(101.0) == 8 + 3  # the others' 8, and this instance's 3
    state.in_flight = 1  # two of this instance's requests ended since the report
    state.load = EndpointLoad(running=5, waiting=0, kv_usage=0.1, at=100.0, mine=5)
    assert state.queue(101.0) == 1  # the report's five were all this instance's
    assert state.queue(100.0 + LOAD_FRESH_SECONDS + 1) == 1  # stale: its own alone


def test_the_bound_reads_a_settled_load_a_moment_s_burst_moves_it_little() -> None:
    """settled(): the queue averaged over about LOAD_SETTLE_SECONDS. A burst of a few
    requests for a moment barely moves it; a replica that stays busy reaches its queue."""
    from gateway.backends.health import LOAD_SETTLE_SECONDS

    state = EndpointState("m", "e", 1.0, in_flight=4)
    assert state.settled(0.0) == 4  # the first reading is the queue itself
    state.in_flight = 8  # a burst of four more, for a tenth of a second
    assert state.settled(0.1) < 4.3
    state.in_flight = 4
    assert state.settled(0.2) < 4.3
    state.in_flight = 8  # now it stays busier
    assert state.settled(0.2 + 3 * LOAD_SETTLE_SECONDS) > 7.5
